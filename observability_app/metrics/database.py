"""Database metrics: every query through Django's ORM or ``connection.cursor()`` is counted and timed.

Django's ``execute_wrappers`` see every query of a connection. :func:`install` adds one wrapper to each connection
when it is created (``connection_created``), at the front of the list so that a caller's own
``connection.execute_wrapper()`` block, which pops the last entry when it ends, never removes ours.
"""

from __future__ import annotations

from time import perf_counter
from typing import Any

from django.db import DatabaseError

from .families import DB_DURATION, DB_ERRORS, DB_QUERIES

_state = {"enabled": False}


class QueryObserver:
    """The execute wrapper of one connection; holds its resolved children."""

    __slots__ = ("alias", "duration", "errors", "queries")

    def __init__(self, alias: str, vendor: str) -> None:
        self.alias = alias
        self.queries = DB_QUERIES.child((alias, vendor))
        self.duration = DB_DURATION.child((alias,))
        self.errors = DB_ERRORS.child((alias,))

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
            self.queries.inc()
            self.duration.observe(perf_counter() - start)


def _on_connection_created(sender: Any, connection: Any, **kwargs: Any) -> None:
    attach(connection)


def attach(connection: Any) -> None:
    """Add the observer to ``connection`` unless it already has one (reconnects fire the signal again)."""
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


def uninstall() -> None:
    """Stop counting: wrappers already attached pass queries straight through."""
    _state["enabled"] = False
