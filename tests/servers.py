"""Real servers for end-to-end tests: the example project under gunicorn, on a free port, stopped by the test.

``server_database`` gives the subprocess a database the test can read too: on a PostgreSQL run the test database
itself (the fixture makes the test transactional so that both sides see committed rows), on SQLite a freshly migrated
file of its own (an in-memory test database cannot be shared with another process).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

import pytest

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def require_tool(path: str) -> str:
    """The tool's path; a missing tool fails under CI (OBSERVABILITY_TEST_REQUIRE_SYSTEM_TOOLS), skips elsewhere."""
    found = shutil.which(path) or (path if os.path.exists(path) else None)
    if found:
        return found
    if os.environ.get("OBSERVABILITY_TEST_REQUIRE_SYSTEM_TOOLS"):
        pytest.fail(f"{path} is required (scripts/install-system-deps.sh installs it)")
    pytest.skip(f"{path} is not installed (scripts/install-system-deps.sh installs it)")


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        import json

        return json.loads(self.body)


def http(url: str, method: str = "GET", data: bytes | None = None, headers: dict | None = None, timeout: float = 10):
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return Response(answer.status, dict(answer.headers), answer.read())
    except urllib.error.HTTPError as error:
        return Response(error.code, dict(error.headers), error.read())


@dataclass
class ServerDatabase:
    url: str
    vendor: str
    sqlite_path: str | None = None

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        """Rows from the database the server uses (``%s`` placeholders on both vendors)."""
        if self.sqlite_path:
            with contextlib.closing(sqlite3.connect(self.sqlite_path, timeout=20)) as connection:
                return connection.execute(sql.replace("%s", "?"), params).fetchall()
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()


@pytest.fixture(scope="session")
def _migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("server-db") / "template.sqlite3"
    env = server_env(database_url=f"sqlite:///{path}", var_dir=path.parent)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True, timeout=300
    )
    return path


def child_database_url() -> str:
    """The URL a child process (manage.py, gunicorn) uses to reach this test's own database."""
    from django.db import connection

    settings = connection.settings_dict
    if connection.vendor != "postgresql":
        return f"sqlite:///{settings['NAME']}"
    user = settings.get("USER") or "postgres"
    password = f":{settings['PASSWORD']}" if settings.get("PASSWORD") else ""
    host = settings.get("HOST") or "127.0.0.1"
    port = settings.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{settings['NAME']}"


@pytest.fixture
def server_database(request: pytest.FixtureRequest, tmp_path: Path, transactional_db: None) -> ServerDatabase:
    from django.db import connection

    if connection.vendor == "postgresql":
        return ServerDatabase(child_database_url(), "postgresql")
    template = request.getfixturevalue("_migrated_sqlite")
    path = tmp_path / "server.sqlite3"
    shutil.copyfile(template, path)
    return ServerDatabase(f"sqlite:///{path}", "sqlite", str(path))


def server_env(database_url: str, var_dir: Path, **extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("OBSERVABILITY_", "OTEL_", "PROMETHEUS_", "GUNICORN_", "PYTEST_"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="example_project.settings",
        DATABASE_URL=database_url,
        EXAMPLE_VAR_DIR=str(var_dir),
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


class ChildProcess:
    """A server the test started in a process group of its own (``start_new_session``): ``stop()`` sends SIGTERM
    and, after ``STOP_GRACE`` seconds, SIGKILL to the whole group; a ``with`` block starts and stops it."""

    STOP_GRACE: ClassVar[float] = 20
    process: subprocess.Popen | None

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=self.STOP_GRACE)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


@dataclass
class GunicornServer(ChildProcess):
    """``gunicorn -c example_project/gunicorn.conf.py`` on a free port."""

    database_url: str
    directory: Path
    workers: int = 3
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    process: subprocess.Popen | None = None

    @property
    def metrics_dir(self) -> Path:
        return self.directory / "prometheus-multiproc"

    @property
    def log(self) -> Path:
        return self.directory / "server.log"

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self, wait_path: str = "/health/live", timeout: float = 60) -> GunicornServer:
        self.port = free_port()
        self.directory.mkdir(parents=True, exist_ok=True)
        env = server_env(
            self.database_url,
            self.directory,
            GUNICORN_BIND=f"127.0.0.1:{self.port}",
            GUNICORN_WORKERS=str(self.workers),
            PROMETHEUS_MULTIPROC_DIR=str(self.metrics_dir),
            **self.env,
        )
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "example_project/gunicorn.conf.py"],
            cwd=ROOT,
            env=env,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}:\n{self.output()}")
            with contextlib.suppress(OSError):
                if http(self.url(wait_path), timeout=2).status == 200 and self.wait_booted(deadline):
                    return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"gunicorn did not answer {wait_path} within {timeout} s:\n{self.output()}")

    def _wait_forked(self, deadline: float) -> bool:
        while time.monotonic() < deadline:
            if len(self.worker_pids()) == self.workers:
                return True
            time.sleep(0.1)
        return False

    def booted_pids(self) -> list[int]:
        """Workers that have loaded the app: each writes its metric files as it does."""
        return [pid for pid in self.worker_pids() if (self.metrics_dir / f"counter_{pid}.db").exists()]

    def wait_booted(self, deadline: float) -> bool:
        """Wait until all workers have loaded the app: one answering worker does not mean the others are up.

        With ``GUNICORN_PRELOAD=1`` the master loaded the app before forking: a forked worker is ready at once (and
        writes its metric files only when it first counts something).
        """
        if self.env.get("GUNICORN_PRELOAD") == "1":
            return self._wait_forked(deadline)
        while time.monotonic() < deadline:
            pids = self.worker_pids()
            if len(pids) == self.workers and len(self.booted_pids()) == self.workers:
                return True
            time.sleep(0.1)
        return False

    def worker_pids(self) -> list[int]:
        """Pids of the master's children (the workers)."""
        assert self.process is not None
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in path.read_text().split()]

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def parse(text: str) -> dict[tuple[str, tuple], float]:
    """An exposition parsed: (sample name, sorted label items) -> value; a sample twice is an error."""
    from prometheus_client.parser import text_string_to_metric_families

    samples: dict[tuple[str, tuple], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            assert key not in samples, f"duplicate sample {key}"
            samples[key] = sample.value
    return samples


def scrape(url: str, headers: dict | None = None) -> dict[tuple[str, tuple], float]:
    """/metrics of a server, parsed."""
    answer = http(url, headers=headers)
    assert answer.status == 200, answer.body[:500]
    return parse(answer.body.decode())


def series(samples: dict[tuple[str, tuple], float], name: str) -> list[dict[str, str]]:
    """Label sets of every sample named ``name``."""
    return [dict(items) for (sample, items), _ in samples.items() if sample == name]


def total(samples: dict[tuple[str, tuple], float], name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(
        value
        for (sample, items), value in samples.items()
        if sample == name and all(dict(items).get(key) == wanted for key, wanted in labels.items())
    )


class OwnPostgres:
    """A PostgreSQL cluster of the test's own (initdb in a temp directory), for outages the shared one must not see.

    ``freeze()`` stops the postmaster and then every process it forked with SIGSTOP: the kernel still accepts
    connections on the listening socket and acknowledges every byte sent on the open ones, but nothing answers, a
    hung database rather than a refused one. Stopping only the backends would let the postmaster fork fresh ones
    for new connections; stopping only the postmaster would let the open connections go on working. The
    postmaster goes first so that it forks nothing between the listing of its children and their stop.
    ``thaw()`` resumes them all. Run as root, the cluster belongs to the ``postgres`` user.
    """

    def __init__(self, port: int) -> None:
        import glob
        import tempfile

        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        self.bin = Path(found[-1]).parent if found else Path(os.path.dirname(require_tool("initdb")))
        self.port = port
        self.directory = Path(tempfile.mkdtemp(prefix="obs_hang_"))  # under /tmp: the postgres user can reach it
        self.data = self.directory / "data"
        self.frozen: list[int] = []

    def _run(self, *args: str, timeout: float = 120) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=timeout)

    def start(self) -> OwnPostgres:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                raise RuntimeError(f"port {self.port} is taken: set OBSERVABILITY_TEST_OWN_PG_PORT to a free one")
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync")
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.directory / "log"), "-o", options,
                  "-w", "start")  # fmt: skip
        return self

    def url(self, name: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"

    def create_database(self, name: str) -> str:
        self._run(str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)
        return self.url(name)

    def postmaster_pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def freeze(self) -> list[int]:
        postmaster = self.postmaster_pid()
        os.kill(postmaster, signal.SIGSTOP)
        children = Path(f"/proc/{postmaster}/task/{postmaster}/children").read_text().split()
        self.frozen = [postmaster, *(int(pid) for pid in children)]
        for pid in self.frozen[1:]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        return self.frozen

    def thaw(self) -> None:
        for pid in reversed(self.frozen):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self.frozen = []

    def stop(self) -> None:
        self.thaw()
        with contextlib.suppress(Exception):
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop", timeout=60)
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> OwnPostgres:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def own_postgres_port() -> int:
    return int(os.environ.get("OBSERVABILITY_TEST_OWN_PG_PORT", "55433"))
