"""A real Prometheus scrapes the example project under gunicorn; promtool accepts what /metrics serves."""

from __future__ import annotations

import hashlib
import subprocess
import time
import urllib.parse

import pytest

from tests import servers
from tests.prometheus import PrometheusServer, static_jobs
from tests.servers import GunicornServer, http, require_tool

server_database = servers.server_database
_migrated_sqlite = servers._migrated_sqlite

pytestmark = pytest.mark.prometheus

TOKEN = "scrape-token-0123456789"
ROUTE = "api/v1/buckets/<name:bucket>/artifacts/<name:name>/<name:version>"


def test_prometheus_scrapes_and_queries_the_request_counter(server_database, tmp_path):
    env = {"OBSERVABILITY_METRICS_TOKEN": TOKEN}
    with GunicornServer(server_database.url, tmp_path / "app", workers=2, env=env) as server:
        body = b"weights"
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        for index in range(7):
            answer = http(
                server.url(f"/api/v1/buckets/prom/artifacts/model/{index}"),
                method="PUT",
                data=body,
                headers={"X-Content-Digest": digest},
            )
            assert answer.status == 201
        for _ in range(5):
            assert http(server.url("/api/v1/buckets/prom/artifacts/model/99")).status == 404
        assert http(server.url("/metrics")).status == 401  # the token protects it

        jobs = f"""\
  - job_name: bucket
    authorization:
      type: Bearer
      credentials: {TOKEN}
    static_configs:
      - targets: ["127.0.0.1:{server.port}"]
  - job_name: bucket-wrong-token
    authorization:
      type: Bearer
      credentials: not-the-token
    static_configs:
      - targets: ["127.0.0.1:{server.port}"]
"""
        with PrometheusServer(tmp_path / "prometheus", jobs) as prometheus:
            up = prometheus.wait_for('up{job="bucket"}', lambda r: r and r[0]["value"][1] == "1")
            assert up[0]["metric"]["instance"] == f"127.0.0.1:{server.port}"
            prometheus.wait_for('up{job="bucket-wrong-token"}', lambda r: r and r[0]["value"][1] == "0")

            created = prometheus.wait_for(
                f'sum(http_requests_total{{job="bucket",route="{ROUTE}",method="PUT",status="201"}})',
                lambda r: r and float(r[0]["value"][1]) >= 7,
            )
            assert float(created[0]["value"][1]) == 7
            missing = prometheus.query(f'sum(http_requests_total{{job="bucket",route="{ROUTE}",status="404"}})')
            assert float(missing[0]["value"][1]) == 5
            writes = prometheus.query('sum(bucket_artifact_write_total{job="bucket",outcome="success"})')
            assert float(writes[0]["value"][1]) == 7
            stored = prometheus.query('sum(bucket_storage_objects{job="bucket"})')
            assert float(stored[0]["value"][1]) == 7
            ready = prometheus.query('health_ready{job="bucket"}')
            assert ready[0]["value"][1] == "1"
            # No raw bucket name ever reaches Prometheus: only bins.
            bins = prometheus.query('count by (bucket) (bucket_artifact_write_total{job="bucket"})')
            assert bins and all(item["metric"]["bucket"].startswith("bin-") for item in bins)
            series = http(f"{prometheus.base}/api/v1/series?" + urllib.parse.urlencode({"match[]": '{job="bucket"}'}))
            assert b'"prom"' not in series.body


def test_promtool_accepts_the_metrics_output(server_database, tmp_path):
    promtool = require_tool("/usr/bin/promtool")
    with GunicornServer(server_database.url, tmp_path, workers=2) as server:
        body = b"x" * 2048
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        base = "/api/v1/buckets/tool/artifacts/model"
        assert http(server.url(f"{base}/1"), "PUT", body, {"X-Content-Digest": digest}).status == 201
        assert http(server.url(f"{base}/1"), "PUT", body, {"X-Content-Digest": digest}).status == 409
        assert http(server.url(f"{base}/2"), "PUT", body, {"X-Content-Digest": "sha256:" + "0" * 64}).status == 400
        assert http(server.url(f"{base}/1")).status == 200
        assert http(server.url(f"{base}/1/scan"), "POST").status == 200
        assert http(server.url("/no/such/page")).status == 404
        assert http(server.url("/api/v1/health")).status == 200
        exposition = http(server.url("/metrics"))
        assert exposition.status == 200
        assert exposition.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    checked = subprocess.run([promtool, "check", "metrics"], input=exposition.body, capture_output=True, timeout=60)
    assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()
    text = exposition.body.decode()
    for name in ("http_requests_total", "bucket_version_conflict_total", "bucket_integrity_digest_mismatch_total"):
        assert f"\n{name}{{" in text


def test_a_first_burst_of_500s_after_a_fresh_start_is_counted_whole(server_database, tmp_path):
    """The series exist at zero before the first error, so increase() and the 5xx ratio see the whole first burst.

    Without priming the ``status="500"`` series appears with the burst and Prometheus misses most of it (issue 13:
    49 errors read as 17.5). Three workers, a scrape every 0.5 s, N errors among M good requests.
    """
    errors, others = 49, 151
    env = {"EXAMPLE_FAULT_INJECTION": "1"}
    with (
        GunicornServer(server_database.url, tmp_path / "app", workers=3, env=env) as server,
        PrometheusServer(tmp_path / "prometheus", static_jobs({"bucket": f"127.0.0.1:{server.port}"}), "500ms") as prom,
    ):
        before = prom.wait_for(
            f'http_requests_total{{job="bucket",route="{ROUTE}",method="PUT",status="500"}}',
            lambda r: r and prom.scrapes("bucket") >= 4,
        )
        assert float(before[0]["value"][1]) == 0  # there, at zero, before any error
        missing = server.url("/api/v1/buckets/burst/artifacts/model/absent")
        failing = server.url("/api/v1/buckets/burst/artifacts/model/1")
        for index in range(errors + others):
            if index % 4 == 1 and errors > 0:
                errors -= 1
                answer = http(failing, "PUT", b"x", {"X-Simulate-Error": "1", "X-Content-Digest": "sha256:0"})
                assert answer.status == 500
            else:
                assert http(missing).status == 404
        errors, total = 49, 200
        five = 'sum(http_requests_total{job="bucket",status=~"5.."})'
        prom.wait_for(five, lambda r: r and float(r[0]["value"][1]) == errors)
        prom.wait_for(f'sum(http_requests_total{{job="bucket"}}) >= {total}', bool)
        time.sleep(8)  # the range holds many samples after the burst: extrapolation stays small
        increase = prom.value('sum(increase(http_requests_total{job="bucket",status=~"5.."}[10m]))')
        assert increase is not None
        assert abs(increase - errors) <= 0.05 * errors, increase
        ratio = prom.value(
            'sum(rate(http_requests_total{job="bucket",status=~"5.."}[5m]))'
            ' / sum(rate(http_requests_total{job="bucket"}[5m]))'
        )
        assert ratio is not None
        assert abs(ratio - errors / total) <= 0.05 * errors / total, ratio


def test_prometheus_stores_the_trace_ids_of_slow_requests_as_exemplars(server_database, tmp_path):
    """Tracing on, two gunicorn workers: Prometheus scrapes OpenMetrics and keeps exemplars (the drill-down)."""
    env = {"OBSERVABILITY_TRACING_ENABLED": "1", "OBSERVABILITY_TRACE_EXPORTER": "none"}
    trace_ids = [hashlib.sha256(f"exemplar-{index}".encode()).hexdigest()[:32] for index in range(6)]
    with (
        GunicornServer(server_database.url, tmp_path / "app", workers=2, env=env) as server,
        PrometheusServer(tmp_path / "prometheus", static_jobs({"bucket": f"127.0.0.1:{server.port}"}), "500ms") as prom,
    ):
        for trace_id in trace_ids:
            headers = {"traceparent": f"00-{trace_id}-b7ad6b7169203331-01"}
            assert http(server.url("/api/v1/buckets/ex/artifacts/model/1"), headers=headers).status == 404
        time.sleep(1.2)  # each worker writes its exemplars at most once a second
        assert http(server.url("/api/v1/buckets/ex/artifacts/model/2")).status == 404
        now = time.time()
        deadline = now + 30
        found: set[str] = set()
        while time.time() < deadline:
            data = prom.api(
                "query_exemplars",
                query=f'http_request_duration_seconds_bucket{{job="bucket",route="{ROUTE}"}}',
                start=f"{now - 120:.3f}",
                end=f"{time.time() + 5:.3f}",
            )
            found = {e["labels"]["trace_id"] for series in data for e in series["exemplars"]}
            if found & set(trace_ids):
                break
            time.sleep(0.5)
        assert found & set(trace_ids), found
        assert all(len(e) == 32 and set(e) <= set("0123456789abcdef") for e in found)  # trace ids only
