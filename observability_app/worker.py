"""A background worker's own probes and metrics: its HTTP port, its Pushgateway pushes and its exec probe.

A worker serves no web requests, so the API's /metrics and /health/* cannot speak for it. Here, independent of the
queue library (the Celery integration feeds it):

* :class:`WorkerState`: what the worker's consumer loop reports on each heartbeat (queues it consumes, broker
  connection); written to ``WORKER_STATE_FILE`` too, so that ``manage.py worker_probe live|ready`` (a Kubernetes
  exec probe) can judge a worker that serves no port;
* :func:`evaluate`: liveness (heartbeat fresh: the consumer loop is turning) and readiness (live, broker
  connected, subscribed to at least one queue), the same answer on the port and in the command;
* :class:`WorkerServer`: ``GET /metrics`` (the app's registry, added up over the prefork children through
  ``PROMETHEUS_MULTIPROC_DIR`` exactly as under gunicorn, plus the worker's scrape-time collectors),
  ``/health/live`` and ``/health/ready`` on ``WORKER_METRICS_PORT``;
* :class:`Pusher`: the same exposition PUT to ``WORKER_PUSHGATEWAY_URL`` every ``WORKER_PUSH_INTERVAL`` seconds,
  for workers that Prometheus cannot reach.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .conf import settings

__all__ = [
    "FAIL",
    "MAX_STATE_BYTES",
    "PASS",
    "PUSH_SKIPPED_PREFIXES",
    "STATE_FILE_NAME",
    "ProbeResult",
    "Pusher",
    "WorkerServer",
    "WorkerState",
    "evaluate",
    "port_setting",
    "pushgateway_url",
    "read_state",
    "render",
    "seconds_setting",
    "state_file",
    "write_state",
]


logger = logging.getLogger("observability_app.worker")

PASS = "pass"
FAIL = "fail"
MAX_STATE_BYTES = 64 * 1024
STATE_FILE_NAME = "observability-worker.json"


@dataclass
class WorkerState:
    """The worker's last heartbeat, as its consumer loop saw it."""

    pid: int = field(default_factory=os.getpid)
    hostname: str = field(default_factory=socket.gethostname)
    started_at: float = field(default_factory=time.time)
    heartbeat: float = 0.0
    queues: list[str] = field(default_factory=list)
    broker_connected: bool = False
    ready: bool = False  # the worker said it is ready (Celery's worker_ready)
    #: When the consumer lost its broker and went to reconnect (0: it has not). Its loop beats no more until the
    #: broker is back, and that must not fail liveness: a restart does not bring a broker back.
    disconnected_at: float = 0.0

    def as_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> WorkerState:
        """A state read back from the file; anything malformed raises ValueError with what is wrong."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("the state file does not hold a JSON object")
        numbers = {"pid": int, "started_at": (int, float), "heartbeat": (int, float)}
        for key, kinds in numbers.items():
            value = data.get(key)
            if isinstance(value, bool) or not isinstance(value, kinds):
                raise ValueError(f"the state file's {key!r} is not a number")
        disconnected_at = data.get("disconnected_at", 0.0)  # absent from files of 0.2's first workers
        if isinstance(disconnected_at, bool) or not isinstance(disconnected_at, int | float):
            raise ValueError("the state file's 'disconnected_at' is not a number")
        queues = data.get("queues")
        if not isinstance(queues, list) or not all(isinstance(queue, str) for queue in queues):
            raise ValueError("the state file's 'queues' is not a list of names")
        return cls(
            pid=data["pid"],
            hostname=str(data.get("hostname", ""))[:255],
            started_at=float(data["started_at"]),
            heartbeat=float(data["heartbeat"]),
            queues=[queue[:255] for queue in queues[:1000]],
            broker_connected=data.get("broker_connected") is True,
            ready=data.get("ready") is True,
            disconnected_at=float(disconnected_at),
        )


@dataclass(frozen=True)
class ProbeResult:
    live: bool
    ready: bool
    checks: dict[str, dict[str, Any]]

    def report(self, kind: str) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON body) of the ``live`` or ``ready`` probe, shaped like the API's health answers."""
        ok = self.live if kind == "live" else self.ready
        checks = {"heartbeat": self.checks["heartbeat"]} if kind == "live" else self.checks
        body = {
            "status": PASS if ok else FAIL,
            "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "checks": checks,
        }
        return (200 if ok else 503), body


def evaluate(state: WorkerState | None, now: float | None = None, max_age: float | None = None) -> ProbeResult:
    """Liveness and readiness of a worker from its last heartbeat.

    Live: the heartbeat is fresh, or the consumer is waiting for its broker (it lost the connection while its loop
    was still beating, and reconnects): like the API's liveness, a dependency that is down never fails it, since a
    restart would not bring the broker back. Ready: live with a fresh heartbeat, connected, consuming a queue.
    """
    now = time.time() if now is None else now
    max_age = float(settings.WORKER_HEARTBEAT_MAX_AGE) if max_age is None else max_age
    if state is None or state.heartbeat <= 0:
        missing = {"status": FAIL, "reason": "no heartbeat yet"}
        return ProbeResult(False, False, {"heartbeat": missing, "broker": missing, "queues": missing})
    age = now - state.heartbeat
    fresh = -5.0 <= age <= max_age  # a heartbeat from the future beyond clock jitter is not trusted
    waiting = (
        not state.broker_connected
        and state.disconnected_at > 0
        and now - state.disconnected_at >= -5.0  # not from the future
        and state.disconnected_at - state.heartbeat <= max_age  # the loop was turning when the broker went
    )
    live = fresh or waiting
    heartbeat: dict[str, Any] = {
        "status": PASS if live else FAIL,
        "age_seconds": round(age, 3),
        "max_age_seconds": max_age,
    }
    broker: dict[str, Any] = {"status": PASS if state.broker_connected else FAIL}
    if waiting:
        heartbeat["reason"] = broker["reason"] = "reconnecting to the broker"
        broker["disconnected_seconds"] = round(now - state.disconnected_at, 3)
    queues = {"status": PASS if state.queues and state.ready else FAIL, "queues": sorted(state.queues)[:50]}
    ready = fresh and state.broker_connected and bool(state.queues) and state.ready
    return ProbeResult(live, ready, {"heartbeat": heartbeat, "broker": broker, "queues": queues})


def state_file() -> str:
    """``WORKER_STATE_FILE``, else ``observability-worker.json`` in the temporary directory."""
    return str(settings.WORKER_STATE_FILE or os.path.join(tempfile.gettempdir(), STATE_FILE_NAME))


def write_state(state: WorkerState, path: str | None = None) -> None:
    """Replace the state file atomically (a probe never reads half a file)."""
    path = path or state_file()
    directory = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(prefix=".worker-state-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(state.as_json())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise


def read_state(path: str | None = None) -> WorkerState:
    """The state file's content; OSError when it cannot be read, ValueError when it is not a worker state."""
    path = path or state_file()
    with open(path, "rb") as handle:
        data = handle.read(MAX_STATE_BYTES + 1)
    if len(data) > MAX_STATE_BYTES:
        raise ValueError(f"the state file is over {MAX_STATE_BYTES} bytes: not written by a worker")
    try:
        return WorkerState.from_json(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError("the state file is not UTF-8 text") from None


# -- exposition -----------------------------------------------------------------------------------------------------


#: Families a push leaves out: the Pushgateway serves its own ``process_*`` beside the groups pushed to it, and a
#: worker's would be merged into those families (it logs "inconsistent help strings" on every push). The worker's
#: port serves them.
PUSH_SKIPPED_PREFIXES = ("process_",)


def render(extra_collectors: Iterable[Any] = (), skip_prefixes: tuple[str, ...] = ()) -> bytes:
    """The worker's exposition: what /metrics serves on the web side (multi-process aware), plus ``extra``."""
    from .metrics import exposition, multiprocess
    from .metrics.render import TextWriter

    writer = TextWriter(skip_prefixes)
    exposition.write(writer, multiprocess.directory())
    for collector in extra_collectors:
        writer.collector(collector)
    return writer.encode()


def _close_connections() -> None:
    with contextlib.suppress(Exception):
        from django.db import connections

        connections.close_all()


class _Handler(BaseHTTPRequestHandler):
    server: WorkerServer.HTTPServer
    server_version = "observability-worker"
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:
        try:
            self._answer()
        finally:
            _close_connections()

    def _answer(self) -> None:
        owner = self.server.owner
        path = urllib.parse.urlsplit(self.path).path
        if path == "/metrics":
            from .metrics import access

            decision = access.decide(self.client_address[0], self.headers.get("Authorization", ""))
            if decision != access.ALLOWED:
                status = 403 if decision == access.FORBIDDEN else 401
                return self._send(status, b"forbidden\n" if status == 403 else b"bearer token required\n")
            from .metrics.render import CONTENT_TYPE

            try:
                body = render(owner.collectors)
            except Exception as exc:  # the port must keep answering whatever a collector does
                logger.exception("worker metrics: exposition failed (%s)", type(exc).__name__)
                return self._send(500, b"exposition failed\n")
            return self._send(200, body, CONTENT_TYPE)
        if path in ("/health/live", "/health/ready"):
            status, body = evaluate(owner.state()).report("live" if path.endswith("live") else "ready")
            return self._send(status, json.dumps(body).encode(), "application/json")
        return self._send(404, b"not found\n")

    def _send(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        return None  # scrapes and probes every few seconds would drown the worker's own lines


class WorkerServer:
    """The worker's HTTP port, served from a daemon thread of the worker's main process."""

    class HTTPServer(ThreadingHTTPServer):
        daemon_threads = True
        allow_reuse_address = True
        owner: WorkerServer

    def __init__(self, state: Any, collectors: Iterable[Any] = (), address: str = "0.0.0.0", port: int = 0) -> None:
        self.state = state  # a callable returning the current WorkerState
        self.collectors = list(collectors)
        self._server = self.HTTPServer((address, port), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="observability-worker-http", daemon=True
        )

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> WorkerServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def pushgateway_url(base: str, job: str, instance: str) -> str:
    """``<base>/metrics/job/<job>/instance/<instance>``, each grouping value escaped for a path segment."""
    quote = urllib.parse.quote
    return f"{base.rstrip('/')}/metrics/job/{quote(job, safe='')}/instance/{quote(instance, safe='')}"


class Pusher:
    """PUT the worker's exposition to a Pushgateway every ``interval`` seconds, and once more when stopped."""

    def __init__(self, url: str, job: str, instance: str, interval: float, collectors: Iterable[Any] = ()) -> None:
        self.url = pushgateway_url(url, job, instance)
        self.interval = interval
        self.collectors = list(collectors)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="observability-worker-push", daemon=True)

    def push(self) -> bool:
        from opentelemetry.instrumentation.utils import suppress_instrumentation

        from .metrics.render import CONTENT_TYPE

        try:
            # no spans (like a scrape of /metrics): neither the push nor the collectors' broker reads
            with suppress_instrumentation():
                body = render(self.collectors, PUSH_SKIPPED_PREFIXES)
                request = urllib.request.Request(
                    self.url, data=body, method="PUT", headers={"Content-Type": CONTENT_TYPE}
                )
                with urllib.request.urlopen(request, timeout=min(self.interval, 10.0)) as answer:
                    return 200 <= answer.status < 300
        except Exception as exc:  # a Pushgateway outage must not stop the worker
            logger.warning("worker metrics: push to %s failed (%s: %s)", self.url, type(exc).__name__, exc)
            return False
        finally:
            _close_connections()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.push()

    def start(self) -> Pusher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.push()


def port_setting(value: Any) -> int | None:
    """``WORKER_METRICS_PORT`` as an int (environment variables give strings); None when unset; ValueError else."""
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise ValueError(f"WORKER_METRICS_PORT must be a port number from 0 to 65535, got {value!r}")
    return value


def seconds_setting(name: str) -> float:
    """A positive number of seconds from the settings (strings from the environment are parsed)."""
    value = settings.values[name]
    try:
        number = float(value) if not isinstance(value, bool) else float("nan")
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number of seconds, got {value!r}") from None
    if not number > 0 or number == float("inf"):
        raise ValueError(f"{name} must be a number of seconds above 0, got {value!r}")
    return number
