"""gunicorn with 3 workers and the shipped config: /metrics adds every worker's requests up, also after one dies."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests import servers
from tests.servers import GunicornServer, http, scrape, total

server_database = servers.server_database
_migrated_sqlite = servers._migrated_sqlite

pytestmark = pytest.mark.gunicorn

ROUTE = "api/v1/buckets/<name:bucket>/artifacts/<name:name>/<name:version>"


def _get(server: GunicornServer, index: int) -> int:
    # A new connection per request (no keep-alive), so that the workers share the load.
    return http(server.url(f"/api/v1/buckets/gb{index}/artifacts/missing/1"), headers={"Connection": "close"}).status


def _send(server: GunicornServer, count: int, offset: int = 0) -> None:
    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(pool.map(lambda i: _get(server, i), range(offset, offset + count)))
    assert statuses == [404] * count


def test_three_workers_add_up_and_survive_a_dead_worker(server_database, tmp_path):
    with GunicornServer(server_database.url, tmp_path, workers=3) as server:
        assert len(server.worker_pids()) == 3
        _send(server, 90)
        samples = scrape(server.url("/metrics"))
        assert total(samples, "http_requests_total", route=ROUTE, method="GET", status="404") == 90
        assert total(samples, "http_request_duration_seconds_count", route=ROUTE, method="GET") == 90
        # every request read one artifact (not found): the catalog counts them across workers too
        assert total(samples, "bucket_artifact_read_total", outcome="failure") == 90
        writers = {name.split("_")[-1] for name in os.listdir(server.metrics_dir) if name.startswith("counter_")}
        assert len(writers) >= 2, f"requests were not spread over the workers: {writers}"
        assert total(samples, "process_workers") == 3
        assert total(samples, "process_threads") >= 3
        assert total(samples, "process_resident_memory_bytes") > 0

        # A worker killed outright: the master starts another, child_exit folds the dead one's counts.
        victim = server.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            pids = server.worker_pids()
            if (
                victim not in pids
                and len(pids) == 3
                and len(server.booted_pids()) == 3
                and not (server.metrics_dir / f"counter_{victim}.db").exists()
            ):
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"worker {victim} was not replaced and folded:\n{server.output()}")
        assert (server.metrics_dir / "counter_archive.db").exists()
        assert not (server.metrics_dir / f"histogram_{victim}.db").exists()

        _send(server, 30, offset=1000)
        samples = scrape(server.url("/metrics"))
        assert total(samples, "http_requests_total", route=ROUTE, method="GET", status="404") == 120
        assert total(samples, "http_request_duration_seconds_count", route=ROUTE, method="GET") == 120
        assert total(samples, "process_workers") == 3


def test_writes_count_once_per_request_under_concurrency(server_database, tmp_path):
    """Concurrent uploads to several buckets: the catalog's totals equal what was sent, whatever worker served."""
    body = b"model weights"
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    with GunicornServer(server_database.url, tmp_path, workers=3) as server:

        def put(index: int) -> int:
            return http(
                server.url(f"/api/v1/buckets/gw{index % 5}/artifacts/model/{index}"),
                method="PUT",
                data=body,
                headers={"X-Content-Digest": digest, "Connection": "close"},
            ).status

        with ThreadPoolExecutor(max_workers=4) as pool:
            statuses = list(pool.map(put, range(40)))
        assert statuses == [201] * 40
        samples = scrape(server.url("/metrics"))
        assert total(samples, "bucket_artifact_write_total", outcome="success") == 40
        assert total(samples, "bucket_artifact_write_size_bytes_count") == 40
        assert total(samples, "bucket_artifact_write_size_bytes_sum") == 40 * len(body)
        assert total(samples, "bucket_integrity_verify_total", result="match") == 40
        # storage gauges are read from the database at scrape time: every worker reports the same
        assert total(samples, "bucket_storage_objects") == 40
        assert total(samples, "bucket_storage_used_bytes") == 40 * len(body)
        assert total(samples, "audit_events_recorded_total", event_type="ARTIFACT_CREATED") == 40


def _counters(text: str) -> dict[tuple[str, tuple], float]:
    """Every sample of a counter or histogram family (the values that must never go back)."""
    from prometheus_client.parser import text_string_to_metric_families

    found: dict[tuple[str, tuple], float] = {}
    for family in text_string_to_metric_families(text):
        if family.type not in ("counter", "histogram"):
            continue
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_no_counter_goes_back_across_reloads_recycling_and_kills(server_database, tmp_path):
    """100 scrapes while workers are reloaded (SIGHUP), recycled (max_requests) and killed (-9), under traffic."""
    import threading

    env = {"GUNICORN_MAX_REQUESTS": "40"}
    with GunicornServer(server_database.url, tmp_path, workers=3, env=env) as server:
        stop = threading.Event()

        def traffic() -> None:
            index = 0
            while not stop.is_set():
                index += 1
                with contextlib.suppress(OSError):  # a worker killed mid-request: the client sees a reset
                    _get(server, index)

        threads = [threading.Thread(target=traffic, daemon=True) for _ in range(3)]
        for thread in threads:
            thread.start()
        previous: dict[tuple[str, tuple], float] = {}
        backwards: list[str] = []
        events = []
        seen_workers: set[int] = set()
        try:
            for scrape_number in range(100):
                seen_workers.update(server.worker_pids())
                if scrape_number == 30:
                    os.kill(server.process.pid, signal.SIGHUP)
                    events.append("HUP")
                if scrape_number in (50, 75):
                    pids = server.worker_pids()
                    if pids:
                        os.kill(pids[0], signal.SIGKILL)
                        events.append(f"KILL {pids[0]}")
                answer = http(server.url("/metrics"), headers={"Connection": "close"})
                assert answer.status == 200
                current = _counters(answer.body.decode())
                for key, value in previous.items():
                    if key in current and current[key] < value:
                        backwards.append(f"scrape {scrape_number}: {key} {value} -> {current[key]}")
                    if key not in current and key[0] != "process_cpu_seconds_total":
                        backwards.append(f"scrape {scrape_number}: {key} vanished")
                previous.update(current)
                time.sleep(0.15)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=20)
        assert not backwards, "\n".join(backwards[:20])
        assert len(events) == 3
        assert len(seen_workers) >= 9, seen_workers  # recycled by max_requests, HUP and kills, not only 3
        assert previous[("process_cpu_seconds_total", ())] > 0
        assert total(previous, "http_requests_total", route=ROUTE, method="GET", status="404") > 300
