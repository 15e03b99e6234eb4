"""The one opening in the append-only triggers: the retention purge's delete of expired events.

The triggers themselves are SQL frozen in migrations 0002 and 0005. What is left for the app to do at run time:

PostgreSQL: the events table's delete trigger lets a ``DELETE`` through only when the transaction has set
``observability_app.purge_gate = 'open'`` **and** the current role is a member of the purge role
(``observability_audit_purge_role()``: the table owner, or the role ``manage.py audit_db_roles --apply`` names).
Any session may set the setting; only the purge role's sessions get through with it. The app's runtime role, set
up by ``audit_db_roles``, has no DELETE, UPDATE or TRUNCATE privilege on the audit tables at all.

SQLite has no roles and no session variables: the delete trigger asks a SQL function,
``observability_purge_gate()``, that :func:`install_sqlite_function` registers on every connection Django opens;
it answers from a per-connection flag that only :func:`purge_gate` sets. A connection without the function (the
``sqlite3`` shell) fails to delete with "no such function". Anyone who can write the database file can of course
drop the triggers: on SQLite the guarantee against such a person is the checkpoint file (docs/audit-integrity.md).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from django.db import connections, transaction

TABLE = "observability_audit_event"
GATE_SETTING = "observability_app.purge_gate"
SQLITE_GATE_FUNCTION = "observability_purge_gate"

__all__ = ["GATE_SETTING", "install_sqlite_function", "purge_gate", "snapshot"]


def install_sqlite_function(connection: Any, **kwargs: Any) -> None:
    """``connection_created`` receiver: give a SQLite connection the gate function (closed by default)."""
    if connection.vendor != "sqlite" or connection.connection is None:
        return
    wrapper = connection

    def gate() -> int:
        return 1 if getattr(wrapper, "_observability_purge_gate", False) else 0

    connection.connection.create_function(SQLITE_GATE_FUNCTION, 0, gate, deterministic=False)


@contextlib.contextmanager
def purge_gate(using: str = "default") -> Iterator[None]:
    """Open the delete gate for the current transaction only. Must be used inside ``transaction.atomic``.

    This is the retention purge's opening and nothing else's: do not call it from application code. On PostgreSQL
    it opens only for the purge role (see the module docstring).
    """
    connection = connections[using]
    if not connection.in_atomic_block:
        raise RuntimeError("purge_gate() must run inside transaction.atomic()")
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config(%s, 'open', true)", [GATE_SETTING])
        yield
        # Closed again at once on success; on an error the rollback (to the savepoint) undoes set_config itself.
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config(%s, '', true)", [GATE_SETTING])
    else:
        connection.ensure_connection()
        connection._observability_purge_gate = True
        try:
            yield
        finally:
            connection._observability_purge_gate = False


@contextlib.contextmanager
def snapshot(using: str, *, read_only: bool = True) -> Iterator[None]:
    """One transaction that sees one snapshot: REPEATABLE READ on PostgreSQL, a single transaction on SQLite.

    Inside a caller's transaction the caller's isolation stands (PostgreSQL cannot change it after a query).
    """
    connection = connections[using]
    outermost = not connection.in_atomic_block
    with transaction.atomic(using=using):
        if connection.vendor == "postgresql" and outermost:
            with connection.cursor() as cursor:
                mode = " READ ONLY" if read_only else ""
                cursor.execute(f"SET TRANSACTION ISOLATION LEVEL REPEATABLE READ{mode}")
        yield
