"""observability_app.metrics.database: slow queries, rollbacks and connection usage, on the suite's real database."""

from __future__ import annotations

import pytest
from django.db import connection, transaction

from observability_app.metrics import database
from observability_app.metrics.registry import REGISTRY


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, {"alias": "default", **labels}) or 0.0


class Boom(Exception):
    pass


@pytest.mark.django_db(transaction=True)
def test_rollbacks_are_counted_by_kind():
    before = {kind: value("db_rollbacks_total", kind=kind) for kind in ("transaction", "savepoint")}
    with pytest.raises(Boom), transaction.atomic():
        connection.cursor().execute("SELECT 1")
        raise Boom
    with transaction.atomic(), pytest.raises(Boom), transaction.atomic():
        raise Boom
    assert value("db_rollbacks_total", kind="transaction") == before["transaction"] + 1
    assert value("db_rollbacks_total", kind="savepoint") == before["savepoint"] + 1


@pytest.mark.django_db
def test_slow_queries_are_counted_above_the_threshold(monkeypatch):
    before = value("db_slow_queries_total")
    connection.cursor().execute("SELECT 1")
    assert value("db_slow_queries_total") == before
    monkeypatch.setattr(database, "SLOW_QUERY_SECONDS", -1.0)  # every query is "slow" now
    connection.cursor().execute("SELECT 1")
    assert value("db_slow_queries_total") == before + 1


@pytest.mark.django_db(transaction=True)
def test_connections_opened_and_in_use_follow_open_and_close():
    connection.close()
    opened, in_use = value("db_connections_opened_total"), value("db_connections_in_use")
    connection.ensure_connection()
    assert value("db_connections_opened_total") == opened + 1
    assert value("db_connections_in_use") == in_use + 1
    connection.close()
    connection.close()  # a second close does not count down twice
    assert value("db_connections_in_use") == in_use
