"""What an attacker with the database's credentials can do, for the red-team tests.

``triggers_off()`` is a database superuser (PostgreSQL: ``session_replication_role = replica``, which turns every
ordinary trigger off for the session) or, on SQLite, anyone who can write the file (drops the triggers, and puts
them back afterwards from the migrations' own SQL).
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from typing import Any

from django.db import connection as default_connection

_0002 = importlib.import_module("observability_app.migrations.0002_append_only_triggers")
_0005 = importlib.import_module("observability_app.migrations.0005_append_only_integrity")

AUDIT_TABLES = (_0005.EVENTS, *_0005.EVIDENCE)


def sqlite_trigger_sql() -> tuple[list[str], list[str]]:
    """(install, uninstall) statements of every append-only trigger on SQLite."""
    return [*_0002.SQLITE_INSTALL, *_0005.SQLITE_INSTALL], [*_0002.SQLITE_UNINSTALL, *_0005.SQLITE_UNINSTALL]


def drop_sqlite_triggers(connection: Any) -> None:
    with connection.cursor() as cursor:
        for statement in sqlite_trigger_sql()[1]:
            cursor.execute(statement)


def install_sqlite_triggers(connection: Any) -> None:
    with connection.cursor() as cursor:
        for statement in sqlite_trigger_sql()[0]:
            cursor.execute(statement)


@contextlib.contextmanager
def triggers_off(connection: Any = default_connection) -> Iterator[Any]:
    """A cursor with every append-only trigger switched off, as a database superuser can."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET session_replication_role = replica")
        try:
            with connection.cursor() as cursor:
                yield cursor
        finally:
            with connection.cursor() as cursor:
                cursor.execute("SET session_replication_role = origin")
    else:
        drop_sqlite_triggers(connection)
        try:
            with connection.cursor() as cursor:
                yield cursor
        finally:
            install_sqlite_triggers(connection)
