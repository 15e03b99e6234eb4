"""A database that hangs does not hang the service: bounded connect and statement time, failing fast meanwhile.

A PostgreSQL server that stops answering (a frozen host, a stalled storage volume, ``SIGSTOP``) is worse than one
that refuses: the kernel still completes TCP handshakes and acknowledges every byte, so neither a connect nor a
query ever fails, and the server cannot enforce its own ``statement_timeout``. Left alone, each request that
touches the database waits forever, the workers fill up, and probes and unrelated pages queue behind them. Three
things bound it (PostgreSQL through psycopg 3; other vendors are left as they are):

* **Connect**: ``DATABASE_CONNECT_TIMEOUT`` becomes libpq's ``connect_timeout`` for every PostgreSQL alias whose
  ``OPTIONS`` do not set one (whole seconds, at least 2: libpq's minimum).
* **Statements of a request**: ``DATABASE_STATEMENT_TIMEOUT``. A connection opened while serving a request gets it
  as the server's ``statement_timeout`` (a slow query on a live server is cancelled cleanly), and every wait of
  that connection on the server while a request is served is given up one second later on the client side (a hung
  server cancels nothing): the socket is shut down, the call raises :class:`DatabaseTimeout` (an
  ``OperationalError``), and the connection is closed. Commands, cron jobs and workers are not bound: they run
  long statements on purpose.
* **Failing fast**: a timeout, a failed connect or a failing ``DatabaseCheck`` opens this process's breaker for the
  alias. While the ``default`` alias's breaker is open, the middleware answers 503 (``Retry-After``) at once to
  every view not marked :func:`database_not_required`, instead of letting it queue behind the hung ones; a
  ``DatabaseError`` of that kind raised by a view is answered 503 as well. One probe at a time, at most every
  ``DATABASE_RETRY_SECONDS``, closes the breaker again when the database answers: recovery needs no restart.

So no request waits on a hung database longer than ``DATABASE_STATEMENT_TIMEOUT + 1`` seconds for a statement, or
``DATABASE_CONNECT_TIMEOUT`` for a connect (their sum when ``CONN_HEALTH_CHECKS`` reconnects after a failed
check); docs/deployment.md says which gunicorn settings keep probes answering meanwhile.

Why the client-side bound sits on psycopg's ``Connection.wait`` (an instance attribute set when Django creates the
connection): every network wait of psycopg 3 goes through it, queries, fetches of server-side cursors, ``COMMIT``
and Django's ``is_usable()`` ping alike; Django's ``execute_wrappers`` see only ``cursor.execute``. The watchdog
shuts the socket down from its own thread, which works on every psycopg 3 release; psycopg's own ``timeout``
argument exists only from 3.3 on. ``tests/test_database.py`` guards that a hung wait really is given up.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from . import context
from .conf import settings

logger = logging.getLogger("observability_app.database")

#: Seconds past the server's ``statement_timeout`` after which the client gives up on a wait: a live server always
#: cancels first (cleanly, the connection stays usable); only a server that cannot answer at all reaches it.
CLIENT_GRACE_SECONDS = 1.0

_local = threading.local()


# -- settings ------------------------------------------------------------------------------------------------------


def _seconds(key: str, minimum: float = 0.0) -> float | None:
    value = getattr(settings, key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > minimum or math.isinf(value):
        raise ImproperlyConfigured(
            f"OBSERVABILITY[{key!r}] = {value!r}: expected a number of seconds above {minimum:g}, or None for no bound"
        )
    return float(value)


class _Bounds:
    """The three settings, read and validated once (``install()``; again after a settings change)."""

    connect: float | None = 2.0
    statement: float | None = 5.0
    retry: float = 1.0

    @classmethod
    def load(cls) -> None:
        cls.connect = _seconds("DATABASE_CONNECT_TIMEOUT")
        cls.statement = _seconds("DATABASE_STATEMENT_TIMEOUT")
        cls.retry = _seconds("DATABASE_RETRY_SECONDS") or 1.0

    @classmethod
    def client(cls) -> float | None:
        return None if cls.statement is None else cls.statement + CLIENT_GRACE_SECONDS


def install() -> None:
    """Called by ``AppConfig.ready()``: validate the settings, set ``connect_timeout``, hook new connections."""
    from django.db.backends.signals import connection_created

    from .conf import on_reload

    _Bounds.load()
    _apply_connect_timeout()
    connection_created.connect(_on_connection_created, dispatch_uid="observability_app.database")
    on_reload(_on_settings_change)


def _on_settings_change() -> None:
    with contextlib.suppress(ImproperlyConfigured):  # the next install() or request reports it
        _Bounds.load()


def _is_postgresql(settings_dict: dict[str, Any]) -> bool:
    engine = str(settings_dict.get("ENGINE", "")).lower()
    return "postgres" in engine or "postgis" in engine


def _apply_connect_timeout() -> None:
    """``connect_timeout`` into the ``OPTIONS`` of every PostgreSQL alias that has none (Django passes ``OPTIONS``
    to psycopg's ``connect()`` as they are; it fills in defaults of these same dicts itself)."""
    from django.db import connections

    if _Bounds.connect is None:
        return
    seconds = max(2, math.ceil(_Bounds.connect))
    for alias in connections:
        settings_dict = connections.settings[alias]
        if _is_postgresql(settings_dict):
            settings_dict.setdefault("OPTIONS", {}).setdefault("connect_timeout", seconds)


# -- the client-side bound -------------------------------------------------------------------------------------------


try:  # the extra [postgres]; without it nothing here is ever raised
    from psycopg import OperationalError as _DriverOperationalError
except ImportError:  # pragma: no cover - psycopg is installed wherever PostgreSQL is used
    _DriverOperationalError = Exception  # type: ignore[assignment,misc]


class DatabaseTimeout(_DriverOperationalError):  # type: ignore[misc,valid-type]
    """The database did not answer within the bound; the connection was closed.

    A subclass of ``psycopg.OperationalError``, so Django raises it as ``django.db.OperationalError`` (this one as
    its ``__cause__``).
    """


def _current_bound() -> float | None:
    """The client-side bound for a wait now: while a request is served or in a :func:`bounded` block, else None."""
    bound = _Bounds.client()
    if bound is None:
        return None
    if getattr(_local, "bounded", 0):
        return bound
    ctx = context.current()
    return bound if ctx is not None and ctx.method else None


@contextlib.contextmanager
def bounded() -> Iterator[None]:
    """Bound database waits in this block as in a request (health checks, a project's own probe threads)."""
    _local.bounded = getattr(_local, "bounded", 0) + 1
    try:
        yield
    finally:
        _local.bounded -= 1


class _Wait:
    __slots__ = ("deadline", "fileno", "fired")

    def __init__(self, fileno: int, deadline: float) -> None:
        self.fileno = fileno
        self.deadline = deadline
        self.fired = False


class _Watchdog:
    """One thread per process that shuts down the socket of a wait past its deadline.

    The lock is held while a socket is shut down and while a wait is disarmed, so the file descriptor cannot be
    closed and reused by the connection's owner in between: only the connection's own socket is ever shut down.
    The thread sleeps until the earliest deadline, or until a wait is armed that is due before the thread would
    wake (none was armed, or only later ones: a bound lowered while the thread slept on a longer one).
    """

    def __init__(self) -> None:
        self._pid = 0
        self._condition = threading.Condition()
        self._waits: set[_Wait] = set()
        self._wakes_at = float("inf")  # inf: idle

    def _ensure_thread(self) -> None:
        if self._pid == os.getpid():
            return
        # First use, or a forked child (the thread does not survive fork, and the lock may have been held).
        self._condition = threading.Condition()
        self._waits = set()
        self._wakes_at = float("inf")
        self._pid = os.getpid()
        threading.Thread(target=self._run, name="observability-db-watchdog", daemon=True).start()

    def arm(self, fileno: int, seconds: float) -> _Wait:
        self._ensure_thread()
        wait = _Wait(fileno, time.monotonic() + seconds)
        with self._condition:
            self._waits.add(wait)
            if wait.deadline < self._wakes_at:
                self._condition.notify()
        return wait

    def disarm(self, wait: _Wait) -> None:
        with self._condition:
            self._waits.discard(wait)

    def _run(self) -> None:
        condition = self._condition
        with condition:
            while True:
                if not self._waits:
                    self._wakes_at = float("inf")
                    condition.wait()
                    continue
                now = time.monotonic()
                earliest = min(wait.deadline for wait in self._waits)
                if earliest > now:
                    self._wakes_at = earliest
                    condition.wait(earliest - now)
                    continue
                for wait in [wait for wait in self._waits if wait.deadline <= now]:
                    self._waits.discard(wait)
                    wait.fired = True
                    _shut_down(wait.fileno)


def _shut_down(fileno: int) -> None:
    """Shut the socket down (its owner's blocked wait returns at once with an error); the fd stays the owner's."""
    with contextlib.suppress(OSError):
        duplicate = socket.socket(fileno=os.dup(fileno))
        try:
            duplicate.shutdown(socket.SHUT_RDWR)
        finally:
            duplicate.close()


_watchdog = _Watchdog()


def _bounded_wait(raw: Any, alias: str, original: Callable[..., Any]) -> Callable[..., Any]:
    def wait(*args: Any, **kwargs: Any) -> Any:
        bound = _current_bound()
        if bound is None:
            return original(*args, **kwargs)
        try:
            fileno = raw.fileno()
        except Exception:  # closed: let psycopg raise its own error
            return original(*args, **kwargs)
        armed = _watchdog.arm(fileno, bound)
        try:
            return original(*args, **kwargs)
        except Exception as exc:
            if not armed.fired:
                raise
            _watchdog.disarm(armed)
            with contextlib.suppress(Exception):
                raw.close()
            trip(alias, "timeout")
            raise DatabaseTimeout(
                f"the database (alias {alias!r}) did not answer within {bound:g} s; the connection was closed"
            ) from exc
        finally:
            _watchdog.disarm(armed)

    return wait


def _on_connection_created(sender: Any, connection: Any, **kwargs: Any) -> None:
    if connection.vendor != "postgresql" or _Bounds.statement is None:
        return
    raw = connection.connection
    original = getattr(raw, "wait", None)
    if original is None or not callable(getattr(raw, "fileno", None)):
        return  # psycopg2, or a psycopg without the method: left unbounded (docs/deployment.md)
    if getattr(original, "observability_bounded", False):
        return  # a pooled connection handed out again (Django's OPTIONS["pool"]): hooked when it was made
    raw.wait = _bounded_wait(raw, connection.alias, original)
    raw.wait.observability_bounded = True
    if _current_bound() is not None and not getattr(_local, "bounded", 0):
        # Opened to serve a request: the server cancels a slow statement itself, cleanly, before the client bound.
        raw.execute(f"SET statement_timeout = {int(_Bounds.statement * 1000)}")


# -- the breaker -------------------------------------------------------------------------------------------------------


class Breaker:
    """This process's view of one alias: ``open`` while the database is known not to answer."""

    __slots__ = ("alias", "lock", "open", "opened_at", "probed_at", "probing", "reason")

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self.open = False
        self.reason = ""
        self.opened_at = 0.0
        self.probed_at = 0.0
        self.probing = False
        self.lock = threading.Lock()

    def trip(self, reason: str) -> None:
        with self.lock:
            self.reason = reason
            self.probed_at = time.monotonic()
            if self.open:
                return
            self.open = True
            self.opened_at = self.probed_at
        logger.warning(
            "database %r unavailable (%s): requests that need it are answered 503 until it answers again",
            self.alias,
            reason,
            extra={"database_alias": self.alias, "reason": reason},
        )

    def recover(self) -> None:
        with self.lock:
            if not self.open:
                return
            self.open = False
            outage = time.monotonic() - self.opened_at
        logger.info(
            "database %r answers again after %.1f s",
            self.alias,
            outage,
            extra={"database_alias": self.alias, "outage_seconds": round(outage, 3)},
        )

    def claim_probe(self) -> bool:
        """True for the one caller that may probe now (open, nobody probing, ``DATABASE_RETRY_SECONDS`` passed)."""
        with self.lock:
            if not self.open or self.probing or time.monotonic() - self.probed_at < _Bounds.retry:
                return False
            self.probing = True
            self.probed_at = time.monotonic()
            return True

    def release_probe(self) -> None:
        with self.lock:
            self.probing = False


_breakers: dict[str, Breaker] = {"default": Breaker("default")}
_breakers_lock = threading.Lock()
#: The breaker the middleware reads on every request (one attribute read while the database answers).
DEFAULT = _breakers["default"]


def breaker(alias: str) -> Breaker:
    found = _breakers.get(alias)
    if found is None:
        with _breakers_lock:
            found = _breakers.setdefault(alias, Breaker(alias))
    return found


def trip(alias: str, reason: str) -> None:
    breaker(alias).trip(reason)


def recover(alias: str) -> None:
    breaker(alias).recover()


def reason_for(exc: BaseException) -> str:
    """``timeout`` for a connect or statement timeout, else the exception's class name (never its message)."""
    with contextlib.suppress(ImportError):
        import psycopg

        for link in _chain(exc):
            if isinstance(link, (DatabaseTimeout, psycopg.errors.ConnectionTimeout)):
                return "timeout"
    return type(exc).__name__


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        link = link.__cause__ or link.__context__


def is_unavailable(exc: BaseException) -> bool:
    """The database did not answer: a timeout (ours, psycopg's connect or the server's ``statement_timeout``), or a
    connection-level failure (no SQLSTATE: refused, reset, closed). Errors the server reported are not."""
    try:
        import psycopg
    except ImportError:
        return False
    for link in _chain(exc):
        if isinstance(link, (DatabaseTimeout, psycopg.errors.ConnectionTimeout, psycopg.errors.QueryCanceled)):
            return True
        if isinstance(link, psycopg.OperationalError) and getattr(link, "sqlstate", None) is None:
            return True
    return False


def ping(alias: str = "default") -> None:
    """``SELECT 1`` on ``alias`` within the request bound; the outcome opens or closes its breaker.

    Raises what the database raised. The readiness check (``health.DatabaseCheck``) and the background probe both
    come through here, so that the breaker has one writer of its outcome.
    """
    from django.db import connections

    guard = breaker(alias)
    try:
        with bounded(), connections[alias].cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        if is_unavailable(exc):  # not answering; an error the server reported says it answers
            guard.trip(reason_for(exc))
        raise
    else:
        guard.recover()


def _probe(alias: str) -> None:
    """The background probe (one per ``DATABASE_RETRY_SECONDS`` while the breaker is open), on its own thread's
    connection, closed afterwards."""
    from django.db import connections

    try:
        ping(alias)
    except Exception:  # recorded on the breaker by ping()
        pass
    finally:
        breaker(alias).release_probe()
        with contextlib.suppress(Exception):
            connections[alias].close()


def probe_soon(alias: str = "default") -> None:
    """Start one probe in the background when it is due (no request ever waits on it)."""
    if breaker(alias).claim_probe():
        threading.Thread(target=_probe, args=(alias,), name=f"observability-db-probe-{alias}", daemon=True).start()


# -- answers -----------------------------------------------------------------------------------------------------------


def database_not_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a view that keeps answering while the database is down (probes, /metrics, static pages)."""
    view.database_not_required = True  # type: ignore[attr-defined]
    return view


def unavailable_response() -> Any:
    """503, JSON, ``Retry-After``: what a request gets instead of waiting on a database known not to answer."""
    from django.http import JsonResponse

    response = JsonResponse({"error": "database unavailable", "retry_after": math.ceil(_Bounds.retry)}, status=503)
    response["Retry-After"] = str(math.ceil(_Bounds.retry))
    response["Cache-Control"] = "no-store"
    response._has_been_logged = True  # the access line says it; django.request would log each one as an error
    return response


def shed(view: Callable[..., Any]) -> Any:
    """The middleware's ``process_view``: None to go on, or the 503 while the default database is down."""
    if getattr(view, "database_not_required", False):
        return None
    probe_soon("default")
    return unavailable_response()


def response_for_exception(exc: BaseException) -> Any:
    """The middleware's ``process_exception``: 503 for a database that did not answer, None for anything else."""
    if not is_unavailable(exc):
        return None
    from django.db import connections

    reason = reason_for(exc)
    for connection in connections.all(initialized_only=True):
        raw = connection.connection
        if connection.errors_occurred and (raw is None or getattr(raw, "closed", False)):
            trip(connection.alias, reason)  # its connect failed or its connection was lost
    return unavailable_response()
