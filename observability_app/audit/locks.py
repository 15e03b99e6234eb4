"""Named locks across processes and hosts, for the jobs that must run one at a time (purge, seal).

PostgreSQL: session advisory locks (``pg_try_advisory_lock``), so cron on several hosts pointing at one database
agree on a single winner and a crashed holder's lock goes with its connection. SQLite (one file, one host): an
``flock`` on a file beside the database.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

from django.db import DEFAULT_DB_ALIAS, connections

__all__ = [
    "HOLDS_LOCK",
    "WRITERS_LOCK_KEY",
    "WRITERS_LOCK_SQL",
    "LockBusy",
    "database_now",
    "exclusive",
    "holds_serialized",
    "take_writers_lock",
    "writers_in_progress",
]


class LockBusy(Exception):
    """Another process holds the lock."""


def _key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


_memory_locks: dict[str, threading.Lock] = {}


@contextlib.contextmanager
def exclusive(name: str, *, using: str = DEFAULT_DB_ALIAS, wait: bool = False, timeout: float = 60) -> Iterator[None]:
    """Hold the lock ``name`` for the block; raise :class:`LockBusy` when it is taken (after ``timeout`` if waiting)."""
    connection = connections[using]
    if connection.vendor == "postgresql":
        key = _key(name)
        deadline = time.monotonic() + timeout
        with connection.cursor() as cursor:
            while True:
                cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
                if cursor.fetchone()[0]:
                    break
                if not wait or time.monotonic() > deadline:
                    raise LockBusy(name)
                time.sleep(0.05)
        try:
            yield
        finally:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [key])
        return
    with _file_lock(using, name, shared=False, timeout=timeout if wait else 0):
        yield


HOLDS_LOCK = "observability_app.holds"


@contextlib.contextmanager
def holds_serialized(*, using: str = DEFAULT_DB_ALIAS, shared: bool, timeout: float = 60) -> Iterator[None]:
    """A transaction serialized against the placing and lifting of legal holds.

    A purge batch runs in a shared one (batches never wait for each other); placing or lifting a hold runs in an
    exclusive one. So a hold that commits before a batch starts is seen by that batch, and a hold placed while a
    batch runs waits for it to commit: the batch removed those events before the hold existed. PostgreSQL:
    transaction-scoped advisory locks, released by the commit. SQLite: an ``flock`` held until after the commit.
    """
    connection = connections[using]
    if connection.vendor == "postgresql":
        from django.db import transaction

        with transaction.atomic(using=using):
            with connection.cursor() as cursor:
                function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
                cursor.execute(f"SELECT {function}(%s)", [_key(HOLDS_LOCK)])
            yield
        return
    from django.db import transaction

    with _file_lock(using, HOLDS_LOCK, shared=shared, timeout=timeout), transaction.atomic(using=using):
        yield


@contextlib.contextmanager
def _file_lock(using: str, name: str, *, shared: bool, timeout: float) -> Iterator[None]:
    database = str(connections[using].settings_dict.get("NAME") or "")
    if not database or database == ":memory:" or "mode=memory" in database:
        lock = _memory_locks.setdefault(f"{database}|{name}", threading.Lock())
        if not lock.acquire(timeout=timeout):
            raise LockBusy(name)
        try:
            yield
        finally:
            lock.release()
        return
    path = os.path.join(
        tempfile.gettempdir(), f"observability-{hashlib.sha256((database + name).encode()).hexdigest()[:16]}.lock"
    )
    with open(path, "a") as handle:
        deadline = time.monotonic() + timeout
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        while True:
            try:
                fcntl.flock(handle, mode | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockBusy(name) from None
                time.sleep(0.01)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def database_now(using: str = DEFAULT_DB_ALIAS) -> datetime:
    """The database server's clock (PostgreSQL), else this host's: one clock for holds and purge records, so that
    "was this hold in force when that batch ran?" does not depend on the skew between hosts."""
    connection = connections[using]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT clock_timestamp()")
            value = cursor.fetchone()[0]
        return value.astimezone(UTC)
    return datetime.now(UTC)


#: The writers' lock (PostgreSQL): every transaction that inserts audit events holds it shared, from before its
#: first event takes an id until it ends. Nobody ever takes it exclusively; sealing only *lists* its holders
#: (``pg_locks``, readable by every role) to learn which transactions could still commit an event below the ids
#: it sealed. A positive 63-bit key, so that ``pg_locks``' two 32-bit halves compare without sign games.
WRITERS_LOCK_KEY = _key("observability_app.writers") & 0x7FFF_FFFF_FFFF_FFFF
WRITERS_LOCK_SQL = f"pg_advisory_xact_lock_shared({WRITERS_LOCK_KEY})"


def take_writers_lock(using: str = DEFAULT_DB_ALIAS) -> None:
    """Hold the writers' lock for the rest of the current transaction (PostgreSQL; nothing to do on SQLite, whose
    single writer commits before anyone else can, so no event ever commits below a sealed id there)."""
    connection = connections[using]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {WRITERS_LOCK_SQL}")


def writers_in_progress(using: str = DEFAULT_DB_ALIAS) -> list[str]:
    """The virtual transaction ids of the other sessions holding the writers' lock right now (sorted)."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT virtualtransaction FROM pg_locks WHERE locktype = 'advisory' AND classid = %s AND objid = %s"
            " AND objsubid = 1 AND granted AND pid <> pg_backend_pid() ORDER BY 1",
            [WRITERS_LOCK_KEY >> 32, WRITERS_LOCK_KEY & 0xFFFF_FFFF],
        )
        return [row[0] for row in cursor.fetchall()]
