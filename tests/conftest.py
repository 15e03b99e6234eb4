"""Test set-up shared by every module.

``OBSERVABILITY_TEST_REQUIRE_POSTGRES=1`` (set by .ci/run) makes the PostgreSQL run fail loudly when the database
is not PostgreSQL, so CI can never pass on SQLite alone.
"""

from __future__ import annotations

import os

import pytest
from django.db import connections
from hypothesis import HealthCheck, settings

# A developer who followed the README's tour may have this exported: the suite's databases are not that file's.
os.environ.pop("OBSERVABILITY_AUDIT_CHECKPOINT_FILE", None)

settings.register_profile(
    "default", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
# The rest of the support matrix (noxfile.py's fast run, .ci/run) checks the same properties with fewer examples.
settings.register_profile(
    "matrix", max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def pytest_report_header(config):
    from django.conf import settings as django_settings

    return (
        f"database: {django_settings.DATABASES['default']['ENGINE']} {django_settings.DATABASES['default'].get('NAME')}"
    )


def pytest_sessionstart(session):
    if os.environ.get("OBSERVABILITY_TEST_REQUIRE_POSTGRES") and os.environ.get("DATABASE_URL", "").startswith(
        "postgres"
    ):
        from django.conf import settings as django_settings

        engine = django_settings.DATABASES["default"]["ENGINE"]
        assert engine == "django.db.backends.postgresql", f"PostgreSQL required, settings use {engine}"


@pytest.fixture(autouse=True)
def _audit_gate_for_flush(request, django_db_blocker):
    """Let Django's end-of-test flush empty the append-only audit tables.

    Transactional tests end with ``TRUNCATE`` (PostgreSQL) or ``DELETE FROM`` (SQLite) of every table, which the
    append-only triggers refuse. Only for that flush, after the test body has finished, the triggers are switched
    off as a superuser would (PostgreSQL: ``session_replication_role = replica``; SQLite: dropped, and put back
    before the next test).
    """
    from tests.attacker import drop_sqlite_triggers, install_sqlite_triggers

    marker = request.node.get_closest_marker("django_db")
    transactional = (
        "transactional_db" in request.fixturenames
        or "live_server" in request.fixturenames
        or bool(marker and (marker.kwargs.get("transaction") or (marker.args and marker.args[0])))
    )
    if transactional:
        # Set up the database fixture inside this one, so that this teardown runs before its flush.
        request.getfixturevalue("_django_db_helper" if marker else "transactional_db")
    for connection in connections.all(initialized_only=True):
        connection._observability_purge_gate = False
        if not getattr(connection, "_observability_triggers_dropped", False):
            continue
        with django_db_blocker.unblock():  # put back what the previous test's flush switched off
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute("SET session_replication_role = origin")
            else:
                install_sqlite_triggers(connection)
        connection._observability_triggers_dropped = False
    yield
    if transactional:
        for connection in connections.all(initialized_only=True):
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute("SET session_replication_role = replica")
            else:
                drop_sqlite_triggers(connection)
            connection._observability_triggers_dropped = True


def pytest_sessionfinish(session):
    """Write what the batching log handlers hold while pytest still captures the output (not at exit, onto the
    terminal)."""
    from observability_app.access_log import flush_all

    flush_all()
