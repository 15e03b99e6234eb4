"""health.contrib: the queue checks through redis-py and kombu, against real servers.

Redis: a redis-server of the test's own (plain, with ACL users, and TLS-only with a certificate made here).
AMQP: the machine's RabbitMQ (``OBSERVABILITY_TEST_AMQP_URL``, default guest on 127.0.0.1:5672), never changed:
the test only logs in, with good and bad credentials, and a port that answers TCP but is not AMQP.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from observability_app.health import HealthCheckFailed
from observability_app.health.contrib.amqp import AmqpCheck
from observability_app.health.contrib.redis import RedisCheck

from .servers import free_port, require_tool

AMQP_URL = os.environ.get("OBSERVABILITY_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")


@contextlib.contextmanager
def redis_server(*args: str, tls: bool = False) -> Iterator[int]:
    port = free_port()
    listen = ["--port", "0", "--tls-port", str(port)] if tls else ["--port", str(port)]
    command = [require_tool("redis-server"), *listen, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen([*command, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            assert process.poll() is None, f"redis-server exited with {process.returncode}"
            time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(10)


def _check(settings, check, url):
    settings.OBSERVABILITY = {"HEALTH_QUEUE_URL": url, "HEALTH_CHECK_TIMEOUT": 2}
    check.check()


def _fails(settings, check, url, match):
    with pytest.raises(HealthCheckFailed, match=match) as info:
        _check(settings, check, url)
    assert "s3cret" not in str(info.value) and "wrong" not in str(info.value)  # no credentials in the answer


def test_redis_check_with_acl_users(settings):
    acl = ["--user", "app", "on", ">s3cret", "~*", "&*", "+@all", "--user", "mute", "on", ">s3cret", "~*", "-@all"]
    with redis_server(*acl, "--user", "default", "off") as port:
        _check(settings, RedisCheck(), f"redis://app:s3cret@127.0.0.1:{port}/0")
        _fails(settings, RedisCheck(), f"redis://app:wrong@127.0.0.1:{port}/0", "credentials|refused")
        _fails(settings, RedisCheck(), f"redis://127.0.0.1:{port}/0", "refused")  # the default user is off
        _fails(settings, RedisCheck(), f"redis://mute:s3cret@127.0.0.1:{port}/0", "refused PING")


def test_redis_check_over_tls(settings, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [require_tool("openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
         "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    tls = ["--tls-cert-file", str(cert), "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert)]
    with redis_server(*tls, "--tls-auth-clients", "no", tls=True) as port:
        _check(settings, RedisCheck(), f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={cert}")
        _fails(settings, RedisCheck(), f"rediss://127.0.0.1:{port}/0", "reached")  # not our CA: verification fails
        _fails(settings, RedisCheck(), f"redis://127.0.0.1:{port}/0", "reached")  # plain text to a TLS port


def test_redis_check_down_and_wrong_scheme(settings):
    _fails(settings, RedisCheck(), f"redis://127.0.0.1:{free_port()}/0", "reached")
    _fails(settings, RedisCheck(), "amqp://127.0.0.1:5672//", "not a redis")


@pytest.fixture
def broker() -> str:
    parts = urlsplit(AMQP_URL)
    try:
        socket.create_connection((parts.hostname, parts.port or 5672), timeout=2).close()
    except OSError:
        if os.environ.get("OBSERVABILITY_TEST_REQUIRE_SYSTEM_TOOLS"):
            pytest.fail(f"the AMQP broker at {parts.hostname}:{parts.port} is required (RabbitMQ)")
        pytest.skip(f"no AMQP broker at {parts.hostname}:{parts.port}")
    return AMQP_URL


def test_amqp_check_does_the_handshake(settings, broker):
    _check(settings, AmqpCheck(), broker)
    parts = urlsplit(broker)
    host = f"{parts.hostname}:{parts.port or 5672}"
    _fails(settings, AmqpCheck(), f"amqp://{parts.username}:wrong@{host}//", "credentials")
    _fails(
        settings, AmqpCheck(), f"amqp://{parts.username}:{parts.password}@{host}/no-such-vhost", "virtual host|refused"
    )


def test_amqp_check_refuses_a_port_that_is_not_a_broker(settings):
    with redis_server() as port:  # answers TCP, does not speak AMQP: the built-in QueueCheck's connect would pass
        _fails(settings, AmqpCheck(), f"amqp://guest:guest@127.0.0.1:{port}//", "reached|handshake")
    _fails(settings, AmqpCheck(), f"amqp://guest:guest@127.0.0.1:{free_port()}//", "reached")
    _fails(settings, AmqpCheck(), "redis://127.0.0.1:6379/0", "not an amqp")


def test_contrib_checks_run_through_the_readiness_probe(settings, db, client):
    with redis_server() as port:
        settings.OBSERVABILITY = {
            "HEALTH_QUEUE_URL": f"redis://127.0.0.1:{port}/0",
            "HEALTH_CHECKS": [
                "observability_app.health.DatabaseCheck",
                "observability_app.health.contrib.redis.RedisCheck",
            ],
            "HEALTH_CACHE_SECONDS": 0,
        }
        response = client.get("/health/ready")
        assert response.status_code == 200 and response.json()["checks"]["queue"]["status"] == "pass"
    response = client.get("/health/ready")  # the server is gone
    assert response.status_code == 503 and response.json()["checks"]["queue"]["status"] == "fail"
