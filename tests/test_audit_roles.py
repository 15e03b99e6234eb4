"""``observability_app.audit.roles``, ``manage.py audit_db_roles`` and the W004 check, against real roles.

The PostgreSQL tests create login roles of their own (named after the test database, so parallel runs on one
cluster do not meet), apply the documented grants, connect as those roles and play the attacker.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, connections
from django.test import override_settings
from hypothesis import given
from hypothesis import strategies as st

from observability_app import audit
from observability_app.audit import integrity, roles
from observability_app.audit.models import AuditEvent
from observability_app.audit.retention import purge_expired
from observability_app.checks import check_audit_db_role
from tests.attacker import AUDIT_TABLES

ACCESS = {"artifact_id": "b/a@1", "version": "1", "reader": "r", "purpose": "p"}
postgres_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL roles")
sqlite_only = pytest.mark.skipif(connection.vendor != "sqlite", reason="what SQLite says instead")
PRODUCTION = override_settings(OBSERVABILITY={"ENVIRONMENT": "production", "AUDIT_SIGNING_KEY": "k" * 32})


@given(st.text(max_size=200).filter(lambda name: not roles._ROLE_NAME.fullmatch(name)))
def test_a_role_name_that_is_not_a_plain_identifier_never_reaches_the_sql(name):
    with pytest.raises(roles.InvalidRoleName):
        roles.plan(runtime_role=name)
    with pytest.raises(roles.InvalidRoleName):
        roles.plan(runtime_role="app", purge_login=name)


@pytest.mark.parametrize(
    "options", [{"runtime_role": "app", "purge_role": "app"}, {"runtime_role": "app", "owner": "app"}]
)
def test_the_runtime_role_cannot_be_given_the_purge_or_the_owner_role(options):
    with pytest.raises(roles.InvalidRoleName):
        roles.plan(**options)


@sqlite_only
@pytest.mark.django_db
def test_on_sqlite_the_command_says_there_are_no_roles_and_exits_2():
    with pytest.raises(CommandError, match="SQLite has no roles") as error:
        call_command("audit_db_roles", "--runtime-role", "app")
    assert error.value.returncode == 2
    with PRODUCTION:
        assert check_audit_db_role(databases=["default"]) == []  # nothing to inspect, nothing claimed


@postgres_only
@pytest.mark.django_db
def test_the_printed_plan_grants_the_runtime_role_select_and_insert_only():
    out = io.StringIO()
    call_command("audit_db_roles", "--runtime-role", "app_runtime", "--purge-login", "app_purger", stdout=out)
    text = out.getvalue()
    tables = ", ".join(roles.audit_tables())
    assert f'GRANT SELECT, INSERT ON TABLE {tables} TO "app_runtime";' in text
    assert f'REVOKE ALL ON TABLE {tables} FROM "app_runtime";' in text
    assert 'GRANT DELETE ON TABLE observability_audit_event TO "observability_audit_purge";' in text
    assert 'GRANT "observability_audit_purge" TO "app_purger";' in text
    assert "app_runtime" not in text.split("GRANT DELETE")[1].split(";")[0]


@postgres_only
@pytest.mark.django_db
@pytest.mark.parametrize(
    "argv", [[], ["--runtime-role", 'x"; DROP TABLE observability_audit_event; --'], ["--database", "nope"]]
)
def test_bad_options_exit_2_with_a_message(argv):
    with pytest.raises(CommandError) as error:
        call_command("audit_db_roles", *argv)
    assert error.value.returncode == 2
    assert str(error.value).strip()
    assert AuditEvent._meta.db_table in roles.audit_tables()
    assert connection.introspection.table_names().count("observability_audit_event") == 1


def _suffix() -> str:
    return connection.settings_dict["NAME"].replace("-", "_")[-30:]


@contextlib.contextmanager
def _as_role(role: str) -> Iterator[str]:
    """A Django database alias that connects to the test database as ``role`` (made on the fly, as Django allows)."""
    alias = f"as_{role}"
    default = connections["default"]
    wrapper = type(default)({**default.settings_dict, "USER": role, "PASSWORD": ""}, alias)
    connections[alias] = wrapper
    try:
        yield alias
    finally:
        wrapper.close()
        del connections[alias]


@pytest.fixture
def deployed_roles() -> Iterator[dict[str, str]]:
    """Runtime and purge login roles set up by ``audit_db_roles --apply``; the owner's purge role put back after."""
    names = {
        "runtime": f"obs_rt_{_suffix()}",
        "purger": f"obs_pl_{_suffix()}",
        "purge_role": f"obs_pr_{_suffix()}",
    }
    with connection.cursor() as cursor:
        for name in names.values():
            cursor.execute(f'DROP ROLE IF EXISTS "{name}"')
        cursor.execute(f'CREATE ROLE "{names["runtime"]}" LOGIN')
        cursor.execute(f'CREATE ROLE "{names["purger"]}" LOGIN')
        cursor.execute(f'GRANT USAGE ON SCHEMA public TO "{names["runtime"]}", "{names["purger"]}"')
        # The rest of the project's tables (sessions, artifacts...) are the project's business, not this command's.
        cursor.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> ALL(%s)",
            [list(AUDIT_TABLES)],
        )
        others = [row[0] for row in cursor.fetchall()]
        cursor.execute(f'GRANT ALL ON TABLE {", ".join(others)} TO "{names["runtime"]}", "{names["purger"]}"')
    out = io.StringIO()
    call_command(
        "audit_db_roles",
        "--runtime-role",
        names["runtime"],
        "--purge-role",
        names["purge_role"],
        "--purge-login",
        names["purger"],
        "--apply",
        stdout=out,
    )
    assert "applied" in out.getvalue()
    try:
        yield names
    finally:
        connections.close_all()
        with connection.cursor() as cursor:
            cursor.execute(
                "CREATE OR REPLACE FUNCTION observability_audit_purge_role() RETURNS oid LANGUAGE sql STABLE"
                " SET search_path = pg_catalog, public AS $$"
                " SELECT relowner FROM pg_class WHERE oid = 'public.observability_audit_event'::regclass $$"
            )
            for name in names.values():
                cursor.execute(f'DROP OWNED BY "{name}"')
                cursor.execute(f'DROP ROLE "{name}"')


def _connect(role: str) -> psycopg.Connection:
    settings = connection.settings_dict
    return psycopg.connect(
        host=settings["HOST"] or "127.0.0.1", port=settings["PORT"] or 5432, dbname=settings["NAME"], user=role
    )


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_the_runtime_role_cannot_update_delete_or_truncate_any_audit_table_whatever_it_sets(deployed_roles):
    audit.record("ARTIFACT_ACCESSED", ACCESS)
    integrity.seal()
    with _connect(deployed_roles["runtime"]) as attacker:
        for table in AUDIT_TABLES:
            for statement in (f"UPDATE {table} SET id = id", f"DELETE FROM {table}", f"TRUNCATE {table} CASCADE"):
                with attacker.transaction():
                    attacker.execute("SET LOCAL observability_app.purge_gate = 'open'")
                    with pytest.raises(psycopg.errors.InsufficientPrivilege), attacker.transaction():
                        attacker.execute(statement)
            with pytest.raises(psycopg.errors.InsufficientPrivilege), attacker.transaction():
                attacker.execute(f"ALTER TABLE {table} DISABLE TRIGGER ALL")
        with pytest.raises(psycopg.errors.InsufficientPrivilege), attacker.transaction():
            attacker.execute("SET session_replication_role = replica")  # needs superuser
    assert AuditEvent.objects.count() == 1
    assert integrity.verify().ok


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_the_runtime_role_records_and_seals_but_only_the_purge_login_purges(deployed_roles):
    old = datetime.now(UTC) - timedelta(days=3000)
    with _as_role(deployed_roles["runtime"]) as runtime:
        audit.record("ARTIFACT_ACCESSED", ACCESS, occurred_at=old, using=runtime)
        audit.record("ARTIFACT_ACCESSED", ACCESS, using=runtime)
        assert len(integrity.seal(using=runtime).seals) == 1
        err = io.StringIO()
        with pytest.raises(SystemExit) as exit_info:
            call_command("purge_expired_audit", "--database", runtime, stderr=err)
        assert exit_info.value.code == 4
        assert "may not delete audit events" in err.getvalue()
        assert AuditEvent.objects.count() == 2
    with _as_role(deployed_roles["purger"]) as purger:
        assert purge_expired(using=purger).total == 1
    assert AuditEvent.objects.count() == 2  # one left, and the purge's own AUDIT_PURGED
    assert integrity.verify().ok


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_w004_warns_for_the_owner_and_stays_quiet_for_the_runtime_role(deployed_roles):
    with PRODUCTION:
        (warning,) = check_audit_db_role(databases=["default"])  # the test connects as a superuser owner
        assert warning.id == "observability_app.W004"
        assert "superuser" in warning.msg and "owns" in warning.msg
        with _as_role(deployed_roles["runtime"]) as runtime:
            assert check_audit_db_role(databases=[runtime]) == []
            out = io.StringIO()
            call_command("audit_db_roles", "--check", "--database", runtime, stdout=out)
            assert "can only read and append" in out.getvalue()
        with _as_role(deployed_roles["purger"]) as purger:
            (warning,) = check_audit_db_role(databases=[purger])
            assert "DELETE on observability_audit_event" in warning.msg
    with override_settings(OBSERVABILITY={"ENVIRONMENT": "development"}):
        assert check_audit_db_role(databases=["default"]) == []
    out = io.StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command("audit_db_roles", "--check", stdout=out)
    assert exit_info.value.code == 1
    assert "is a superuser" in out.getvalue()
