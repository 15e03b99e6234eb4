"""Health probes: JSON contract, pluggable checks, time bounds against hung dependencies, probe floods, and the
example project under gunicorn with its database unreachable, blackholed or unmigrated."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import datetime

import pytest
from django.core.checks import run_checks
from django.test import Client
from hypothesis import given
from hypothesis import strategies as st

from observability_app.health import (
    PASS,
    CacheCheck,
    DatabaseCheck,
    HealthCheck,
    HealthCheckFailed,
    MigrationsCheck,
    QueueCheck,
    Runner,
    readiness,
)
from observability_app.health.runner import _runner
from tests.servers import GunicornServer, free_port, http, parse, require_tool, total


@pytest.fixture(autouse=True)
def _fresh_probe_cache():
    _runner.forget()
    yield
    _runner.forget()


def _json(response) -> dict:
    assert response["Content-Type"] == "application/json"
    assert "no-store" in response["Cache-Control"]
    return json.loads(response.content)


def test_liveness_answers_without_consulting_anything(client):
    response = client.get("/health/live")
    assert response.status_code == 200
    data = _json(response)
    assert data["status"] == "pass" and data["checks"] == {}
    assert datetime.fromisoformat(data["timestamp"].replace("Z", "+00:00")).tzinfo is not None


@pytest.mark.parametrize("path", ["/health/ready", "/api/v1/health"])
def test_readiness_and_its_alias(client, db, path):
    response = client.get(path)
    data = _json(response)
    assert response.status_code == 200, data
    assert data["status"] == "pass"
    assert set(data["checks"]) == {"database", "migrations"}
    for result in data["checks"].values():
        assert result["status"] == "pass"
        assert isinstance(result["duration_ms"], float) and result["duration_ms"] >= 0


def test_other_methods_are_refused(client, db):
    for path in ("/health/live", "/health/ready", "/api/v1/health"):
        response = client.post(path, data="{}", content_type="application/json")
        assert response.status_code == 405
        assert response["Allow"] == "GET, HEAD"
        assert json.loads(response.content)["status"] == "fail"
        assert client.head(path).status_code in (200, 503)


@given(query=st.text(max_size=200))
def test_query_strings_change_nothing(query):
    response = Client().get("/health/live", {"q": query, "format": query})
    assert response.status_code == 200
    assert json.loads(response.content)["status"] == "pass"


# -- pluggable checks ----------------------------------------------------------------------------------------------


class LeakyCheck(HealthCheck):
    name = "leaky"

    def check(self) -> None:
        raise ConnectionError("could not connect to postgres://admin:hunter2@db.internal:5432/prod")


class ExplainedCheck(HealthCheck):
    name = "explained"

    def check(self) -> None:
        raise HealthCheckFailed("index not built yet")


class HangingCheck(HealthCheck):
    name = "hanging"
    release = threading.Event()
    started = 0

    def check(self) -> None:
        type(self).started += 1
        self.release.wait(30)


class CountingCheck(HealthCheck):
    name = "counting"
    calls = 0

    def check(self) -> None:
        type(self).calls += 1
        time.sleep(0.05)


def test_failing_checks_are_named_without_their_secrets(settings, client, db):
    settings.OBSERVABILITY = {
        "HEALTH_CHECKS": [
            "observability_app.health.DatabaseCheck",
            f"{__name__}.LeakyCheck",
            f"{__name__}.ExplainedCheck",
        ]
    }
    response = client.get("/health/ready")
    assert response.status_code == 503
    body = response.content.decode()
    data = json.loads(body)
    assert data["status"] == "fail"
    assert data["checks"]["database"]["status"] == "pass"
    assert data["checks"]["leaky"] == {
        "status": "fail",
        "duration_ms": data["checks"]["leaky"]["duration_ms"],
        "error": "ConnectionError",
    }
    assert data["checks"]["explained"]["error"] == "index not built yet"
    for secret in ("hunter2", "admin", "db.internal", "5432", "Traceback"):
        assert secret not in body


def test_a_hung_check_answers_503_within_the_bound_and_is_not_restarted(settings, client, db):
    settings.OBSERVABILITY = {
        "HEALTH_CHECKS": ["observability_app.health.DatabaseCheck", f"{__name__}.HangingCheck"],
        "HEALTH_CHECK_TIMEOUT": 0.4,
        "HEALTH_CACHE_SECONDS": 0,
    }
    HangingCheck.release.clear()
    HangingCheck.started = 0
    try:
        for _ in range(5):
            started = time.monotonic()
            response = client.get("/health/ready")
            elapsed = time.monotonic() - started
            assert response.status_code == 503
            assert elapsed < 1.5
            data = json.loads(response.content)
            assert data["checks"]["hanging"]["error"] == "timeout"
            assert data["checks"]["database"]["status"] == "pass"
        assert HangingCheck.started == 1  # the hung run is waited on, never duplicated
        hung_threads = [thread for thread in threading.enumerate() if thread.name == "health-hanging"]
        assert len(hung_threads) == 1
        assert client.get("/health/live").status_code == 200
    finally:
        HangingCheck.release.set()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and client.get("/health/ready").status_code != 200:
        time.sleep(0.05)
    assert client.get("/health/ready").status_code == 200  # recovers once the dependency answers


def test_a_probe_flood_runs_the_checks_once_per_cache_window(settings):
    settings.OBSERVABILITY = {"HEALTH_CACHE_SECONDS": 5}
    CountingCheck.calls = 0
    runner = Runner([CountingCheck()])
    results = []

    def probe() -> None:
        results.append(runner.report().status)

    threads = [threading.Thread(target=probe) for _ in range(100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results == [PASS] * 100
    assert CountingCheck.calls == 1
    assert runner.report(max_age=0).status == PASS
    assert CountingCheck.calls == 2


def test_database_check_runs_once_per_alias():
    from django.conf import settings as django_settings

    names = [check.name for check in DatabaseCheck.instances()]
    assert names == ["database" if alias == "default" else f"database:{alias}" for alias in django_settings.DATABASES]

    class Replicated(DatabaseCheck):
        aliases = ("default", "replica")

    assert [check.name for check in Replicated.instances()] == ["database", "database:replica"]


def test_migrations_check_passes_on_the_migrated_test_database(db):
    MigrationsCheck._applied_at = 0.0
    MigrationsCheck().check()


def test_cache_check(settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CacheCheck().check()


def test_cache_check_fails_on_a_broken_cache(settings, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "broken": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": str(blocker / "c")},
    }
    settings.OBSERVABILITY = {"HEALTH_CACHE_ALIAS": "broken", "HEALTH_CHECKS": ["observability_app.health.CacheCheck"]}
    report = readiness(max_age=0)
    assert report.status == "fail"
    assert report.checks[0].name == "cache" and report.checks[0].error in ("FileExistsError", "NotADirectoryError")


@contextlib.contextmanager
def redis_server(password: str | None = None) -> Iterator[int]:
    binary = require_tool("redis-server")
    port = free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    if password:
        args += ["--requirepass", password]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(10)


def test_queue_check_against_a_real_redis(settings):
    with redis_server() as port:
        settings.OBSERVABILITY = {"HEALTH_QUEUE_URL": f"redis://127.0.0.1:{port}/0"}
        QueueCheck().check()
    with redis_server(password="s3cret") as port:
        settings.OBSERVABILITY = {"HEALTH_QUEUE_URL": f"redis://:s3cret@127.0.0.1:{port}/0"}
        QueueCheck().check()
        settings.OBSERVABILITY = {"HEALTH_QUEUE_URL": f"redis://:wrong@127.0.0.1:{port}/0"}
        with pytest.raises(HealthCheckFailed):
            QueueCheck().check()
        settings.OBSERVABILITY = {"HEALTH_QUEUE_URL": f"redis://127.0.0.1:{port}/0"}
        with pytest.raises(HealthCheckFailed):  # no AUTH: PING is refused
            QueueCheck().check()


def test_queue_check_names_the_queue_when_it_is_down(settings, db):
    port = free_port()
    settings.OBSERVABILITY = {
        "HEALTH_QUEUE_URL": f"redis://127.0.0.1:{port}/0",
        "HEALTH_CHECKS": ["observability_app.health.DatabaseCheck", "observability_app.health.QueueCheck"],
    }
    response = Client().get("/health/ready")
    assert response.status_code == 503
    data = json.loads(response.content)
    assert data["checks"]["queue"] == {
        "status": "fail",
        "duration_ms": data["checks"]["queue"]["duration_ms"],
        "error": "ConnectionRefusedError",
    }
    assert str(port) not in response.content.decode()


@given(url=st.one_of(st.none(), st.text(max_size=100), st.just("redis://"), st.just("ftp://host:21")))
def test_queue_check_with_hostile_urls_fails_cleanly(url):
    from django.test import override_settings

    with override_settings(OBSERVABILITY={"HEALTH_QUEUE_URL": url, "HEALTH_CHECK_TIMEOUT": 0.2}):
        report = Runner([QueueCheck()]).evaluate(0.5)
    assert report.status == "fail"
    assert len(report.checks[0].error) <= 200


# -- system checks ---------------------------------------------------------------------------------------------------


def _ids(settings, **observability) -> set[str]:
    settings.OBSERVABILITY = observability
    return {message.id for message in run_checks() if message.id and message.id.startswith("observability_app.")}


def test_system_checks(settings, monkeypatch, tmp_path):
    assert not {"observability_app.E030", "observability_app.E033"} & _ids(settings)
    assert "observability_app.E030" in _ids(settings, HEALTH_CHECKS=["no.such.Check"])
    assert "observability_app.E030" in _ids(settings, HEALTH_CHECKS=["observability_app.conf.build_settings"])
    assert "observability_app.E031" in _ids(settings, METRICS_TOKEN="")
    assert "observability_app.E033" in _ids(settings, HEALTH_QUEUE_URL="ftp://x")
    assert "observability_app.E033" in _ids(settings, HEALTH_QUEUE_URL="tcp://host")
    assert "observability_app.E034" in _ids(
        settings, HEALTH_CHECKS=["observability_app.health.CacheCheck"], HEALTH_CACHE_ALIAS="nope"
    )
    assert "observability_app.E035" in _ids(settings, OTLP_ENDPOINT="collector:4318")
    assert "observability_app.E036" in _ids(settings, HEALTH_CACHE_SECONDS=-1)
    assert "observability_app.E037" in _ids(settings, METRICS_ENABLED="yes")
    assert "observability_app.E038" in _ids(settings, HEALTH_CHECKS=["observability_app.health.QueueCheck"])
    assert "observability_app.W030" in _ids(settings, ENVIRONMENT="production", AUDIT_SIGNING_KEY="k")
    assert "observability_app.W030" not in _ids(
        settings, ENVIRONMENT="production", METRICS_TOKEN="t", AUDIT_SIGNING_KEY="k"
    )
    assert "observability_app.W031" in _ids(settings, HEALTH_CHECK_TIMEOUT=10)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "missing"))
    assert "observability_app.E032" in _ids(settings)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    assert "observability_app.E032" not in _ids(settings)


# -- the example project under gunicorn, its database broken ------------------------------------------------------


def _probe(server: GunicornServer, path: str) -> tuple[int, dict, float]:
    started = time.monotonic()
    answer = http(server.url(path), timeout=10)
    elapsed = time.monotonic() - started
    return answer.status, json.loads(answer.body), elapsed


@pytest.mark.gunicorn
def test_postgresql_unreachable_answers_503_fast(tmp_path):
    unused = free_port()
    url = f"postgres://postgres:pw-not-shown@127.0.0.1:{unused}/h4"
    with GunicornServer(url, tmp_path, workers=1) as server:
        for path in ("/health/ready", "/api/v1/health"):
            status, data, elapsed = _probe(server, path)
            assert status == 503, data
            assert elapsed < 2.0
            assert data["checks"]["database"]["status"] == "fail"
            assert data["checks"]["database"]["error"] == "OperationalError"
            assert "pw-not-shown" not in json.dumps(data) and str(unused) not in json.dumps(data)
        status, data, elapsed = _probe(server, "/health/live")
        assert status == 200 and elapsed < 2.0
        started = time.monotonic()
        samples = parse(http(server.url("/metrics")).body.decode())
        assert time.monotonic() - started < 2.0
        assert total(samples, "health_ready") == 0
        assert total(samples, "health_check_ok", check="database") == 0


@pytest.mark.gunicorn
def test_a_blackholed_database_answers_503_within_two_seconds(tmp_path):
    hole = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    hole.bind(("127.0.0.1", 0))
    hole.listen(64)  # the kernel completes every handshake; nobody ever answers
    port = hole.getsockname()[1]
    try:
        with GunicornServer(f"postgres://postgres@127.0.0.1:{port}/h4", tmp_path, workers=1) as server:
            for attempt in range(3):
                status, data, elapsed = _probe(server, "/health/ready" if attempt % 2 == 0 else "/api/v1/health")
                assert status == 503, data
                assert elapsed < 2.0, elapsed
                if attempt:  # the first run's connect timed out (2 s) and opened the breaker: no wait any more
                    assert elapsed < 1.0, elapsed
                assert data["checks"]["database"] == {
                    "status": "fail",
                    "duration_ms": data["checks"]["database"]["duration_ms"],
                    "error": "timeout",
                }
                time.sleep(1.1)  # past HEALTH_CACHE_SECONDS: a fresh evaluation each time
            status, _, elapsed = _probe(server, "/health/live")
            assert status == 200 and elapsed < 1.0
            started = time.monotonic()
            assert http(server.url("/metrics")).status == 200
            assert time.monotonic() - started < 2.0
    finally:
        hole.close()


@pytest.mark.gunicorn
def test_unapplied_migrations_make_the_service_not_ready(tmp_path):
    with GunicornServer(f"sqlite:///{tmp_path / 'empty.sqlite3'}", tmp_path, workers=1) as server:
        status, data, _ = _probe(server, "/health/ready")
    assert status == 503
    assert data["checks"]["database"]["status"] == "pass"
    assert data["checks"]["migrations"]["status"] == "fail"
