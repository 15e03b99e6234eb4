"""Every integrity table append-only, legal holds released by new rows, and a purge gate no session can forge.

- Seals, purge records, verification runs, legal holds and the new ``observability_legal_hold_release`` refuse
  ``UPDATE``, ``DELETE`` and (PostgreSQL) ``TRUNCATE`` through triggers; the events table refuses ``TRUNCATE`` too.
- A hold's release becomes a row of its own (copied from the old ``released_*`` columns, which go).
- PostgreSQL: the events table's delete gate opens only for a member of the *purge role*, not for any session that
  sets the gate setting. The purge role is ``observability_audit_purge_role()``: the table's owner until
  ``manage.py audit_db_roles --apply`` points it at a dedicated role (see docs/audit-integrity.md).
- Seals record the transactions in progress when they read (``watch``), purge records what kind of events they
  removed, verification runs how far they checked (all in the keyed digests, version 2).

The SQL is frozen here (not imported from the app), so that this migration means the same thing forever.
"""

from django.db import migrations, models
import django.db.models.deletion

EVENTS = "observability_audit_event"
EVIDENCE = (
    "observability_audit_seal",
    "observability_audit_purge_record",
    "observability_audit_verification",
    "observability_legal_hold",
    "observability_legal_hold_release",
)

POSTGRES_INSTALL = """
CREATE OR REPLACE FUNCTION observability_audit_refuse() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, {schema} AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP USING ERRCODE = 'insufficient_privilege';
END;
$$;

-- The role whose members may delete expired events (with the gate open): the table owner by default.
CREATE OR REPLACE FUNCTION observability_audit_purge_role() RETURNS oid
LANGUAGE sql STABLE SET search_path = pg_catalog, {schema} AS $$
    SELECT relowner FROM pg_class WHERE oid = '{schema}.observability_audit_event'::regclass
$$;

CREATE OR REPLACE FUNCTION observability_audit_guard_delete() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, {schema} AS $$
BEGIN
    IF coalesce(current_setting('observability_app.purge_gate', true), '') = 'open'
       AND pg_has_role(current_user, observability_audit_purge_role(), 'MEMBER') THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'observability_audit_event is append-only: DELETE refused outside purge_expired_audit run by the purge role'
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

DROP TRIGGER IF EXISTS observability_audit_no_update ON observability_audit_event;
DROP TRIGGER IF EXISTS observability_audit_no_delete ON observability_audit_event;
DROP FUNCTION IF EXISTS observability_audit_refuse_update();
CREATE TRIGGER observability_audit_append_only BEFORE UPDATE OR TRUNCATE ON observability_audit_event
    FOR EACH STATEMENT EXECUTE FUNCTION observability_audit_refuse();
CREATE TRIGGER observability_audit_no_delete BEFORE DELETE ON observability_audit_event
    FOR EACH STATEMENT EXECUTE FUNCTION observability_audit_guard_delete();
""" + "".join(
    f"""
CREATE TRIGGER observability_audit_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON {table}
    FOR EACH STATEMENT EXECUTE FUNCTION observability_audit_refuse();
"""
    for table in EVIDENCE
)

POSTGRES_UNINSTALL = "".join(
    f"DROP TRIGGER IF EXISTS observability_audit_append_only ON {table};\n" for table in (EVENTS, *EVIDENCE)
) + """
DROP TRIGGER IF EXISTS observability_audit_no_delete ON observability_audit_event;
DROP FUNCTION IF EXISTS observability_audit_guard_delete();
DROP FUNCTION IF EXISTS observability_audit_purge_role();
DROP FUNCTION IF EXISTS observability_audit_refuse();
"""

# Migration 0002's functions and triggers, restored on the way back: its POSTGRES_INSTALL byte for byte, so that a
# database taken back below this migration holds what one never taken past 0004 holds (tests/test_migrations.py).
POSTGRES_0002 = """
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

#: SQLite has no TRUNCATE; its delete gate for events stays migration 0002's (a per-connection SQL function).
SQLITE_INSTALL = [
    statement
    for table in EVIDENCE
    for statement in (
        f"DROP TRIGGER IF EXISTS {table}_no_update",
        f"CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table}"
        f" BEGIN SELECT RAISE(ABORT, '{table} is append-only: UPDATE refused'); END",
        f"DROP TRIGGER IF EXISTS {table}_no_delete",
        f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table}"
        f" BEGIN SELECT RAISE(ABORT, '{table} is append-only: DELETE refused'); END",
    )
]
SQLITE_UNINSTALL = [
    f"DROP TRIGGER IF EXISTS {table}_{kind}" for table in EVIDENCE for kind in ("no_update", "no_delete")
]


def install(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT quote_ident(current_schema())")
            schema = cursor.fetchone()[0]
        schema_editor.execute(POSTGRES_INSTALL.replace("{schema}", schema), params=None)
    elif connection.vendor == "sqlite":
        for statement in SQLITE_INSTALL:
            schema_editor.execute(statement)


def uninstall(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor == "postgresql":
        schema_editor.execute(POSTGRES_UNINSTALL)
        schema_editor.execute(POSTGRES_0002)
    elif connection.vendor == "sqlite":
        for statement in SQLITE_UNINSTALL:
            schema_editor.execute(statement)


def copy_releases(apps, schema_editor):
    """Each hold lifted under the old schema gets its release row (before the columns go)."""
    LegalHold = apps.get_model("observability_app", "LegalHold")
    LegalHoldRelease = apps.get_model("observability_app", "LegalHoldRelease")
    alias = schema_editor.connection.alias
    LegalHoldRelease.objects.using(alias).bulk_create(
        [
            LegalHoldRelease(
                hold_id=hold.pk,
                released_by=hold.released_by or "unknown",
                released_at=hold.released_at,
                reason=hold.release_reason or "",
            )
            for hold in LegalHold.objects.using(alias).filter(released_at__isnull=False)
        ]
    )


class Migration(migrations.Migration):
    dependencies = [("observability_app", "0004_retention_integrity")]

    operations = [
        migrations.AddField("auditseal", "watch", models.JSONField(blank=True, default=list)),
        migrations.AddField("auditseal", "version", models.PositiveSmallIntegerField(default=1)),
        migrations.AddField(
            "auditpurgerecord", "event_type", models.CharField(blank=True, default="", max_length=64)
        ),
        migrations.AddField("auditpurgerecord", "subjects", models.JSONField(blank=True, default=list)),
        migrations.AddField("auditpurgerecord", "version", models.PositiveSmallIntegerField(default=1)),
        migrations.AddField("auditverification", "full", models.BooleanField(default=True)),
        migrations.AddField("auditverification", "through_seal", models.BigIntegerField(blank=True, null=True)),
        migrations.AddField(
            "auditverification", "through_digest", models.CharField(blank=True, default="", max_length=64)
        ),
        migrations.AddField("auditverification", "digest", models.CharField(blank=True, default="", max_length=64)),
        migrations.CreateModel(
            name="LegalHoldRelease",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("released_by", models.CharField(max_length=255)),
                ("released_at", models.DateTimeField()),
                ("reason", models.TextField()),
                (
                    "hold",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="release",
                        to="observability_app.legalhold",
                    ),
                ),
            ],
            options={
                "db_table": "observability_legal_hold_release",
                "ordering": ("-id",),
                "default_permissions": ("view",),
            },
        ),
        migrations.RunPython(copy_releases, migrations.RunPython.noop, elidable=False),
        migrations.RemoveField("legalhold", "released_by"),
        migrations.RemoveField("legalhold", "released_at"),
        migrations.RemoveField("legalhold", "release_reason"),
        migrations.AlterModelOptions(
            name="legalhold", options={"default_permissions": ("add", "view"), "ordering": ("-id",)}
        ),
        migrations.RunPython(install, uninstall, elidable=False),
    ]
