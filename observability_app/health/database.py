"""A database that hangs does not hang the service: bounded connect and query time, and a breaker that sheds load.

A stopped or wedged PostgreSQL (SIGSTOP, a frozen VM, a blackholed host) does not refuse connections: the kernel
still accepts them and acknowledges every byte, so nothing ever fails on its own. Every request then waits on a
socket forever, the workers fill up and even the probes queue behind them. Three bounds fix that:

* **connect**: ``DATABASE_CONNECT_TIMEOUT`` becomes libpq's ``connect_timeout`` on every PostgreSQL alias whose
  ``OPTIONS`` has none (:func:`apply_connect_timeout`, at start-up). libpq's minimum is 2 s.
* **queries in a request**: :class:`QueryGuard`, an execute wrapper, gives each query run while a request is bound
  ``DATABASE_STATEMENT_TIMEOUT`` seconds. Past it one watchdog thread asks the server to cancel the query (a live but
  slow server stops it, the connection stays usable); one second later, if the query still has not returned, the
  server is not answering and the watchdog shuts the connection's socket down, which makes the blocked call fail at
  once. Management commands, jobs and health-check threads are not bounded here (a purge batch or a migration may
  legitimately run long; the checks have their own bound).
* **load shedding**: :data:`breaker` opens when a request fails on the database (or the readiness check finds it
  failing). While open, :class:`~observability_app.health.middleware.DatabaseUnavailableMiddleware` answers 503 with
  ``Retry-After`` at once instead of letting requests queue behind the hung ones; after
  ``DATABASE_RETRY_SECONDS`` one request at a time goes through to try, and the first that succeeds (or a passing
  readiness check) closes the breaker: recovery needs no restart.

So no request waits on a hung database longer than ``max(DATABASE_CONNECT_TIMEOUT, DATABASE_STATEMENT_TIMEOUT + 1)``
seconds plus the watchdog's tick (0.1 s); docs/deployment.md says which gunicorn settings keep probes answering
meanwhile.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import threading
import time
from typing import Any

from ..conf import on_reload, settings
from ..context import current

logger = logging.getLogger("observability_app.health")

#: Seconds between the cancel request and cutting the connection; and the watchdog's tick.
CUT_AFTER_CANCEL = 1.0
TICK = 0.1


def connect_timeout_option() -> int | None:
    """``DATABASE_CONNECT_TIMEOUT`` as libpq takes it (whole seconds, at least 2), or None when turned off."""
    value = settings.DATABASE_CONNECT_TIMEOUT
    if not value:
        return None
    return max(2, math.ceil(float(value)))


def apply_connect_timeout(databases: dict[str, dict[str, Any]] | None = None) -> list[str]:
    """Set ``OPTIONS["connect_timeout"]`` on PostgreSQL aliases that do not set it; returns the aliases changed.

    The project's own ``OPTIONS`` win: an explicit ``connect_timeout`` (or a ``service`` file) is left alone.
    """
    if databases is None:
        from django.conf import settings as django_settings

        databases = django_settings.DATABASES
    timeout = connect_timeout_option()
    changed: list[str] = []
    if timeout is None:
        return changed
    for alias, config in databases.items():
        if "postgresql" not in str(config.get("ENGINE", "")) and "postgis" not in str(config.get("ENGINE", "")):
            continue
        options = config.setdefault("OPTIONS", {})
        if "connect_timeout" not in options and "service" not in options:
            options["connect_timeout"] = timeout
            changed.append(alias)
    return changed


class Breaker:
    """Open after a database failure; half-open (one trial request at a time) after ``DATABASE_RETRY_SECONDS``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.opened_at: float | None = None
        self._trial = False

    @property
    def is_open(self) -> bool:
        return self.opened_at is not None

    def trip(self) -> None:
        with self._lock:
            if self.opened_at is None:
                logger.warning("database unavailable: answering 503 until it recovers")
            self.opened_at = time.monotonic()
            self._trial = False

    def reset(self) -> None:
        with self._lock:
            if self.opened_at is not None:
                logger.warning("database available again")
            self.opened_at = None
            self._trial = False

    def allow(self) -> bool:
        """True when a request may use the database: closed, or this request is the one trial of half-open."""
        opened_at = self.opened_at
        if opened_at is None:
            return True
        with self._lock:
            if self.opened_at is None:
                return True
            if self._trial or time.monotonic() - self.opened_at < float(settings.DATABASE_RETRY_SECONDS):
                return False
            self._trial = True
            return True

    def finished(self, ok: bool) -> None:
        """The end of a request that ``allow()`` let through while the breaker was open."""
        if ok:
            self.reset()
        else:
            self.trip()

    def retry_after(self) -> int:
        return max(1, math.ceil(float(settings.DATABASE_RETRY_SECONDS)))


breaker = Breaker()


class _Watchdog:
    """One thread per process that cancels, then cuts, queries past their deadline."""

    def __init__(self) -> None:
        self.inflight: dict[int, list[Any]] = {}  # id -> [deadline, django connection, stage]
        self._pid = 0
        self._lock = threading.Lock()
        self._counter = 0

    def watch(self, connection: Any, seconds: float) -> int:
        if self._pid != os.getpid():
            self._start()
        with self._lock:
            self._counter += 1
            key = self._counter
        self.inflight[key] = [time.monotonic() + seconds, connection, 0]
        return key

    def done(self, key: int) -> bool:
        """Forget ``key``; True when the watchdog had acted on it (cancelled or cut)."""
        entry = self.inflight.pop(key, None)
        return entry is not None and entry[2] > 0

    def _start(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                return
            self.inflight.clear()  # a forked child inherits the dict, not the parent's queries
            thread = threading.Thread(target=self._run, name="observability-db-watchdog", daemon=True)
            thread.start()
            self._pid = os.getpid()

    def _run(self) -> None:
        while True:
            time.sleep(TICK)
            now = time.monotonic()
            for key, entry in list(self.inflight.items()):
                if entry[0] > now:
                    continue
                if entry[2] == 0:
                    entry[2], entry[0] = 1, now + CUT_AFTER_CANCEL
                    threading.Thread(target=_cancel, args=(entry[1],), daemon=True).start()
                elif entry[2] == 1 and key in self.inflight:
                    entry[2] = 2
                    _cut(entry[1])


def _cancel(connection: Any) -> None:
    raw = getattr(connection, "connection", None)
    with contextlib.suppress(Exception):
        if connection.vendor == "postgresql":
            cancel_safe = getattr(raw, "cancel_safe", None)
            if cancel_safe is not None:
                cancel_safe(timeout=CUT_AFTER_CANCEL)
            else:
                raw.cancel()
        elif connection.vendor == "sqlite":
            raw.interrupt()


def _cut(connection: Any) -> None:
    """Shut the socket down under the blocked call: libpq sees the connection closed and raises at once."""
    raw = getattr(connection, "connection", None)
    try:
        fd = raw.fileno()
    except Exception:
        return
    with contextlib.suppress(OSError), socket.socket(fileno=os.dup(fd)) as sock:
        sock.shutdown(socket.SHUT_RDWR)
    logger.warning("database query on %r cut after %.1f s without an answer", connection.alias, _bound())
    breaker.trip()


_watchdog = _Watchdog()


def _bound() -> float:
    return float(settings.DATABASE_STATEMENT_TIMEOUT or 0)


class QueryGuard:
    """Execute wrapper: queries in a request get ``DATABASE_STATEMENT_TIMEOUT`` seconds (see the module docstring)."""

    __slots__ = ("connection",)

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    def __call__(self, execute: Any, sql: Any, params: Any, many: bool, context: Any) -> Any:
        seconds = _state["seconds"]
        if not seconds:
            return execute(sql, params, many, context)
        ctx = current()
        if ctx is None or not ctx.method:  # not a request: commands, jobs and check threads are not bounded here
            return execute(sql, params, many, context)
        key = _watchdog.watch(self.connection, seconds)
        try:
            return execute(sql, params, many, context)
        finally:
            if _watchdog.done(key):
                breaker.trip()


_state: dict[str, float] = {"seconds": 0.0}


def _on_connection_created(sender: Any, connection: Any, **kwargs: Any) -> None:
    attach(connection)


def attach(connection: Any) -> None:
    if not any(isinstance(wrapper, QueryGuard) for wrapper in connection.execute_wrappers):
        connection.execute_wrappers.insert(0, QueryGuard(connection))


def _reload() -> None:
    _state["seconds"] = _bound()


def setup() -> None:
    """At start-up: connect timeouts on PostgreSQL aliases, the query guard on every new connection."""
    from django.db import connections
    from django.db.backends.signals import connection_created

    apply_connect_timeout()
    _reload()
    connection_created.connect(_on_connection_created, dispatch_uid="observability_app.health.database")
    for connection in connections.all(initialized_only=True):
        attach(connection)


on_reload(_reload)
