"""A real Celery worker of the example project on the local Redis (DB 12 by default) or RabbitMQ, for end-to-end
tests.

``celery -A example_project.celery -q worker --pool prefork -c 2`` with its metrics port, state file and
multi-process directory in the test's directory; stopped (SIGTERM, then SIGKILL) by the test. Redis must answer on
127.0.0.1:6379 (``.ci/run`` starts it): a missing Redis fails under ``OBSERVABILITY_TEST_REQUIRE_SYSTEM_TOOLS`` and
skips elsewhere, like the other system tools.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.servers import ROOT, ChildProcess, free_port, http, server_env

#: The Redis DB the worker tests use; OBSERVABILITY_TEST_REDIS_DB gives another (two suites side by side on one
#: Redis, each flushing its own DB).
REDIS_DB = int(os.environ.get("OBSERVABILITY_TEST_REDIS_DB", "12"))
BROKER_URL = f"redis://127.0.0.1:6379/{REDIS_DB}"
#: The local RabbitMQ (vhost ``/``, Debian's default guest user); the tests declare queues and exchanges of their
#: own there, named ``<QUEUE_PREFIX>-<random>-...``, and delete them afterwards.
AMQP_URL = os.environ.get("OBSERVABILITY_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
QUEUE_PREFIX = os.environ.get("OBSERVABILITY_TEST_QUEUE_PREFIX", "obs-test")


def redis_command(*words: str) -> str:
    """One Redis command on DB 12 over a raw socket (RESP); the reply's first line."""
    with socket.create_connection(("127.0.0.1", 6379), timeout=3) as sock:
        for command in (("SELECT", str(REDIS_DB)), words):
            payload = f"*{len(command)}\r\n" + "".join(f"${len(word)}\r\n{word}\r\n" for word in command)
            sock.sendall(payload.encode())
            reply = b""
            while not reply.endswith(b"\r\n"):
                reply += sock.recv(4096)
        return reply.decode().strip()


def require_redis() -> None:
    try:
        assert redis_command("PING") == "+PONG"
    except (OSError, AssertionError) as exc:
        if os.environ.get("OBSERVABILITY_TEST_REQUIRE_SYSTEM_TOOLS"):
            pytest.fail(f"Redis at 127.0.0.1:6379 is required ({exc}); .ci/run starts it")
        pytest.skip(f"Redis at 127.0.0.1:6379 is not running ({exc}); .ci/run starts it")


def require_rabbitmq() -> str:
    """AMQP_URL when RabbitMQ answers there (fails under OBSERVABILITY_TEST_REQUIRE_SYSTEM_TOOLS, skips elsewhere)."""
    from kombu import Connection

    try:
        with Connection(AMQP_URL, connect_timeout=3) as connection:
            connection.ensure_connection(max_retries=1, timeout=3)
    except Exception as exc:
        if os.environ.get("OBSERVABILITY_TEST_REQUIRE_SYSTEM_TOOLS"):
            pytest.fail(f"RabbitMQ at {AMQP_URL} is required ({exc}); .ci/run starts it")
        pytest.skip(f"RabbitMQ at {AMQP_URL} is not running ({exc}); .ci/run starts it")
    return AMQP_URL


class PrivateRedis:
    """A redis-server of the test's own on a free port (nothing kept on disk), to be stopped and started again."""

    def __init__(self) -> None:
        from tests.servers import require_tool

        self.binary = require_tool("redis-server")
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 20) -> PrivateRedis:
        command = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(64).startswith(b"+PONG"):
                    return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"redis-server on port {self.port} did not answer within {timeout} s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)

    def __enter__(self) -> PrivateRedis:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


@dataclass
class CeleryWorker(ChildProcess):
    STOP_GRACE = 30

    database_url: str
    directory: Path
    env: dict[str, str] = field(default_factory=dict)
    concurrency: int = 2
    queues: str = "scans,celery"
    flush: bool = True  # empty the tests' Redis DB first
    broker_url: str = BROKER_URL
    include: str = ""  # more task modules to load (-I), e.g. "tests.celery_tasks"
    port: int = 0
    process: subprocess.Popen | None = None

    @property
    def log(self) -> Path:
        return self.directory / "worker.log"

    @property
    def state_file(self) -> Path:
        return self.directory / "worker-state.json"

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def environment(self) -> dict[str, str]:
        return server_env(
            self.database_url,
            self.directory,
            CELERY_BROKER_URL=self.broker_url,
            PROMETHEUS_MULTIPROC_DIR=str(self.directory / "worker-multiproc"),
            OBSERVABILITY_WORKER_METRICS_PORT=str(self.port),
            OBSERVABILITY_WORKER_STATE_FILE=str(self.state_file),
            OBSERVABILITY_WORKER_HEARTBEAT_INTERVAL="0.5",
            **self.env,
        )

    def start(self, timeout: float = 60) -> CeleryWorker:
        if self.broker_url == BROKER_URL:
            require_redis()
        if self.flush:
            redis_command("FLUSHDB")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        command = [sys.executable, "-m", "celery", "-A", "example_project.celery", "-q", "worker"]
        command += ["--pool", "prefork", "-c", str(self.concurrency), "-Q", self.queues, "--without-mingle"]
        command += ["--without-gossip", "-n", f"test-{os.getpid()}-{self.port}@%h"]
        if self.include:
            command += ["-I", self.include]
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=self.environment(),
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the worker exited with {self.process.returncode}:\n{self.output()}")
            with contextlib.suppress(OSError):
                if http(self.url("/health/ready"), timeout=2).status == 200:
                    return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the worker was not ready within {timeout} s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def lines(self) -> list[dict[str, Any]]:
        """Every line the worker wrote, each parsed as JSON (a line that is not JSON fails the test here)."""
        found = []
        for line in self.output().splitlines():
            if line.strip():
                try:
                    found.append(json.loads(line))
                except ValueError:
                    pytest.fail(f"the worker wrote a line that is not JSON: {line[:300]!r}")
        return found

    def job_lines(self) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line["logger"] == "observability_app.jobs"]

    def wait_for(self, predicate, timeout: float = 60, what: Any = "the condition") -> Any:
        """``predicate()``'s first truthy result; fails after ``timeout`` naming ``what`` (or ``what()``, called
        then, to say what was last seen)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = predicate()
            if result:
                return result
            assert self.process is not None and self.process.poll() is None, self.output()[-3000:]
            time.sleep(0.2)
        what = what() if callable(what) else what
        pytest.fail(f"{what} did not happen within {timeout} s; worker output:\n{self.output()[-4000:]}")
