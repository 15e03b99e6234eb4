"""Streamed export of audit events as CSV or JSON Lines: the admin's export buttons and `manage.py export_audit`.

Rows are read with ``QuerySet.iterator(chunk_size=ADMIN_EXPORT_CHUNK_SIZE)`` inside a transaction: on PostgreSQL that
is a server-side cursor that streams (outside a transaction Django would declare it ``WITH HOLD``, which makes
PostgreSQL compute the whole result before the first row). Memory stays flat however many events are selected, and
the first bytes leave before the last row is read.

JSON Lines carries every value verbatim (the payload as a JSON object). CSV is for spreadsheets: a cell that a
spreadsheet would run as a formula (starting with ``=``, ``+``, ``-``, ``@``, tab or carriage return) is written with
a leading apostrophe, as OWASP advises against CSV injection; use JSON Lines when the exact values matter.

Every export is itself evidence: :func:`recorded_export_lines` records an AUDIT_EXPORTED event (who, which filter, how
many events, which format) once the last line has left, or when the reader stops early (``complete`` False, with the
number of events sent until then). It is recorded after the export's read transaction has ended, so that the event
is committed even though the export itself writes nothing.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from django.db import connections, transaction
from django.db.models import QuerySet
from django.http import StreamingHttpResponse

from ..conf import settings
from .canonical import EVENT_COLUMNS, dumps, format_time
from .models import AuditEvent

__all__ = [
    "FIELDS",
    "FILTER_LIST_ITEMS",
    "FILTER_VALUE_CHARS",
    "FORMATS",
    "UnknownExportFormat",
    "bounded_filter",
    "csv_lines",
    "event_record",
    "export_lines",
    "export_response",
    "jsonl_lines",
    "record_export",
    "recorded_export_lines",
    "stream_events",
]


#: Format name (the URL's last part) -> (content type, file extension).
FORMATS = {
    "csv": ("text/csv; charset=utf-8", "csv"),
    "jsonl": ("application/x-ndjson; charset=utf-8", "jsonl"),
}
#: The exported fields, in order (the CSV header).
FIELDS = ("id", *EVENT_COLUMNS)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class UnknownExportFormat(ValueError):
    """An export format other than those in :data:`FORMATS`."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown export format {name[:40]!r}; use one of {', '.join(FORMATS)}")


def event_record(row: dict[str, Any] | AuditEvent) -> dict[str, Any]:
    """One event (a row of :func:`stream_events`, or a model instance) as plain values: times in UTC ISO 8601
    (``Z``), ids as text, the payload as a JSON object."""
    record: dict[str, Any] = dict(row) if isinstance(row, dict) else {name: getattr(row, name) for name in FIELDS}
    record["event_id"] = str(record["event_id"])
    record["occurred_at"] = format_time(record["occurred_at"])
    return record


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


class _Line:
    """A file-like object for csv.writer that hands back each written line instead of storing it."""

    def write(self, text: str) -> str:
        return text


def csv_lines(events: Iterable[dict[str, Any] | AuditEvent]) -> Iterator[str]:
    writer = csv.writer(_Line())
    yield writer.writerow(FIELDS)
    for event in events:
        record = event_record(event)
        record["payload"] = dumps(record["payload"])
        yield writer.writerow([_cell(record[name]) for name in FIELDS])


def jsonl_lines(events: Iterable[dict[str, Any] | AuditEvent]) -> Iterator[str]:
    for event in events:
        yield json.dumps(event_record(event), ensure_ascii=False, separators=(",", ":")) + "\n"


def stream_events(queryset: QuerySet, chunk_size: int | None = None) -> Iterator[dict[str, Any]]:
    """Every event of ``queryset`` in its order, as a dict of :data:`FIELDS`, fetched ``chunk_size`` rows at a
    time by a streaming cursor (dicts, not model instances: a fifth faster, and an export needs nothing else)."""
    chunk_size = chunk_size or settings.ADMIN_EXPORT_CHUNK_SIZE
    connection = connections[queryset.db]
    with transaction.atomic(using=queryset.db):
        if connection.vendor == "postgresql":
            # A cursor is planned for its first 10% of rows by default: for a rare type that is a walk of the whole
            # primary key index. An export reads every row, so plan for all of them (this transaction only).
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL cursor_tuple_fraction = 1.0")
        yield from queryset.values(*FIELDS).iterator(chunk_size=chunk_size)


def export_lines(queryset: QuerySet, fmt: str, chunk_size: int | None = None) -> Iterator[str]:
    """The lines of the export of ``queryset`` in format ``fmt`` (``csv`` or ``jsonl``)."""
    if fmt not in FORMATS:
        raise UnknownExportFormat(fmt)
    events = stream_events(queryset, chunk_size)
    return csv_lines(events) if fmt == "csv" else jsonl_lines(events)


#: Bounds of the filter description an AUDIT_EXPORTED event carries (a search term can be very long).
FILTER_VALUE_CHARS = 512
FILTER_LIST_ITEMS = 1000


def bounded_filter(filters: Mapping[str, Any]) -> dict[str, Any]:
    """``filters`` as JSON-safe text values, each cut to :data:`FILTER_VALUE_CHARS` characters (lists to
    :data:`FILTER_LIST_ITEMS` items), so that describing an export can never make its event too large to store."""

    def text(value: Any) -> str:
        value = "" if value is None else str(value)
        value = value.replace("\x00", "")
        return value if len(value) <= FILTER_VALUE_CHARS else value[:FILTER_VALUE_CHARS] + "..."

    out: dict[str, Any] = {}
    for key, value in list(filters.items())[:FILTER_LIST_ITEMS]:
        if isinstance(value, list | tuple):
            out[text(key)] = [text(item) for item in value[:FILTER_LIST_ITEMS]]
            if len(value) > FILTER_LIST_ITEMS:
                out[text(key)].append(f"... {len(value) - FILTER_LIST_ITEMS} more")
        else:
            out[text(key)] = text(value)
    return out


def record_export(
    *,
    exported_by: str,
    filters: Mapping[str, Any],
    count: int,
    fmt: str,
    complete: bool = True,
    using: str | None = None,
    **record_options: Any,
) -> AuditEvent:
    """Record the AUDIT_EXPORTED event of one export; ``record_options`` are :func:`~.recording.record`'s."""
    from .recording import record

    payload = {
        "exported_by": exported_by,
        "filter": bounded_filter(filters),
        "count": count,
        "format": fmt,
        "complete": complete,
    }
    return record("AUDIT_EXPORTED", payload, actor=exported_by, using=using, **record_options)


class _Counter:
    """Counts the events on their way from the cursor to the export's lines."""

    def __init__(self, events: Iterable[Any]) -> None:
        self.events = events
        self.count = 0

    def __iter__(self) -> Iterator[Any]:
        for event in self.events:
            self.count += 1
            yield event


def recorded_export_lines(
    queryset: QuerySet,
    fmt: str,
    *,
    exported_by: str,
    filters: Mapping[str, Any],
    chunk_size: int | None = None,
    **record_options: Any,
) -> Iterator[str]:
    """:func:`export_lines`, then the export's AUDIT_EXPORTED event (see the module docstring).

    The event goes to the database the events were read from. A generator that is never started (nothing was
    sent) records nothing.
    """
    if fmt not in FORMATS:
        raise UnknownExportFormat(fmt)
    return _recorded(queryset, fmt, exported_by, filters, chunk_size, record_options)


def _recorded(
    queryset: QuerySet,
    fmt: str,
    exported_by: str,
    filters: Mapping[str, Any],
    chunk_size: int | None,
    record_options: dict[str, Any],
) -> Iterator[str]:
    events = stream_events(queryset, chunk_size)
    counter = _Counter(events)
    complete = False
    try:
        yield from (csv_lines(counter) if fmt == "csv" else jsonl_lines(counter))
        complete = True
    finally:
        events.close()  # ends the read transaction first: the event must not be rolled back with it
        record_export(
            exported_by=exported_by,
            filters=filters,
            count=counter.count,
            fmt=fmt,
            complete=complete,
            using=queryset.db,
            **record_options,
        )


def export_response(
    queryset: QuerySet, fmt: str, *, now: datetime | None = None, lines: Iterator[str] | None = None
) -> StreamingHttpResponse:
    """A streamed download of ``queryset`` in format ``fmt`` (``lines`` when given), named after the time of the
    export."""
    lines = export_lines(queryset, fmt) if lines is None else lines
    content_type, extension = FORMATS[fmt]
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    response = StreamingHttpResponse(lines, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="audit-events-{stamp}.{extension}"'
    response["Cache-Control"] = "no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response
