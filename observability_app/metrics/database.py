"""Database metrics: every query through Django's ORM or ``connection.cursor()`` is counted and timed.

Django's ``execute_wrappers`` see every query of a connection. :func:`install` adds one wrapper to each connection
when it is created (``connection_created``), at the front of the list so that a caller's own
``connection.execute_wrapper()`` block, which pops the last entry when it ends, never removes ours.

Besides queries, their duration and errors: ``db_slow_queries_total`` (over :data:`SLOW_QUERY_SECONDS`),
``db_rollbacks_total{kind}`` (``rollback()`` and ``savepoint_rollback()``: what ``atomic()`` calls when its block
raises), ``db_connections_opened_total`` and ``db_connections_in_use`` (opened minus closed, per process). The
rollback and close counts wrap those two public methods of the connection object when it is first seen.
"""

from __future__ import annotations

from time import perf_counter
from typing import Any

from django.db import DatabaseError

from .families import (
    DB_CONNECTIONS_IN_USE,
    DB_CONNECTIONS_OPENED,
    DB_DURATION,
    DB_ERRORS,
    DB_QUERIES,
    DB_ROLLBACKS,
    DB_SLOW_QUERIES,
)

#: A query slower than this is counted in ``db_slow_queries_total`` (and is a bucket bound of the duration
#: histogram, so both agree).
SLOW_QUERY_SECONDS = 0.5

_state = {"enabled": False}


class QueryObserver:
    """The execute wrapper of one connection; holds its resolved children."""

    __slots__ = ("alias", "duration", "errors", "queries", "slow")

    def __init__(self, alias: str, vendor: str) -> None:
        self.alias = alias
        self.queries = DB_QUERIES.child((alias, vendor))
        self.duration = DB_DURATION.child((alias,))
        self.errors = DB_ERRORS.child((alias,))
        self.slow = DB_SLOW_QUERIES.child((alias,))

    def __call__(self, execute: Any, sql: Any, params: Any, many: bool, context: Any) -> Any:
        if not _state["enabled"]:
            return execute(sql, params, many, context)
        start = perf_counter()
        try:
            return execute(sql, params, many, context)
        except DatabaseError:
            self.errors.inc()
            raise
        finally:
            elapsed = perf_counter() - start
            self.queries.inc()
            self.duration.observe(elapsed)
            if elapsed > SLOW_QUERY_SECONDS:
                self.slow.inc()


def _on_connection_created(sender: Any, connection: Any, **kwargs: Any) -> None:
    attach(connection)
    if _state["enabled"]:
        DB_CONNECTIONS_OPENED.child((connection.alias,)).inc()
        DB_CONNECTIONS_IN_USE.labels(connection.alias).inc()
        connection._observability_counted_open = True  # its close is the one that may count down


def _wrap_lifecycle(connection: Any) -> None:
    """Count rollbacks and closes of ``connection`` (its public ``rollback``, ``savepoint_rollback``, ``close``)."""
    if getattr(connection, "_observability_wrapped", False):
        return
    alias = connection.alias
    rollback, savepoint_rollback, close = connection.rollback, connection.savepoint_rollback, connection.close

    def counted_rollback() -> None:
        rollback()
        if _state["enabled"]:
            DB_ROLLBACKS.child((alias, "transaction")).inc()

    def counted_savepoint_rollback(sid: Any) -> None:
        savepoint_rollback(sid)
        if _state["enabled"]:
            DB_ROLLBACKS.child((alias, "savepoint")).inc()

    def counted_close() -> None:
        try:
            close()
        finally:
            if connection.connection is None and getattr(connection, "_observability_counted_open", False):
                connection._observability_counted_open = False
                DB_CONNECTIONS_IN_USE.labels(alias).dec()

    connection.rollback = counted_rollback
    connection.savepoint_rollback = counted_savepoint_rollback
    connection.close = counted_close
    connection._observability_wrapped = True


def attach(connection: Any) -> None:
    """Add the observer to ``connection`` unless it already has one (reconnects fire the signal again)."""
    _wrap_lifecycle(connection)
    for wrapper in connection.execute_wrappers:
        if isinstance(wrapper, QueryObserver):
            return
    connection.execute_wrappers.insert(0, QueryObserver(connection.alias, connection.vendor))


def install() -> None:
    from django.db import connections
    from django.db.backends.signals import connection_created

    _state["enabled"] = True
    connection_created.connect(_on_connection_created, dispatch_uid="observability_app.metrics.database")
    for connection in connections.all(initialized_only=True):
        attach(connection)
    for alias in connections:  # every configured alias has its series, at 0, from start-up
        DB_CONNECTIONS_OPENED.child((alias,))
        DB_CONNECTIONS_IN_USE.labels(alias)
        DB_SLOW_QUERIES.child((alias,))
        DB_ERRORS.child((alias,))
        DB_ROLLBACKS.child((alias, "transaction"))
        DB_ROLLBACKS.child((alias, "savepoint"))


def uninstall() -> None:
    """Stop counting: wrappers already attached pass queries straight through."""
    _state["enabled"] = False
