"""A correlation id's timeline: every event of one request, job or workflow, in the order it happened.

One query (``WHERE correlation_id = %s ORDER BY occurred_at, id``, served by the correlation id index), capped at
:data:`MAX_EVENTS`. Each entry carries its offset from the first event, its source (api, job, worker, admin,
command), actor, outcome, and a link to the trace in the tracing UI when the event has a trace id and
``ADMIN_TRACE_URL`` is set.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from urllib.parse import quote

from django.db.models import QuerySet

from ..audit.models import AuditEvent
from ..conf import settings
from .search import storable

__all__ = ["COLUMNS", "MAX_EVENTS", "Entry", "Timeline", "correlation_timeline", "format_offset", "trace_url"]


#: At most this many events are shown; a longer correlation says so and links to the filtered changelist.
MAX_EVENTS = 5000
#: Columns a timeline entry needs (the payload is read only for its size-bounded summary on the page).
COLUMNS = (
    "id",
    "event_id",
    "event_type",
    "occurred_at",
    "subject",
    "actor",
    "outcome",
    "source",
    "request_id",
    "trace_id",
    "span_id",
    "route",
    "service",
)


@dataclass(frozen=True)
class Entry:
    event: AuditEvent
    offset: dt.timedelta
    gap: dt.timedelta
    trace_url: str


@dataclass(frozen=True)
class Timeline:
    correlation_id: str
    entries: list[Entry]
    truncated: bool
    first: dt.datetime | None
    last: dt.datetime | None

    @property
    def duration(self) -> dt.timedelta:
        return (self.last - self.first) if self.first and self.last else dt.timedelta(0)

    @property
    def sources(self) -> list[str]:
        return sorted({entry.event.source for entry in self.entries if entry.event.source})

    @property
    def actors(self) -> list[str]:
        return sorted({entry.event.actor for entry in self.entries if entry.event.actor})

    @property
    def failures(self) -> int:
        return sum(1 for entry in self.entries if entry.event.outcome not in ("", "success"))


def trace_url(trace_id: str) -> str:
    """The tracing UI's page of ``trace_id`` ('' without a trace id or without ``ADMIN_TRACE_URL``)."""
    template = settings.ADMIN_TRACE_URL
    if not trace_id or not template:
        return ""
    return template.replace("{trace_id}", quote(trace_id, safe=""))


def correlation_timeline(queryset: QuerySet, correlation_id: str, limit: int = MAX_EVENTS) -> Timeline:
    """The events of ``correlation_id`` in ``queryset`` (the admin's), oldest first, at most ``limit``."""
    if not correlation_id or not storable("correlation_id", correlation_id):
        return Timeline(correlation_id, [], False, None, None)
    rows = list(
        queryset.filter(correlation_id=correlation_id).order_by("occurred_at", "id").only(*COLUMNS)[: limit + 1]
    )
    truncated = len(rows) > limit
    rows = rows[:limit]
    entries = []
    first = rows[0].occurred_at if rows else None
    previous = first
    for event in rows:
        entries.append(Entry(event, event.occurred_at - first, event.occurred_at - previous, trace_url(event.trace_id)))
        previous = event.occurred_at
    return Timeline(correlation_id, entries, truncated, first, rows[-1].occurred_at if rows else None)


def format_offset(delta: dt.timedelta) -> str:
    """``+1.250 s``, ``+2 min 03.4 s``, ``+3 h 02 min``, ``+4 d 03 h``: short enough for a column, exact enough."""
    seconds = delta.total_seconds()
    sign = "-" if seconds < 0 else "+"
    seconds = abs(seconds)
    if seconds < 60:
        return f"{sign}{seconds:.3f} s"
    if seconds < 3600:
        minutes, rest = divmod(seconds, 60)
        return f"{sign}{int(minutes)} min {rest:04.1f} s"
    if seconds < 86400:
        hours, rest = divmod(seconds, 3600)
        return f"{sign}{int(hours)} h {int(rest // 60):02d} min"
    days, rest = divmod(seconds, 86400)
    return f"{sign}{int(days)} d {int(rest // 3600):02d} h"
