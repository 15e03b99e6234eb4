"""The built-in checks: database (always), migrations, and cache and queue for deployments that require them.

Add ``"observability_app.health.CacheCheck"`` or ``"observability_app.health.QueueCheck"`` to
``OBSERVABILITY["HEALTH_CHECKS"]`` only when the service cannot serve without them: readiness that fails on an
optional dependency takes every replica out of the load balancer at once.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterable
from typing import Any, ClassVar
from urllib.parse import urlsplit

from .. import database
from ..conf import settings
from .base import HealthCheck, HealthCheckFailed


class DatabaseCheck(HealthCheck):
    """``SELECT 1`` on each database alias; one check per alias (``database``, ``database:<alias>``)."""

    name = "database"
    #: None: every alias in ``DATABASES``; or a tuple of aliases.
    aliases: ClassVar[tuple[str, ...] | None] = None

    def __init__(self, alias: str = "default") -> None:
        self.alias = alias
        self.name = "database" if alias == "default" else f"database:{alias}"  # type: ignore[misc]

    @classmethod
    def instances(cls) -> Iterable[HealthCheck]:
        from django.conf import settings as django_settings

        aliases = cls.aliases if cls.aliases is not None else tuple(django_settings.DATABASES)
        return [cls(alias) for alias in aliases]

    def check(self) -> None:
        """``SELECT 1`` (``database.ping``); the outcome opens or closes this process's breaker for the alias.

        While the breaker is open the check answers from it at once and leaves the probing to one background run
        per ``DATABASE_RETRY_SECONDS``, so that no probe or scrape waits on a database already known not to answer.
        """
        breaker = database.breaker(self.alias)
        if breaker.open:
            database.probe_soon(self.alias)
            raise HealthCheckFailed(breaker.reason or "unavailable")
        database.ping(self.alias)

    def cleanup(self) -> None:
        from django.db import connections

        # The check runs in its own thread: close that thread's connection so that nothing lingers (a test
        # database could not be dropped, a pooler would count an idle client).
        connections[self.alias].close()


class MigrationsCheck(HealthCheck):
    """Every migration on disk is applied to the default database.

    The migration graph is read from disk once per process; each run compares it with ``django_migrations`` (one
    query). Once everything is applied the answer is kept for ``recheck_seconds``: a deploy with new migrations
    starts new processes anyway.
    """

    name = "migrations"
    alias: ClassVar[str] = "default"
    recheck_seconds: ClassVar[float] = 60.0
    _applied_at: ClassVar[float] = 0.0
    _graph_nodes: ClassVar[frozenset[tuple[str, str]] | None] = None
    _replacements: ClassVar[dict[tuple[str, str], list[tuple[str, str]]] | None] = None

    def check(self) -> None:
        from django.db import connections
        from django.db.migrations.loader import MigrationLoader
        from django.db.migrations.recorder import MigrationRecorder

        from .. import database

        cls = type(self)
        if cls._applied_at and time.monotonic() - cls._applied_at < cls.recheck_seconds:
            return
        if cls._graph_nodes is None:
            loader = MigrationLoader(None, ignore_no_migrations=True)
            cls._graph_nodes = frozenset(loader.graph.leaf_nodes())
            cls._replacements = {key: list(migration.replaces) for key, migration in loader.replacements.items()}
        breaker = database.breaker(self.alias)
        if breaker.open:  # DatabaseCheck probes the database; this check would only wait on it as well
            raise HealthCheckFailed(breaker.reason or "unavailable")
        try:
            with database.bounded():
                missing = self._missing(MigrationRecorder(connections[self.alias]))
        except Exception as exc:
            if database.is_unavailable(exc):
                breaker.trip(database.reason_for(exc))
            raise
        if missing:
            raise HealthCheckFailed(f"{missing} app(s) with unapplied migrations")
        cls._applied_at = time.monotonic()

    @classmethod
    def _missing(cls, recorder: Any) -> int:
        """Migrations on disk that ``django_migrations`` does not list (a replaced set counts once applied)."""
        if not recorder.has_table():
            raise HealthCheckFailed("no migration has been applied")
        applied = set(recorder.applied_migrations())
        missing = 0
        for node in cls._graph_nodes:
            if node in applied:
                continue
            replaced = (cls._replacements or {}).get(node)
            if replaced and all(old in applied for old in replaced):
                continue
            missing += 1
        return missing

    def cleanup(self) -> None:
        from django.db import connections

        connections[self.alias].close()


class CacheCheck(HealthCheck):
    """Write, read and delete a short-lived key in the Django cache ``HEALTH_CACHE_ALIAS``."""

    name = "cache"

    def check(self) -> None:
        from django.core.cache import caches

        cache = caches[settings.HEALTH_CACHE_ALIAS]
        key = f"observability-health-{uuid.uuid4().hex}"
        cache.set(key, "1", timeout=10)
        value = cache.get(key)
        cache.delete(key)
        if value != "1":
            raise HealthCheckFailed("cache did not return the value just written")


class QueueCheck(HealthCheck):
    """The broker in ``HEALTH_QUEUE_URL`` answers: Redis ``PING`` for ``redis://``, a TCP connect otherwise."""

    name = "queue"
    DEFAULT_PORTS: ClassVar[dict[str, int]] = {"redis": 6379, "amqp": 5672, "tcp": 0}

    def check(self) -> None:
        url = settings.HEALTH_QUEUE_URL
        if not url:
            raise HealthCheckFailed("HEALTH_QUEUE_URL is not set")
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in self.DEFAULT_PORTS:
            raise HealthCheckFailed("unsupported queue URL scheme")
        port = parts.port or self.DEFAULT_PORTS[scheme]
        if not parts.hostname or not port:
            raise HealthCheckFailed("queue URL names no host or port")
        timeout = self.timeout or settings.HEALTH_CHECK_TIMEOUT
        with socket.create_connection((parts.hostname, port), timeout=timeout) as sock:
            if scheme == "redis":
                self._redis_ping(sock, parts.password)

    @staticmethod
    def _redis_ping(sock: socket.socket, password: str | None) -> None:
        if password:
            sock.sendall(_resp("AUTH", password))
            if not _read_line(sock).startswith(b"+OK"):
                raise HealthCheckFailed("queue refused the credentials")
        sock.sendall(_resp("PING"))
        if not _read_line(sock).startswith(b"+PONG"):
            raise HealthCheckFailed("queue did not answer PING")


def _resp(*parts: str) -> bytes:
    out = [f"*{len(parts)}\r\n".encode()]
    for part in parts:
        data = part.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _read_line(sock: socket.socket, limit: int = 512) -> bytes:
    data = b""
    while not data.endswith(b"\r\n") and len(data) < limit:
        chunk = sock.recv(limit)
        if not chunk:
            break
        data += chunk
    return data
