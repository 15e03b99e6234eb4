"""observability_app.database: bounded connect and statement time, the breaker, and the example under gunicorn with
a PostgreSQL cluster of the test's own frozen by SIGSTOP (hung, not refused).

The cluster is this module's own (``OwnPostgres``, port ``OBSERVABILITY_TEST_OWN_PG_PORT``, default 55433): the
shared one is never stopped. The tests run on both suite runs; the database under test is always that cluster.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.client import HTTPException

import dj_database_url
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import OperationalError
from django.db.utils import ConnectionHandler
from django.test import Client, override_settings
from hypothesis import given
from hypothesis import strategies as st

from observability_app import database
from tests.servers import ROOT, GunicornServer, OwnPostgres, http, own_postgres_port, server_env

ARTIFACT = "/api/v1/buckets/hang/artifacts/model/1"


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[OwnPostgres]:
    pytest.importorskip("psycopg")
    with OwnPostgres(own_postgres_port()) as cluster:
        yield cluster


@pytest.fixture(autouse=True)
def _closed_breakers(request, django_db_blocker) -> Iterator[None]:
    """Breakers closed after each test; connections of our own to the own cluster allowed (not the test DB's)."""
    with django_db_blocker.unblock() if "own_postgres" in request.fixturenames else contextlib.nullcontext():
        yield
    for found in list(database._breakers.values()):
        found.recover()
        found.release_probe()


@contextlib.contextmanager
def _connection(url: str) -> Iterator[object]:
    """A Django connection of its own to ``url``, as ``DATABASES`` would make it (``connect_timeout`` included)."""
    handler = ConnectionHandler({"default": dj_database_url.parse(url), "hang": dj_database_url.parse(url)})
    database._Bounds.load()
    settings_dict = handler.settings["hang"]
    settings_dict.setdefault("OPTIONS", {}).setdefault("connect_timeout", 2)
    connection = handler["hang"]
    try:
        yield connection
    finally:
        with contextlib.suppress(Exception):
            connection.close()


@contextlib.contextmanager
def _frozen(cluster: OwnPostgres) -> Iterator[None]:
    cluster.freeze()
    try:
        yield
    finally:
        cluster.thaw()


def _elapsed(function, *args) -> tuple[float, BaseException | None]:
    started = time.monotonic()
    try:
        function(*args)
    except Exception as exc:
        return time.monotonic() - started, exc
    return time.monotonic() - started, None


# -- the client-side bound, on a real frozen server ---------------------------------------------------------------


@override_settings(OBSERVABILITY={"DATABASE_STATEMENT_TIMEOUT": 0.5})
def test_a_statement_on_a_frozen_server_is_given_up_and_the_breaker_opens(own_postgres):
    """Guard of the psycopg hook: the wait of a hung query returns with DatabaseTimeout (bound 0.5 + 1 s)."""
    with _connection(own_postgres.url()) as connection:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        with _frozen(own_postgres), database.bounded():
            elapsed, error = _elapsed(lambda: connection.cursor().execute("SELECT 1"))
        assert isinstance(error, OperationalError), error
        assert isinstance(error.__cause__, database.DatabaseTimeout)
        assert "did not answer within 1.5 s" in str(error.__cause__)
        assert 1.4 < elapsed < 4.0, elapsed
        assert database.breaker("hang").open and database.breaker("hang").reason == "timeout"
        assert connection.connection.closed  # given up: never reused half-way through a protocol exchange
        assert database.is_unavailable(error) and database.reason_for(error) == "timeout"


@override_settings(OBSERVABILITY={"DATABASE_STATEMENT_TIMEOUT": 0.5})
def test_commit_and_djangos_usability_ping_are_bounded_too(own_postgres):
    """COMMIT and ``is_usable()`` (CONN_HEALTH_CHECKS) go to psycopg directly, past Django's execute wrappers."""
    with _connection(own_postgres.url()) as connection:
        connection.set_autocommit(False)
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        with _frozen(own_postgres), database.bounded():
            elapsed, error = _elapsed(connection.commit)
        assert isinstance(error, OperationalError) and isinstance(error.__cause__, database.DatabaseTimeout)
        assert elapsed < 4.0
    with _connection(own_postgres.url()) as connection:
        connection.ensure_connection()
        with _frozen(own_postgres), database.bounded():
            started = time.monotonic()
            assert connection.is_usable() is False
            assert time.monotonic() - started < 4.0


@override_settings(OBSERVABILITY={"DATABASE_STATEMENT_TIMEOUT": 0.5})
def test_outside_requests_nothing_is_bounded_and_no_statement_timeout_is_set(own_postgres):
    """Commands and workers run long statements on purpose: a connection opened outside a request keeps the
    server's default and no client-side bound."""
    with _connection(own_postgres.url()) as connection, connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        assert cursor.fetchone()[0] == "0"
        cursor.execute("SELECT pg_sleep(2.0)")  # longer than the client bound of a request (0.5 + 1 s)
    assert not database.breaker("hang").open


@override_settings(OBSERVABILITY={"DATABASE_STATEMENT_TIMEOUT": 1.0})
def test_a_connection_opened_for_a_request_gets_the_server_side_statement_timeout(own_postgres):
    from observability_app import context

    with _connection(own_postgres.url()) as connection, context.bound(method="GET", source="api"):
        with connection.cursor() as cursor:
            cursor.execute("SHOW statement_timeout")
            assert cursor.fetchone()[0] == "1s"
            with pytest.raises(OperationalError) as caught:
                cursor.execute("SELECT pg_sleep(10)")  # the live server cancels it at 1 s, before the client's 2 s
        assert database.is_unavailable(caught.value)
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            assert cursor.fetchone() == (1,)
    assert not database.breaker("hang").open  # a slow statement is not an outage


def test_connect_to_a_frozen_server_gives_up_after_connect_timeout(own_postgres):
    with _connection(own_postgres.url()) as connection, _frozen(own_postgres):
        elapsed, error = _elapsed(connection.ensure_connection)
    assert isinstance(error, OperationalError)
    assert database.reason_for(error) == "timeout" and database.is_unavailable(error)
    assert elapsed < 4.0


def test_connect_timeout_is_set_on_postgresql_aliases_only_when_missing(settings):
    from django.db import connections

    database._apply_connect_timeout()
    for alias in connections:
        options = connections.settings[alias].get("OPTIONS", {})
        if database._is_postgresql(connections.settings[alias]):
            assert options["connect_timeout"] == 2
        else:
            assert "connect_timeout" not in options


@given(value=st.one_of(st.text(max_size=5), st.booleans(), st.just(0), st.just(-1.0), st.just(float("inf"))))
def test_bad_bounds_are_refused_with_the_key_named(value):
    for key in ("DATABASE_CONNECT_TIMEOUT", "DATABASE_STATEMENT_TIMEOUT", "DATABASE_RETRY_SECONDS"):
        with override_settings(OBSERVABILITY={key: value}), pytest.raises(ImproperlyConfigured, match=key):
            database._Bounds.load()
    database._Bounds.load()


@given(value=st.one_of(st.none(), st.floats(min_value=0.01, max_value=600)))
def test_good_bounds_are_taken(value):
    with override_settings(OBSERVABILITY={"DATABASE_STATEMENT_TIMEOUT": value}):
        database._Bounds.load()
        assert database._Bounds.client() == (None if value is None else value + 1.0)
    database._Bounds.load()


# -- the breaker through the middleware ------------------------------------------------------------------------------


def test_while_the_breaker_is_open_views_answer_503_at_once_and_probes_keep_answering(settings, db):
    settings.OBSERVABILITY = {"DATABASE_RETRY_SECONDS": 30}
    client = Client()
    database.trip("default", "timeout")
    response = client.get(ARTIFACT)
    assert response.status_code == 503
    assert response["Retry-After"] == "30"
    assert json.loads(response.content) == {"error": "database unavailable", "retry_after": 30}
    assert response["X-Request-Id"]
    assert client.get("/health/live").status_code == 200
    assert client.get("/metrics").status_code == 200
    ready = client.get("/health/ready")
    assert ready.status_code == 503
    assert json.loads(ready.content)["checks"]["database"]["error"] == "timeout"  # from the breaker, no wait
    database.recover("default")
    assert client.get(ARTIFACT).status_code != 503


# -- the example under gunicorn, its database frozen ---------------------------------------------------------------


@dataclass
class _Log:
    """(started, seconds, status) per request, by kind, from the threads that drive the server."""

    entries: dict[str, list[tuple[float, float, int]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, started: float, seconds: float, status: int) -> None:
        with self.lock:
            self.entries.setdefault(kind, []).append((started, seconds, status))

    def of(self, kind: str, start: float = 0.0, end: float = float("inf")) -> list[tuple[float, float, int]]:
        with self.lock:
            return [entry for entry in self.entries.get(kind, []) if start <= entry[0] < end]


def _drive(server: GunicornServer, log: _Log, stop: threading.Event, kind: str, path: str, pause: float) -> None:
    index = 0
    while not stop.is_set():
        index += 1
        started = time.monotonic()
        method, body, headers = "GET", None, {"Connection": "close"}
        if kind == "put":
            import hashlib

            body = f"weights {index} {threading.get_ident()}".encode()
            method = "PUT"
            headers["X-Content-Digest"] = "sha256:" + hashlib.sha256(body).hexdigest()
            path = f"/api/v1/buckets/hang/artifacts/w{threading.get_ident()}/{index}"
        try:
            status = http(server.url(path), method=method, data=body, headers=headers, timeout=30).status
        except (OSError, HTTPException):
            status = 0  # a reset, a cut answer or a client timeout: a failure the assertions name
        log.add(kind, started, time.monotonic() - started, status)
        stop.wait(pause)


@pytest.mark.gunicorn
def test_a_hung_database_does_not_hang_the_service(own_postgres, tmp_path):
    """SIGSTOP on the postmaster and every backend while 3 gthread workers serve reads, writes and probes.

    Bounds of the test: DATABASE_STATEMENT_TIMEOUT 2 s (client bound 3 s), DATABASE_CONNECT_TIMEOUT 2 s, so no
    request may take longer than 3 + 2 s (docs/deployment.md); the defaults give 6 + 2 s.
    """
    url = own_postgres.create_database("h13_hang")
    env = server_env(url, tmp_path)
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True,
                   timeout=300)  # fmt: skip
    bounds = {"OBSERVABILITY_DATABASE_STATEMENT_TIMEOUT": "2", "OBSERVABILITY_DATABASE_CONNECT_TIMEOUT": "2"}
    request_bound = 2 + 1 + 2
    with GunicornServer(url, tmp_path / "server", workers=3, env=bounds) as server:
        body = b"model weights"
        import hashlib

        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        put = http(server.url(ARTIFACT), method="PUT", data=body, headers={"X-Content-Digest": digest})
        assert put.status == 201, put.body
        workers_before = sorted(server.worker_pids())
        log, stop = _Log(), threading.Event()
        drivers = [
            *(threading.Thread(target=_drive, args=(server, log, stop, "read", ARTIFACT, 0.02)) for _ in range(3)),
            threading.Thread(target=_drive, args=(server, log, stop, "put", "", 0.05)),
            threading.Thread(target=_drive, args=(server, log, stop, "live", "/health/live", 0.2)),
            threading.Thread(target=_drive, args=(server, log, stop, "ready", "/health/ready", 0.3)),
            threading.Thread(target=_drive, args=(server, log, stop, "metrics", "/metrics", 1.0)),
        ]
        for driver in drivers:
            driver.start()
        try:
            time.sleep(3)
            frozen_at = time.monotonic()
            with _frozen(own_postgres):
                time.sleep(12)
                thawed_at = time.monotonic()
            recovered_at = None
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and recovered_at is None:
                time.sleep(0.2)
                recent = log.of("read", time.monotonic() - 1.0)
                ready = log.of("ready", time.monotonic() - 1.0)
                if recent and ready and all(s == 200 for _, _, s in recent) and all(s == 200 for _, _, s in ready):
                    recovered_at = time.monotonic()
            time.sleep(2)
        finally:
            stop.set()
            for driver in drivers:
                driver.join(40)
        output = server.output()
        workers_after = sorted(server.worker_pids())

    def summary(kind: str, start: float = 0.0, end: float = float("inf")) -> str:
        entries = log.of(kind, start, end)
        statuses = sorted({status for _, _, status in entries})
        slowest = max((seconds for _, seconds, _ in entries), default=0.0)
        return f"{kind}: {len(entries)} requests, statuses {statuses}, slowest {slowest:.2f} s"

    report = "\n".join(summary(kind) for kind in ("read", "put", "live", "ready", "metrics"))
    # Liveness answers throughout, within 1 s.
    live = log.of("live")
    assert live and all(status == 200 and seconds < 1.0 for _, seconds, status in live), report
    # Readiness: always within 2 s; 503 from the first probe that cannot be served from the 1 s cache.
    assert all(seconds < 2.0 for _, seconds, _ in log.of("ready")), report
    during = log.of("ready", frozen_at + 1.1, thawed_at)
    assert during and all(status == 503 for _, _, status in during), summary("ready", frozen_at + 1.1, thawed_at)
    # No request waits longer than the bound; none fails with anything but 503 while the database hangs.
    for kind in ("read", "put", "metrics"):
        assert all(seconds < request_bound + 1.0 for _, seconds, _ in log.of(kind)), report
        assert {status for _, _, status in log.of(kind, frozen_at, thawed_at)} <= {200, 201, 503}, report
    # Fail fast: once each worker has seen the outage (a probe, or its first bounded wait), 503 in well under 1 s.
    late = [entry for kind in ("read", "put") for entry in log.of(kind, frozen_at + request_bound + 0.5, thawed_at)]
    report += f"\npast the bound: {len(late)} requests, slowest {max((s for _, s, _ in late), default=0):.3f} s"
    assert len(late) > 50, report
    assert all(status == 503 and seconds < 0.5 for _, seconds, status in late), report
    assert all(seconds < 2.0 for _, seconds, _ in log.of("metrics", frozen_at + 3.0, thawed_at)), report
    # Recovery without a restart: the same workers serve again.
    assert recovered_at is not None, f"not recovered after the thaw\n{report}\n{output[-3000:]}"
    assert recovered_at - thawed_at < 10, report
    assert workers_after == workers_before, output[-3000:]
    after = log.of("read", recovered_at)
    assert after and all(status == 200 for _, _, status in after), summary("read", recovered_at)
    print(report, f"recovered {recovered_at - thawed_at:.1f} s after the thaw", sep="\n")


def test_the_watchdog_wakes_for_a_wait_due_before_the_one_it_sleeps_on():
    """A bound lowered while the watchdog sleeps on a longer wait (the settings changed, a ``bounded()`` block of a
    shorter bound): the new wait is still given up at its own deadline, not the old one's."""
    long_wait, _peer = socket.socketpair()
    short_wait, short_peer = socket.socketpair()
    with long_wait, _peer, short_wait, short_peer:
        sleeping_on = database._watchdog.arm(long_wait.fileno(), 30)
        time.sleep(0.2)  # the thread is now asleep until the 30 s deadline
        database._watchdog.disarm(sleeping_on)
        armed = database._watchdog.arm(short_wait.fileno(), 0.3)
        short_wait.settimeout(10)
        started = time.monotonic()
        assert short_wait.recv(1) == b""  # shut down by the watchdog: the blocked read returns
        elapsed = time.monotonic() - started
        database._watchdog.disarm(armed)
    assert armed.fired and elapsed < 5, elapsed
