"""The README's tour, as written: step 1's upload then step 2's metrics grep finds the upload's series.

The commands are read from README.md (the curl URL and headers of step 1, the grep pattern of step 2) and run
against the example project through Django's test client, so a renamed metric or route in the README fails here.
(The "Use it in your project" section is checked by scripts/package_smoke.py in a new project.)
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
pytestmark = pytest.mark.django_db


def tour_step(number: int) -> str:
    start = README.index(f"**{number}. ")
    end = README.find(f"**{number + 1}. ", start)
    return README[start : end if end != -1 else len(README)]


def test_tour_metrics_grep_shows_the_tour_upload(client):
    step1 = tour_step(1)
    url = re.search(r"http://127\.0\.0\.1:8000(/api/v1/buckets/\S+)", step1).group(1)
    correlation = re.search(r'-H "X-Correlation-Id: ([^"]+)"', step1).group(1)
    body = re.search(r"printf '([^']*)' > /tmp/model\.bin", step1).group(1).encode()
    response = client.put(
        url,
        body,
        content_type="application/octet-stream",
        HTTP_X_CONTENT_DIGEST="sha256:" + hashlib.sha256(body).hexdigest(),
        HTTP_X_CORRELATION_ID=correlation,
    )
    assert response.status_code == 201, response.content
    assert response["X-Correlation-Id"] == correlation

    pattern = re.search(r"grep -E '([^']+)'", tour_step(2)).group(1)
    text = client.get("/metrics").content.decode()
    shown = [line for line in text.splitlines() if re.search(pattern, line)]
    # The upload's request, by route template, method and status: what a reader of the tour looks for.
    put_lines = [line for line in shown if line.startswith("http_requests_total{") and 'method="PUT"' in line]
    assert any('status="201"' in line and not line.endswith(" 0.0") for line in put_lines), shown
    # The bucket catalog's write counter, counted once (its bucket label is a hashed bin, never the raw name).
    writes = [line for line in shown if line.startswith("bucket_artifact_write_total{")]
    assert writes and sum(float(line.rsplit(" ", 1)[1]) for line in writes) >= 1.0, shown
    assert all('"models"' not in line for line in writes), writes
