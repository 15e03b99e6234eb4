"""Exact search over the indexed identity columns of audit events.

Why not Django's ``search_fields``? The admin turns a search into ``icontains`` (``LIKE '%term%'``), or ``iexact``
(``UPPER(column) = UPPER(term)``) for ``=`` fields: neither can use a b-tree index, so every search on a table of
millions of events reads all of it. Auditors search by identifiers they copied from a log line, a ticket or another
event, so an exact, case-sensitive match is what they mean, and it is an index look-up.

A search term is matched whole (spaces included, leading and trailing ones dropped) against the correlation id, the
request id, the subject and the actor, and against the event id when it is a UUID. A prefix picks one column:
``correlation:``, ``request:``, ``subject:``, ``actor:`` or ``event:`` (the column names ``correlation_id:``,
``request_id:`` and ``event_id:`` work too).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.db.models import Q, QuerySet

from ..audit.models import AuditEvent

__all__ = ["PREFIXES", "SEARCH_COLUMNS", "SearchTerm", "exact_q", "exact_search", "parse", "storable"]


#: Columns an unprefixed term is compared with; each has its own index (see AuditEvent.Meta.indexes).
SEARCH_COLUMNS = ("correlation_id", "request_id", "subject", "actor")
#: Prefix (lower case, without the colon) -> column.
PREFIXES = {
    "correlation": "correlation_id",
    "correlation_id": "correlation_id",
    "request": "request_id",
    "request_id": "request_id",
    "subject": "subject",
    "actor": "actor",
    "event": "event_id",
    "event_id": "event_id",
}


@dataclass(frozen=True)
class SearchTerm:
    """A parsed search: one value, compared with one column or (``column is None``) with every search column."""

    value: str
    column: str | None = None


def parse(term: str | None) -> SearchTerm | None:
    """Split an optional ``prefix:`` off ``term``; None for a blank search (no filtering)."""
    text = (term or "").strip()
    if not text:
        return None
    prefix, colon, rest = text.partition(":")
    column = PREFIXES.get(prefix.strip().lower()) if colon else None
    if column is not None and rest.strip():
        return SearchTerm(rest.strip(), column)
    return SearchTerm(text)


def storable(column: str, value: str) -> bool:
    """Whether ``column`` can hold ``value`` at all; a value it cannot hold matches nothing.

    Asking the database anyway would fail (PostgreSQL refuses NUL characters and invalid UTF-8) or waste an index
    probe (a value longer than the column).
    """
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    max_length = AuditEvent._meta.get_field(column).max_length
    return max_length is None or len(value) <= max_length


def exact_q(search: SearchTerm) -> Q | None:
    """The condition for ``search``: an OR of exact matches on indexed columns; None when nothing can match."""
    columns = (search.column,) if search.column else (*SEARCH_COLUMNS, "event_id")
    condition = Q()
    for column in columns:
        if column == "event_id":
            try:
                condition |= Q(event_id=uuid.UUID(search.value))
            except ValueError:
                continue
        elif storable(column, search.value):
            condition |= Q(**{column: search.value})
    return condition or None


def exact_search(queryset: QuerySet, term: str | None) -> QuerySet:
    """``queryset`` narrowed to the events that ``term`` names exactly (unchanged for a blank term)."""
    search = parse(term)
    if search is None:
        return queryset
    condition = exact_q(search)
    return queryset.none() if condition is None else queryset.filter(condition)
