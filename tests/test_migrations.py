"""Migrations mean the same thing forever: their SQL is frozen in them, and a database built today holds exactly
what one migrated when each migration was written holds.

- No migration imports the live app (an edit of ``observability_app.audit.db`` would otherwise change what an old
  migration does on a new database, while the databases already migrated keep the old triggers).
- A fresh ``manage.py migrate``, in a child process on a database of its own, creates trigger and function
  definitions byte for byte equal to the expected ones written below. Those are the text of the SQL as applied:
  migration 0002's as ``observability_app.audit.db`` generated it in 9ef2d1f (before the SQL was frozen), 0005's as
  it was first written. PostgreSQL keeps a function's body verbatim (``pg_proc.prosrc``) and SQLite a trigger's
  statement verbatim (``sqlite_master.sql``), so any byte changed in a migration shows here.
- Going back is exact too: taken back below 0005, a database holds 0002's functions again, byte for byte.
"""

from __future__ import annotations

import ast
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from tests.servers import ROOT, child_database_url, server_env

MIGRATIONS = ROOT / "observability_app" / "migrations"

postgres_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's catalog")
sqlite_only = pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's catalog")

# --- What each migration created, as applied ---------------------------------------------------------------------

#: Migration 0002 on PostgreSQL: name -> (body, search_path setting, volatility, language).
PG_FUNCTIONS_0002 = {
    "observability_audit_refuse_update": (
        "\nBEGIN\n"
        "    RAISE EXCEPTION 'observability_audit_event is append-only: UPDATE refused'"
        " USING ERRCODE = 'insufficient_privilege';\n"
        "END;\n",
        None,
        "v",
        "plpgsql",
    ),
    "observability_audit_guard_delete": (
        "\nBEGIN\n"
        "    IF coalesce(current_setting('observability_app.purge_gate', true), '') = 'open' THEN\n"
        "        RETURN OLD;\n"
        "    END IF;\n"
        "    RAISE EXCEPTION 'observability_audit_event is append-only: DELETE refused outside purge_expired_audit'"
        " USING ERRCODE = 'insufficient_privilege';\n"
        "END;\n",
        None,
        "v",
        "plpgsql",
    ),
}
PG_TRIGGERS_0002 = {
    ("observability_audit_no_update", "observability_audit_event"): (
        "CREATE TRIGGER observability_audit_no_update BEFORE UPDATE ON public.observability_audit_event"
        " FOR EACH ROW EXECUTE FUNCTION observability_audit_refuse_update()"
    ),
    ("observability_audit_no_delete", "observability_audit_event"): (
        "CREATE TRIGGER observability_audit_no_delete BEFORE DELETE ON public.observability_audit_event"
        " FOR EACH STATEMENT EXECUTE FUNCTION observability_audit_guard_delete()"
    ),
}

#: After migration 0005 (the last one that touches triggers) on PostgreSQL.
PG_FUNCTIONS_LATEST = {
    "observability_audit_refuse": (
        "\nBEGIN\n"
        "    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP"
        " USING ERRCODE = 'insufficient_privilege';\n"
        "END;\n",
        ["search_path=pg_catalog, public"],
        "v",
        "plpgsql",
    ),
    "observability_audit_purge_role": (
        "\n    SELECT relowner FROM pg_class WHERE oid = 'public.observability_audit_event'::regclass\n",
        ["search_path=pg_catalog, public"],
        "s",
        "sql",
    ),
    "observability_audit_guard_delete": (
        "\nBEGIN\n"
        "    IF coalesce(current_setting('observability_app.purge_gate', true), '') = 'open'\n"
        "       AND pg_has_role(current_user, observability_audit_purge_role(), 'MEMBER') THEN\n"
        "        RETURN NULL;\n"
        "    END IF;\n"
        "    RAISE EXCEPTION 'observability_audit_event is append-only: DELETE refused outside purge_expired_audit"
        " run by the purge role'\n"
        "        USING ERRCODE = 'insufficient_privilege';\n"
        "END;\n",
        ["search_path=pg_catalog, public"],
        "v",
        "plpgsql",
    ),
}
EVIDENCE = (
    "observability_audit_seal",
    "observability_audit_purge_record",
    "observability_audit_verification",
    "observability_legal_hold",
    "observability_legal_hold_release",
)
PG_TRIGGERS_LATEST = {
    ("observability_audit_append_only", "observability_audit_event"): (
        "CREATE TRIGGER observability_audit_append_only BEFORE UPDATE OR TRUNCATE ON public.observability_audit_event"
        " FOR EACH STATEMENT EXECUTE FUNCTION observability_audit_refuse()"
    ),
    ("observability_audit_no_delete", "observability_audit_event"): (
        "CREATE TRIGGER observability_audit_no_delete BEFORE DELETE ON public.observability_audit_event"
        " FOR EACH STATEMENT EXECUTE FUNCTION observability_audit_guard_delete()"
    ),
    **{
        ("observability_audit_append_only", table): (
            f"CREATE TRIGGER observability_audit_append_only BEFORE DELETE OR UPDATE OR TRUNCATE ON public.{table}"
            " FOR EACH STATEMENT EXECUTE FUNCTION observability_audit_refuse()"
        )
        for table in EVIDENCE
    },
}

#: SQLite: trigger name -> statement, as ``sqlite_master`` keeps it (0002's two keep their line breaks).
SQLITE_TRIGGERS_0002 = {
    "observability_audit_no_update": (
        "CREATE TRIGGER observability_audit_no_update BEFORE UPDATE ON observability_audit_event\n"
        "        BEGIN SELECT RAISE(ABORT, 'observability_audit_event is append-only: UPDATE refused'); END"
    ),
    "observability_audit_no_delete": (
        "CREATE TRIGGER observability_audit_no_delete BEFORE DELETE ON observability_audit_event\n"
        "        WHEN observability_purge_gate() IS NOT 1\n"
        "        BEGIN SELECT RAISE(ABORT, 'observability_audit_event is append-only: DELETE refused outside"
        " purge_expired_audit'); END"
    ),
}
SQLITE_TRIGGERS_LATEST = {
    **SQLITE_TRIGGERS_0002,
    **{
        f"{table}_no_{verb.lower()}": (
            f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table}"
            f" BEGIN SELECT RAISE(ABORT, '{table} is append-only: {verb} refused'); END"
        )
        for table in EVIDENCE
        for verb in ("UPDATE", "DELETE")
    },
}

# --- No migration imports the live app ---------------------------------------------------------------------------


def live_imports(source: str) -> list[str]:
    """Modules of ``observability_app`` outside ``observability_app.migrations`` that ``source`` imports.

    ``import``, ``from ... import`` (relative ones resolve inside ``migrations``, which is allowed) and the string
    given to ``import_module`` / ``__import__`` all count, at module level or inside a function.
    """
    found = []
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names = [node.module or ""]
        elif (
            isinstance(node, ast.Call)
            and (getattr(node.func, "attr", None) or getattr(node.func, "id", None)) in ("import_module", "__import__")
            and node.args
        ):
            first = node.args[0]
            names = [first.value] if isinstance(first, ast.Constant) and isinstance(first.value, str) else ["<dynamic>"]
        found += [
            name
            for name in names
            if name == "<dynamic>"
            or (name.split(".")[0] == "observability_app" and not name.startswith("observability_app.migrations"))
        ]
    return found


def test_no_migration_imports_the_live_app():
    files = sorted(MIGRATIONS.glob("0*.py"))
    assert len(files) >= 6  # every migration was read
    offenders = {path.name: live_imports(path.read_text()) for path in files}
    assert {name: found for name, found in offenders.items() if found} == {}


@pytest.mark.parametrize(
    "source",
    [
        "from observability_app.audit.db import install_triggers",
        "def install(apps, schema_editor):\n    from observability_app.audit import db\n",
        "import observability_app.audit.db as db",
        "import observability_app",
        "from importlib import import_module\nmodule = import_module('observability_app.audit.db')",
        "import importlib\nmodule = importlib.import_module(NAME)",
        "module = __import__('observability_app.conf')",
    ],
)
def test_the_check_finds_a_live_import(source):
    assert live_imports(source) != []


def test_the_check_allows_django_and_the_other_migrations():
    source = (
        "from django.db import migrations\n"
        "from importlib import import_module\n"
        "from . import helpers\n"
        "previous = import_module('observability_app.migrations.0003_admin_indexes')\n"
    )
    assert live_imports(source) == []


# --- What a fresh migrate creates --------------------------------------------------------------------------------


class FreshDatabase:
    """A database of its own, migrated by ``manage.py migrate`` in a child process, as a deployment would."""

    def __init__(self, url: str, var_dir: Path) -> None:
        self.url = url
        self.var_dir = var_dir

    def migrate(self, *target: str) -> None:
        done = subprocess.run(
            [sys.executable, "manage.py", "migrate", *target, "--noinput", "-v", "0"],
            cwd=ROOT,
            env=server_env(self.url, self.var_dir),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr

    def postgres_catalog(self) -> tuple[dict, dict]:
        """(functions, triggers) named ``observability_*``: bodies as stored, triggers as PostgreSQL prints them."""
        import psycopg

        with psycopg.connect(self.url) as database:
            functions = {
                name: (body, config, volatility, language)
                for name, body, config, volatility, language in database.execute(
                    "SELECT p.proname, p.prosrc, p.proconfig, p.provolatile, l.lanname FROM pg_proc p"
                    " JOIN pg_language l ON l.oid = p.prolang WHERE p.proname LIKE 'observability%'"
                )
            }
            triggers = {
                (name, table): definition
                for name, table, definition in database.execute(
                    "SELECT t.tgname, c.relname, pg_get_triggerdef(t.oid) FROM pg_trigger t"
                    " JOIN pg_class c ON c.oid = t.tgrelid WHERE NOT t.tgisinternal"
                    " AND c.relname LIKE 'observability%'"
                )
            }
        return functions, triggers

    def sqlite_triggers(self) -> dict[str, str]:
        path = self.url.removeprefix("sqlite:///")
        with sqlite3.connect(path) as database:
            return dict(database.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"))


@pytest.fixture
def fresh_database(tmp_path: Path, django_db_setup: None, django_db_blocker: Any) -> Iterator[FreshDatabase]:
    """An empty database beside the suite's own (PostgreSQL: ``<test db>_fresh``; SQLite: a file)."""
    if connection.vendor != "postgresql":
        yield FreshDatabase(f"sqlite:///{tmp_path / 'fresh.sqlite3'}", tmp_path)
        return
    import psycopg

    with django_db_blocker.unblock():
        suite_url = child_database_url()
    base, _, suite_name = suite_url.rpartition("/")
    name = f"{suite_name}_fresh"
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield FreshDatabase(f"{base}/{name}", tmp_path)
    finally:
        with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@postgres_only
def test_fresh_migrate_on_postgres_creates_the_sql_as_applied(fresh_database):
    fresh_database.migrate("observability_app", "0004")
    assert fresh_database.postgres_catalog() == (PG_FUNCTIONS_0002, PG_TRIGGERS_0002)
    fresh_database.migrate()
    assert fresh_database.postgres_catalog() == (PG_FUNCTIONS_LATEST, PG_TRIGGERS_LATEST)


@postgres_only
def test_migrating_back_on_postgres_restores_the_sql_of_0002_byte_for_byte(fresh_database):
    """0005's way back puts 0002's functions in again: a database taken back equals one never taken forward."""
    fresh_database.migrate()
    fresh_database.migrate("observability_app", "0004")
    assert fresh_database.postgres_catalog() == (PG_FUNCTIONS_0002, PG_TRIGGERS_0002)
    fresh_database.migrate("observability_app", "0001")
    assert fresh_database.postgres_catalog() == ({}, {})
    fresh_database.migrate()
    assert fresh_database.postgres_catalog() == (PG_FUNCTIONS_LATEST, PG_TRIGGERS_LATEST)


@sqlite_only
def test_fresh_migrate_on_sqlite_creates_the_sql_as_applied(fresh_database):
    fresh_database.migrate("observability_app", "0004")
    assert fresh_database.sqlite_triggers() == SQLITE_TRIGGERS_0002
    fresh_database.migrate()
    assert fresh_database.sqlite_triggers() == SQLITE_TRIGGERS_LATEST


@sqlite_only
def test_migrating_back_on_sqlite_restores_the_triggers_of_0002(fresh_database):
    fresh_database.migrate()
    fresh_database.migrate("observability_app", "0004")
    assert fresh_database.sqlite_triggers() == SQLITE_TRIGGERS_0002
    fresh_database.migrate("observability_app", "0001")
    assert fresh_database.sqlite_triggers() == {}
    fresh_database.migrate()
    assert fresh_database.sqlite_triggers() == SQLITE_TRIGGERS_LATEST
