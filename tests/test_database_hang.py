"""A PostgreSQL that hangs (SIGSTOP: connections accepted, nothing answered) does not hang the service.

The test makes a PostgreSQL cluster of its own (``pg_createcluster`` on a port of 54330-54339), serves the example
project from it under gunicorn, stops every process of that cluster with SIGSTOP, and checks what
docs/deployment.md promises: /health/live answers 200 within 1 s throughout, /health/ready answers 503 within 2 s,
no API request waits longer than the documented bound (``max(DATABASE_CONNECT_TIMEOUT,
DATABASE_STATEMENT_TIMEOUT + 1)`` plus the watchdog's tick) and each failing one gets 503, and after SIGCONT the
same workers serve again without a restart. The cluster is dropped afterwards; the shared one is never touched.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import ROOT, GunicornServer, http, server_env

pytestmark = pytest.mark.gunicorn

PORTS = range(54330, 54340)
STATEMENT_TIMEOUT = 2.0
CONNECT_TIMEOUT = 2.0
#: What docs/deployment.md promises, plus 0.5 s for a loaded 2-core machine.
BOUND = max(CONNECT_TIMEOUT, STATEMENT_TIMEOUT + 1.0) + 0.1 + 0.5


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found and os.geteuid() == 0:
        return found
    reason = f"{name} (postgresql-common) run as root is needed to make a PostgreSQL cluster of the test's own"
    if os.environ.get("OBSERVABILITY_TEST_REQUIRE_SYSTEM_TOOLS"):
        pytest.fail(reason)
    pytest.skip(reason)


def _bindable(port: int) -> bool:
    """Nothing holds ``port`` (a listener, or a client that got it as its ephemeral source port)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture
def own_cluster() -> Iterator[tuple[str, int, Path]]:
    create = _tool("pg_createcluster")
    drop = _tool("pg_dropcluster")
    version = sorted(os.listdir("/usr/lib/postgresql"), key=lambda v: int(v) if v.isdigit() else 0)[-1]
    started: tuple[str, int] | None = None
    failures = []
    for port in PORTS:
        if not _bindable(port):
            continue
        name = f"obs_hang_{port}"
        subprocess.run([drop, "--stop", version, name], capture_output=True, check=False)
        made = subprocess.run(
            [create, version, name, "-p", str(port), "--start", "--", "--auth=trust"],
            capture_output=True,
            check=False,
            timeout=120,
        )
        if made.returncode == 0:
            started = (name, port)
            break
        failures.append(made.stderr.decode(errors="replace")[-300:])
        subprocess.run([drop, "--stop", version, name], capture_output=True, check=False)
    if started is None:
        pytest.fail(f"no PostgreSQL cluster could start on {PORTS.start}-{PORTS.stop - 1}: {failures}")
    name, port = started
    data = Path(f"/var/lib/postgresql/{version}/{name}")
    try:
        subprocess.run(
            ["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-c", "CREATE DATABASE hang"],
            capture_output=True,
            check=True,
            timeout=60,
        )
        yield version, port, data
    finally:
        with contextlib.suppress(Exception):
            _signal_cluster(data, signal.SIGCONT)
        subprocess.run([drop, "--stop", version, name], capture_output=True, check=False, timeout=120)


def _cluster_pids(data: Path) -> list[int]:
    """The postmaster and every process it forked (backends, checkpointer, walwriter, ...)."""
    postmaster = int((data / "postmaster.pid").read_text().split()[0])
    children = Path(f"/proc/{postmaster}/task/{postmaster}/children").read_text().split()
    return [postmaster, *map(int, children)]


def _signal_cluster(data: Path, sig: int) -> None:
    for pid in _cluster_pids(data):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _timed(url: str, timeout: float = 15) -> tuple[int, float]:
    started = time.monotonic()
    try:
        status = http(url, headers={"Connection": "close"}, timeout=timeout).status
    except OSError:
        status = 0
    return status, time.monotonic() - started


def test_a_hung_database_does_not_hang_the_service(own_cluster, tmp_path):
    _version, port, data = own_cluster
    url = f"postgres://postgres@127.0.0.1:{port}/hang"
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=server_env(database_url=url, var_dir=tmp_path),
        check=True,
        timeout=300,
    )
    env = {
        "OBSERVABILITY_DATABASE_STATEMENT_TIMEOUT": str(STATEMENT_TIMEOUT),
        "OBSERVABILITY_DATABASE_CONNECT_TIMEOUT": str(CONNECT_TIMEOUT),
    }
    with GunicornServer(url, tmp_path / "app", workers=2, env=env) as server:
        body = b"weights"
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        artifact = server.url("/api/v1/buckets/hang/artifacts/model/1")
        assert http(artifact, "PUT", body, {"X-Content-Digest": digest}).status == 201
        for _ in range(10):  # every worker thread has its persistent connection open
            assert http(artifact).status == 200
        assert http(server.url("/health/ready")).status == 200
        workers = sorted(server.worker_pids())

        _signal_cluster(data, signal.SIGSTOP)
        stopped_at = time.monotonic()
        api: list[tuple[int, float]] = []
        stop = threading.Event()

        def clients() -> None:
            while not stop.is_set():
                api.append(_timed(artifact))

        threads = [threading.Thread(target=clients, daemon=True) for _ in range(3)]
        for thread in threads:
            thread.start()
        live: list[tuple[int, float]] = []
        ready: list[tuple[int, float, float]] = []
        try:
            while time.monotonic() - stopped_at < 12:
                live.append(_timed(server.url("/health/live")))
                status, elapsed = _timed(server.url("/health/ready"))
                ready.append((status, elapsed, time.monotonic() - stopped_at))
                time.sleep(0.2)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
            _signal_cluster(data, signal.SIGCONT)
        resumed_at = time.monotonic()

        assert live and all(status == 200 and elapsed < 1.0 for status, elapsed in live), live
        assert all(elapsed < 2.0 for _, elapsed, _ in ready), ready
        # The first probe sent more than HEALTH_CACHE_SECONDS (1 s) after the hang answers 503, itself within 2 s.
        first_503 = next(at for status, elapsed, at in ready if status == 503)
        assert next(at - elapsed for status, elapsed, at in ready if status == 503) < 2.0, ready
        assert all(status == 503 for status, _, at in ready if at > first_503 + 0.5), ready
        assert api, "no API request was made during the hang"
        slowest = max(elapsed for _, elapsed in api)
        assert slowest < BOUND, (slowest, api)
        assert {status for status, _ in api} <= {200, 503}, api
        assert sum(status == 503 for status, _ in api) >= len(api) - 6, api  # after the first failures: shed

        # Recovery without restart: the same workers serve again once the database answers.
        deadline = resumed_at + 20
        while time.monotonic() < deadline:
            if http(server.url("/health/ready")).status == 200 and http(artifact).status == 200:
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"the service did not recover after SIGCONT:\n{server.output()[-3000:]}")
        assert sorted(server.worker_pids()) == workers
        assert "Traceback" not in server.output()
