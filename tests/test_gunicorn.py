"""gunicorn with 3 workers and the shipped config: /metrics adds every worker's requests up, also after one dies."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPException

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


def _cumulative(text: str) -> dict[tuple[str, tuple], float]:
    """The samples of an exposition that may never go down: counters, and histograms' buckets, counts and sums."""
    from prometheus_client.parser import text_string_to_metric_families

    samples = {}
    for family in text_string_to_metric_families(text):
        if family.type not in ("counter", "histogram"):
            continue
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_counters_never_go_back_across_reloads_recycling_and_kills(server_database, tmp_path):
    """100 scrapes while workers are recycled by max_requests, reloaded by SIGHUP and killed with SIGKILL: every
    counter (process_cpu_seconds_total included) and every histogram sample is there in each later scrape, never
    lower."""
    import random
    import threading

    with GunicornServer(server_database.url, tmp_path, workers=3, env={"GUNICORN_MAX_REQUESTS": "30"}) as server:
        stop = threading.Event()

        def traffic() -> None:
            index = 0
            while not stop.is_set():
                index += 1
                with contextlib.suppress(OSError, HTTPException):  # a worker killed mid-answer
                    _get(server, index)
                stop.wait(0.01)

        drivers = [threading.Thread(target=traffic) for _ in range(2)]
        for driver in drivers:
            driver.start()
        previous: dict[tuple[str, tuple], float] = {}
        pids: set[int] = set(server.worker_pids())
        events = {20: "hup", 35: "kill", 55: "hup", 70: "kill", 85: "kill"}
        went_back: list[str] = []
        cpu: list[float] = []
        try:
            for index in range(100):
                event = events.get(index)
                if event == "hup":
                    os.kill(server.process.pid, signal.SIGHUP)
                elif event == "kill":
                    with contextlib.suppress(ProcessLookupError, IndexError):
                        os.kill(random.choice(server.worker_pids()), signal.SIGKILL)
                answer = http(server.url("/metrics"), headers={"Connection": "close"}, timeout=30)
                assert answer.status == 200, answer.body[:300]
                current = _cumulative(answer.body.decode())
                for key, value in previous.items():
                    if key not in current:
                        went_back.append(f"scrape {index}: {key} disappeared")
                    elif current[key] < value:
                        went_back.append(f"scrape {index}: {key} {value} -> {current[key]}")
                previous = current
                cpu.append(total(current, "process_cpu_seconds_total"))
                pids.update(server.worker_pids())
                time.sleep(0.1)
        finally:
            stop.set()
            for driver in drivers:
                driver.join(30)
        output = server.output()
    assert not went_back, "\n".join(went_back[:20])
    # The workers really were replaced: 3 at the start, then recycling, two reloads and three kills.
    assert len(pids) >= 3 + 6 + 3, (sorted(pids), output[-2000:])
    assert output.count("was sent SIGKILL") == 3
    assert cpu[-1] > cpu[0] > 0
