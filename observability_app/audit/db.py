"""Database triggers that make the events table append-only, and the one narrow opening in them.

PostgreSQL: a ``BEFORE UPDATE`` trigger always raises; a ``BEFORE DELETE`` trigger raises unless the transaction
has set ``observability_app.purge_gate = 'open'`` with ``SET LOCAL`` (it ends with the transaction). TRUNCATE is not
row-level and is left to database permissions: give the application role no TRUNCATE on the table.

SQLite has no session variables, so the delete trigger asks a SQL function, ``observability_purge_gate()``, that
:func:`install_sqlite_function` registers on every connection Django opens; it answers from a per-connection flag
that only :func:`purge_gate` sets. A connection without the function (the ``sqlite3`` shell) fails to delete
with "no such function", which is a refusal too.

Only the retention purge opens the gate. Anything that deletes behind it (a superuser disabling triggers) is what
``verify_audit`` exists to catch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from django.db import connections

TABLE = "observability_audit_event"
GATE_SETTING = "observability_app.purge_gate"
SQLITE_GATE_FUNCTION = "observability_purge_gate"
REFUSAL = "observability_audit_event is append-only"

POSTGRES_INSTALL = f"""
CREATE OR REPLACE FUNCTION observability_audit_refuse_update() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '{REFUSAL}: UPDATE refused' USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION observability_audit_guard_delete() RETURNS trigger AS $$
BEGIN
    IF coalesce(current_setting('{GATE_SETTING}', true), '') = 'open' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION '{REFUSAL}: DELETE refused outside purge_expired_audit' USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS observability_audit_no_update ON {TABLE};
CREATE TRIGGER observability_audit_no_update BEFORE UPDATE ON {TABLE}
    FOR EACH ROW EXECUTE FUNCTION observability_audit_refuse_update();
DROP TRIGGER IF EXISTS observability_audit_no_delete ON {TABLE};
CREATE TRIGGER observability_audit_no_delete BEFORE DELETE ON {TABLE}
    FOR EACH STATEMENT EXECUTE FUNCTION observability_audit_guard_delete();
"""

POSTGRES_UNINSTALL = f"""
DROP TRIGGER IF EXISTS observability_audit_no_update ON {TABLE};
DROP TRIGGER IF EXISTS observability_audit_no_delete ON {TABLE};
DROP FUNCTION IF EXISTS observability_audit_refuse_update();
DROP FUNCTION IF EXISTS observability_audit_guard_delete();
"""

SQLITE_INSTALL = [
    "DROP TRIGGER IF EXISTS observability_audit_no_update",
    f"""CREATE TRIGGER observability_audit_no_update BEFORE UPDATE ON {TABLE}
        BEGIN SELECT RAISE(ABORT, '{REFUSAL}: UPDATE refused'); END""",
    "DROP TRIGGER IF EXISTS observability_audit_no_delete",
    f"""CREATE TRIGGER observability_audit_no_delete BEFORE DELETE ON {TABLE}
        WHEN {SQLITE_GATE_FUNCTION}() IS NOT 1
        BEGIN SELECT RAISE(ABORT, '{REFUSAL}: DELETE refused outside purge_expired_audit'); END""",
]

SQLITE_UNINSTALL = [
    "DROP TRIGGER IF EXISTS observability_audit_no_update",
    "DROP TRIGGER IF EXISTS observability_audit_no_delete",
]


def install_triggers(schema_editor: Any) -> None:
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_INSTALL)
    elif vendor == "sqlite":
        install_sqlite_function(schema_editor.connection)
        for statement in SQLITE_INSTALL:
            schema_editor.execute(statement)


def uninstall_triggers(schema_editor: Any) -> None:
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_UNINSTALL)
    elif vendor == "sqlite":
        for statement in SQLITE_UNINSTALL:
            schema_editor.execute(statement)


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

    This is the retention purge's opening and nothing else's: do not call it from application code.
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
