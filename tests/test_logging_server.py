"""The example project under a real gunicorn: what it prints under requests is one JSON object per line."""

from __future__ import annotations

import hashlib
import json

import pytest

from observability_app.logging import FIELDS
from tests import servers
from tests.servers import GunicornServer, http

server_database = servers.server_database
_migrated_sqlite = servers._migrated_sqlite

pytestmark = pytest.mark.gunicorn


def test_every_line_printed_under_a_request_is_json_with_its_context(server_database, tmp_path):
    body = b"model-bytes"
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    base = "/api/v1/buckets/models/artifacts/e2e/1"
    with GunicornServer(server_database.url, tmp_path, workers=1) as server:
        put = http(server.url(base), "PUT", body, {"X-Content-Digest": digest, "X-Correlation-Id": "abc-123"})
        get = http(server.url(base), headers={"X-Correlation-Id": "abc-123", "X-Reader": "e2e"})
        bad = http(server.url(base), headers={"X-Correlation-Id": "evil id " + "x" * 4000})
        missing = http(server.url("/api/v1/buckets/models/artifacts/nope/1"), headers={"X-Correlation-Id": "abc-123"})
        server.stop()
        output = server.output()
    assert (put.status, get.status, bad.status, missing.status) == (201, 200, 200, 404)
    request_lines = [line for line in output.splitlines() if "request_id" in line or "abc-123" in line]
    parsed = [json.loads(line) for line in request_lines]  # a line that is not JSON fails here
    access = [line for line in parsed if line["logger"] == "observability_app.access"]
    assert len(access) == 4
    for line in parsed:
        for field in FIELDS:
            assert field in line
    tagged = [line for line in parsed if line["correlation_id"] == "abc-123"]
    assert {line["status_code"] for line in tagged if line["logger"] == "observability_app.access"} == {201, 200, 404}
    assert any(line["logger"] == "django.request" and line["correlation_id"] == "abc-123" for line in parsed)
    assert "x" * 100 not in output
    rows = server_database.query(
        "SELECT event_type, correlation_id FROM observability_audit_event WHERE correlation_id = %s", ("abc-123",)
    )
    assert {row[0] for row in rows} == {"ARTIFACT_CREATED", "ARTIFACT_ACCESSED"}


def test_the_batched_access_file_under_gunicorn_loses_no_line_on_a_graceful_stop(server_database, tmp_path):
    """EXAMPLE_ACCESS_LOG: 2 workers batch their access lines; each writes what it holds when it stops."""
    access_log = tmp_path / "access.log"
    body = b"weights"
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    sent = []
    with GunicornServer(server_database.url, tmp_path, workers=2, env={"EXAMPLE_ACCESS_LOG": str(access_log)}) as srv:
        for i in range(10):  # successes: INFO lines, held in the batch
            url = srv.url(f"/api/v1/buckets/batch/artifacts/m{i}/1")
            headers = {"Connection": "close", "X-Correlation-Id": f"batch-{i}"}
            sent.append(http(url, "PUT", body, {**headers, "X-Content-Digest": digest}).status)
            sent.append(http(url, headers=headers).status)
        srv.stop()
    assert sent == [201, 200] * 10
    lines = [json.loads(line) for line in access_log.read_text().splitlines()]
    assert sorted(line["correlation_id"] for line in lines) == sorted(f"batch-{i}" for i in range(10) for _ in "PG")
    assert all(line["level"] == "INFO" and line["logger"] == "observability_app.access" for line in lines)
