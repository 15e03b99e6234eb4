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

from django.db import DEFAULT_DB_ALIAS, connections


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
    database = str(connection.settings_dict.get("NAME") or "")
    if not database or database == ":memory:" or "mode=memory" in database:
        lock = _memory_locks.setdefault(f"{database}|{name}", threading.Lock())
        if not lock.acquire(timeout=timeout if wait else 0):
            raise LockBusy(name)
        try:
            yield
        finally:
            lock.release()
        return
    path = os.path.join(
        tempfile.gettempdir(), f"observability-{hashlib.sha256((database + name).encode()).hexdigest()[:16]}.lock"
    )
    with open(path, "w") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not wait or time.monotonic() > deadline:
                    raise LockBusy(name) from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
