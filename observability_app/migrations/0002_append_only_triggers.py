"""Database triggers that refuse UPDATE and DELETE of audit events (the delete gate: observability_app.audit.db).

The SQL is frozen here, as it was when this migration was written; migration 0005 replaces the PostgreSQL
triggers. SQLite's delete trigger asks ``observability_purge_gate()``, a function the app registers on every
connection (a connection without it, such as the ``sqlite3`` shell, cannot delete at all).
"""

from django.db import migrations

POSTGRES_INSTALL = """
CREATE OR REPLACE FUNCTION observability_audit_refuse_update() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'observability_audit_event is append-only: UPDATE refused' USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION observability_audit_guard_delete() RETURNS trigger AS $$
BEGIN
    IF coalesce(current_setting('observability_app.purge_gate', true), '') = 'open' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'observability_audit_event is append-only: DELETE refused outside purge_expired_audit' USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS observability_audit_no_update ON observability_audit_event;
CREATE TRIGGER observability_audit_no_update BEFORE UPDATE ON observability_audit_event
    FOR EACH ROW EXECUTE FUNCTION observability_audit_refuse_update();
DROP TRIGGER IF EXISTS observability_audit_no_delete ON observability_audit_event;
CREATE TRIGGER observability_audit_no_delete BEFORE DELETE ON observability_audit_event
    FOR EACH STATEMENT EXECUTE FUNCTION observability_audit_guard_delete();
"""

POSTGRES_UNINSTALL = """
DROP TRIGGER IF EXISTS observability_audit_no_update ON observability_audit_event;
DROP TRIGGER IF EXISTS observability_audit_no_delete ON observability_audit_event;
DROP FUNCTION IF EXISTS observability_audit_refuse_update();
DROP FUNCTION IF EXISTS observability_audit_guard_delete();
"""

SQLITE_INSTALL = [
    "DROP TRIGGER IF EXISTS observability_audit_no_update",
    """CREATE TRIGGER observability_audit_no_update BEFORE UPDATE ON observability_audit_event
        BEGIN SELECT RAISE(ABORT, 'observability_audit_event is append-only: UPDATE refused'); END""",
    "DROP TRIGGER IF EXISTS observability_audit_no_delete",
    """CREATE TRIGGER observability_audit_no_delete BEFORE DELETE ON observability_audit_event
        WHEN observability_purge_gate() IS NOT 1
        BEGIN SELECT RAISE(ABORT, 'observability_audit_event is append-only: DELETE refused outside purge_expired_audit'); END""",
]

SQLITE_UNINSTALL = [
    "DROP TRIGGER IF EXISTS observability_audit_no_update",
    "DROP TRIGGER IF EXISTS observability_audit_no_delete",
]


def install(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_INSTALL)
    elif vendor == "sqlite":
        for statement in SQLITE_INSTALL:
            schema_editor.execute(statement)


def uninstall(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_UNINSTALL)
    elif vendor == "sqlite":
        for statement in SQLITE_UNINSTALL:
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("observability_app", "0001_initial")]

    operations = [migrations.RunPython(install, uninstall, elidable=False)]
