"""Metrics benchmarks: ``python -m benchmarks.metrics``.

Measured in one run, with the baselines measured the same way in the same run:

1. ``observe_request()`` per call, against an empty function with the same signature;
2. the middleware through Django's WSGI handler (trivial view), with benchmarks.middleware's paired rounds over the
   example project's middleware stack: bare, the app with metrics off, with metrics on (access lines to a file);
   the logging issue's target is an added cost of at most 25 us per request;
3. a /metrics scrape through the WSGI handler with the whole bucket catalog populated (64 bucket bins x every label
   value of every catalog metric, plus HTTP and database series), single process: target at most 50 ms; baseline
   prometheus_client's ``generate_latest`` of the same metrics;
4. the same under gunicorn's multi-process mode: three worker processes populate their files, a fourth serves
   /metrics (first scrape of a worker and the steady state); baseline prometheus_client's MultiProcessCollector.

Exit status 1 when a target is missed.
"""

from __future__ import annotations

import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRAPE_TARGET_MS = 50.0
MIDDLEWARE_TARGET_US = 25.0


def _django(database: str) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")
    os.environ["DATABASE_URL"] = database
    os.environ.setdefault("EXAMPLE_VAR_DIR", tempfile.mkdtemp(prefix="bench-var-"))
    # The access lines of the middleware rounds go to a (batched) file, as in benchmarks.middleware.
    os.environ.setdefault("EXAMPLE_ACCESS_LOG", os.path.join(os.environ["EXAMPLE_VAR_DIR"], "access.log"))
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def _migrate() -> None:
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def _environ(path: str) -> dict:
    return {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "testserver",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
    }


def _start_response(status, headers, exc_info=None):
    return None


def bench_observe_request() -> dict:
    from observability_app.metrics import observe_request

    def empty(method, route, status, duration_s):
        return None

    count = 200_000
    results = {}
    for name, function in (("baseline_empty_call", empty), ("observe_request", observe_request)):
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(count):
                function("GET", "api/v1/items/<int:pk>", 200, 0.0123)
            best = min(best, (time.perf_counter() - started) / count * 1e9)
        results[name] = round(best, 1)
    results["added_ns"] = round(results["observe_request"] - results["baseline_empty_call"], 1)
    return results


def bench_middleware() -> dict:
    """benchmarks.middleware's paired rounds: the example stack bare, with the app and metrics off, and on."""
    from . import middleware

    bare = middleware.build_handler(False)
    metrics_off = middleware.build_handler(True, metrics=False)
    metrics_on = middleware.build_handler(True)  # built last: metrics stay enabled for the scrapes below
    bare_us, added_on, quartiles = middleware.paired(bare, metrics_on, 11, 2000)
    # What metrics add, paired directly: two separate pairings against bare would differ by the machine's drift.
    _, by_metrics, by_metrics_quartiles = middleware.paired(metrics_off, metrics_on, 11, 2000)
    return {
        "bare_django": round(bare_us, 2),
        "added_us_metrics_on": round(added_on, 2),
        "added_us_metrics_on_quartiles": [round(value, 2) for value in (quartiles[0], quartiles[2])],
        "added_us_by_metrics": round(by_metrics, 2),
        "added_us_by_metrics_quartiles": [
            round(value, 2) for value in (by_metrics_quartiles[0], by_metrics_quartiles[2])
        ],
        "throughput_ratio": round(bare_us / (bare_us + added_on), 3),
    }


def populate_catalog() -> int:
    """Every catalog metric, every label value, in all 64 bins; HTTP and database series; returns buckets used."""
    from observability_app import bucket_metrics
    from observability_app.metrics import observe_request
    from observability_app.metrics.bucket import catalog
    from observability_app.metrics.labels import HTTP_METHODS, hashed_id

    names: dict[str, str] = {}
    index = 0
    while len(names) < 64:
        names.setdefault(hashed_id(f"bucket-{index}"), f"bucket-{index}")
        index += 1
    for bucket in names.values():
        for kind in ("write", "read"):
            for outcome in catalog.OUTCOMES:
                if kind == "write":
                    for status in catalog.WRITE_STATUSES:
                        for bucket_type in catalog.BUCKET_TYPES:
                            bucket_metrics.count("bucket.artifact.write.count", bucket, outcome, status, bucket_type)
                else:
                    for cache in catalog.CACHE_RESULTS:
                        for status in catalog.READ_STATUSES:
                            bucket_metrics.count("bucket.artifact.read.count", bucket, outcome, cache, status)
            bucket_metrics.observe(f"bucket.artifact.{kind}.duration", bucket, 0.03)
            bucket_metrics.observe(f"bucket.artifact.{kind}.size", bucket, 300_000)
        for stage in catalog.MISMATCH_STAGES:
            bucket_metrics.digest_mismatch(bucket, stage)
        for result in catalog.VERIFY_RESULTS:
            bucket_metrics.count("bucket.integrity.verify.count", bucket, result)
        bucket_metrics.observe("bucket.integrity.verify.duration", bucket, 0.002)
        for decision in catalog.SCAN_DECISIONS:
            for outcome in catalog.SCAN_OUTCOMES:
                bucket_metrics.count("bucket.safety.scan.count", bucket, decision, outcome, "1.2.0")
        bucket_metrics.observe("bucket.safety.scan.duration", bucket, 0.2)
        for resolution in catalog.CONFLICT_RESOLUTIONS:
            bucket_metrics.version_conflict(bucket, resolution)
        bucket_metrics.version_orphan(bucket)
        bucket_metrics.safety_rejection(bucket, "test-malware signature", "example-scanner")
        for reason in catalog.OVERTURN_REASONS:
            bucket_metrics.safety_false_positive(bucket, reason)
        bucket_metrics.count("bucket.metadata.read.count", bucket, "success")
        bucket_metrics.observe("bucket.metadata.read.duration", bucket, 0.002)
        for result in catalog.PROVENANCE_RESULTS:
            bucket_metrics.count("bucket.provenance.verify.count", bucket, result)
        bucket_metrics.observe("bucket.provenance.verify.duration", bucket, 0.004)
        bucket_metrics.count("bucket.client.write.count", None, bucket)
        bucket_metrics.queue_delay(bucket, 42.0)
    for route in range(20):
        for method in HTTP_METHODS:
            for status in (200, 201, 204, 400, 404, 500):
                observe_request(method, f"api/v1/route{route}/<int:pk>", status, 0.004)
    return len(names)


def _store_artifacts(buckets: int) -> None:
    """Rows for the storage reporter: every bin has stored artifacts."""
    from example_project.bucket.models import Artifact

    Artifact.objects.bulk_create(
        Artifact(
            bucket=f"bucket-{index % buckets}",
            name="m",
            version=str(index),
            digest="sha256:" + "0" * 64,
            size_bytes=1000 + index,
            content=b"",
        )
        for index in range(buckets * 4)
    )


def _time_scrapes(count: int) -> tuple[float, float, float, int]:
    """(first ms, median ms, p95 ms, bytes) of /metrics through the WSGI handler."""
    from django.core.handlers.wsgi import WSGIHandler

    handler = WSGIHandler()
    times = []
    size = 0
    for _ in range(count):
        started = time.perf_counter()
        response = handler(_environ("/metrics"), _start_response)
        size = len(b"".join(response))
        response.close()
        times.append((time.perf_counter() - started) * 1000)
    ordered = sorted(times[1:])
    return times[0], statistics.median(ordered), ordered[int(len(ordered) * 0.95) - 1], size


def bench_scrape_single() -> dict:
    from prometheus_client import REGISTRY as DEFAULT_REGISTRY
    from prometheus_client import generate_latest

    from observability_app.metrics.registry import REGISTRY

    buckets = populate_catalog()
    _store_artifacts(300)
    first, median, p95, size = _time_scrapes(40)
    baseline = []
    for _ in range(10):
        started = time.perf_counter()
        generate_latest(REGISTRY)
        generate_latest(DEFAULT_REGISTRY)
        baseline.append((time.perf_counter() - started) * 1000)
    return {
        "bucket_bins": buckets,
        "bytes": size,
        "first_ms": round(first, 2),
        "median_ms": round(median, 2),
        "p95_ms": round(p95, 2),
        "baseline_generate_latest_ms": round(statistics.median(baseline), 2),
        "speedup_vs_baseline": round(statistics.median(baseline) / median, 1),
    }


def bench_scrape_multiprocess(database: str) -> dict:
    directory = tempfile.mkdtemp(prefix="bench-multiproc-")
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=directory, DATABASE_URL=database, PYTHONPATH=str(ROOT))
    workers = [
        subprocess.Popen([sys.executable, "-m", "benchmarks.metrics", "--populate"], cwd=ROOT, env=env)
        for _ in range(3)
    ]
    for worker in workers:
        assert worker.wait(timeout=300) == 0
    output = subprocess.run(
        [sys.executable, "-m", "benchmarks.metrics", "--scrape-multiprocess"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(output.stdout.strip().splitlines()[-1])


def _scrape_multiprocess_child() -> None:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    first, median, p95, size = _time_scrapes(30)
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    baseline = []
    for _ in range(5):
        started = time.perf_counter()
        generate_latest(registry)
        baseline.append((time.perf_counter() - started) * 1000)
    files = len([name for name in os.listdir(os.environ["PROMETHEUS_MULTIPROC_DIR"]) if name.endswith(".db")])
    print(
        json.dumps(
            {
                "worker_files": files,
                "bytes": size,
                "first_scrape_of_a_worker_ms": round(first, 2),
                "median_ms": round(median, 2),
                "p95_ms": round(p95, 2),
                "baseline_multiprocess_collector_ms": round(statistics.median(baseline), 2),
                "speedup_vs_baseline": round(statistics.median(baseline) / median, 1),
            }
        )
    )


def main(argv: list[str]) -> int:
    if "--populate" in argv:
        _django(os.environ["DATABASE_URL"])
        populate_catalog()
        return 0
    if "--scrape-multiprocess" in argv:
        _django(os.environ["DATABASE_URL"])
        _scrape_multiprocess_child()
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as directory:
        database = f"sqlite:///{directory}/bench.sqlite3"
        _django(database)
        _migrate()
        results = {
            "observe_request_ns": bench_observe_request(),
            "middleware_us_per_request": bench_middleware(),
            "scrape_single_process": bench_scrape_single(),
            "scrape_multiprocess_3_workers": bench_scrape_multiprocess(database),
        }
    single = results["scrape_single_process"]["median_ms"]
    multi = results["scrape_multiprocess_3_workers"]["median_ms"]
    added = results["middleware_us_per_request"]["added_us_metrics_on"]
    checks = {
        f"scrape single process <= {SCRAPE_TARGET_MS} ms": single <= SCRAPE_TARGET_MS,
        f"scrape multi-process <= {SCRAPE_TARGET_MS} ms": multi <= SCRAPE_TARGET_MS,
        f"middleware with metrics adds <= {MIDDLEWARE_TARGET_US} us": added <= MIDDLEWARE_TARGET_US,
    }
    print(json.dumps(results, indent=2))
    for name, passed in checks.items():
        print(f"{'PASS' if passed else 'FAIL'}  {name}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
