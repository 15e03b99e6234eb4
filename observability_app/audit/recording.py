"""``record()`` and ``record_many()``: validate, capture context, write in the caller's transaction.

Why not ``AuditEvent.objects.create()``? ``Model.save()`` spends most of its time in generic machinery (signals,
field loops, the SQL compiler) that an append-only row with fixed columns does not need. ``record()`` builds one
parameterised ``INSERT`` per connection once and reuses it, so the audit trail costs about what a plain insert
costs (see ``benchmarks/``). The insert runs on the caller's connection, inside whatever transaction is open: a
rolled-back business change leaves no event, a committed one always has its event.

``record_many()`` validates every event before writing any, then writes them in one savepoint: with ``COPY`` on
PostgreSQL and ``executemany`` on SQLite.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, router, transaction

from .. import context as obs_context
from ..conf import settings
from ..ids import time_ordered_id
from . import registry
from .canonical import DIGEST_FIELDS, EVENT_COLUMNS, encode_payload, event_digest, normalize_payload, signing_key
from .exceptions import InvalidAuditEvent, MissingPayloadFields, PayloadTooLarge
from .locks import WRITERS_LOCK_SQL, take_writers_lock
from .models import AuditEvent
from .signals import event_recorded

_COLUMNS = EVENT_COLUMNS
_MAX_LENGTHS = {
    name: AuditEvent._meta.get_field(name).max_length
    for name in _COLUMNS
    if getattr(AuditEvent._meta.get_field(name), "max_length", None)
}
OUTCOMES = ("success", "failure", "denied", "error")

#: Fills trace_id/span_id from the active span; set by observability_app.tracing when tracing is on.
trace_ids_provider = None


def _text(value: Any, column: str) -> str:
    if value is None:
        return ""
    text = value if type(value) is str else str(value)
    if "\x00" in text:
        text = text.replace("\x00", "")
    limit = _MAX_LENGTHS[column]
    return text if len(text) <= limit else text[:limit]


def _check_fields(event_type: registry.EventType, payload: dict[str, Any]) -> None:
    missing = [name for name in event_type.required if name not in payload]
    if missing:
        raise MissingPayloadFields(event_type.name, missing)
    for name, types in event_type.required.items():
        value = payload[name]
        if types is not None and (
            not isinstance(value, types) or ((value is True or value is False) and bool not in types)
        ):
            expected = " or ".join(t.__name__ for t in types)
            raise InvalidAuditEvent(
                f"{event_type.name} payload field {name!r} must be {expected}, got {type(value).__name__}"
            )
    for name, allowed in event_type.choices.items():
        if name in payload and payload[name] not in allowed:
            raise InvalidAuditEvent(
                f"{event_type.name} payload field {name!r} must be one of {', '.join(sorted(allowed))};"
                f" got {str(payload[name])[:80]!r}"
            )
    for name, (low, high) in event_type.ranges.items():
        if name in payload and not (low <= payload[name] <= high):
            raise InvalidAuditEvent(
                f"{event_type.name} payload field {name!r} must be between {low} and {high}; got {payload[name]!r}"
            )
    for name in event_type.forbidden:
        if name in payload:
            raise InvalidAuditEvent(f"{event_type.name} must never carry {name!r} in its payload")


_CONTEXT_COLUMNS = ("correlation_id", "request_id", "trace_id", "span_id", "client_ip", "user_agent", "route")


class _Defaults:
    """What every event of one call shares: settings, signing key and the bound context's columns.

    Computed once per ``record()`` call and once per ``record_many()`` batch, not once per event.
    """

    __slots__ = ("actor", "context", "environment", "key", "limit", "service", "source")

    def __init__(self, ctx: obs_context.ObservabilityContext | None) -> None:
        conf = settings._setup()
        self.key = signing_key()
        self.limit = conf.values["AUDIT_MAX_PAYLOAD_BYTES"]
        self.service = _text(conf.values["SERVICE_NAME"], "service")
        self.environment = _text(conf.values["ENVIRONMENT"], "environment")
        if ctx is None:
            ctx = obs_context.current()
        if ctx is not None:
            self.actor = ctx.actor()
            self.source = ctx.source
            values = (ctx.correlation_id, ctx.request_id, ctx.trace_id, ctx.span_id, ctx.ip, ctx.user_agent, ctx.route)
            self.context = {name: _text(value, name) for name, value in zip(_CONTEXT_COLUMNS, values, strict=True)}
        else:
            self.actor = ""
            self.source = ""
            self.context = dict.fromkeys(_CONTEXT_COLUMNS, "")
        if not self.context["trace_id"] and trace_ids_provider is not None:
            trace_id, span_id = trace_ids_provider()
            self.context["trace_id"], self.context["span_id"] = _text(trace_id, "trace_id"), _text(span_id, "span_id")


def build_row(
    event_type: str,
    payload: Mapping[str, Any] | None = None,
    *,
    subject: Any = None,
    actor: Any = None,
    outcome: str | None = None,
    source: str | None = None,
    occurred_at: datetime | None = None,
    ctx: obs_context.ObservabilityContext | None = None,
    defaults: _Defaults | None = None,
    **context_fields: Any,
) -> dict[str, Any]:
    """Validate one event and return its column values (with digest); raises, writes nothing."""
    if defaults is None:
        defaults = _Defaults(ctx)
    etype = registry.get(event_type)
    normalized = normalize_payload({} if payload is None else payload)
    _check_fields(etype, normalized)
    payload_text, payload_bytes = encode_payload(normalized)
    if len(payload_bytes) > defaults.limit:
        raise PayloadTooLarge(len(payload_bytes), defaults.limit)
    if occurred_at is None:
        occurred_at = datetime.now(UTC)
    elif not isinstance(occurred_at, datetime) or occurred_at.tzinfo is None:
        raise InvalidAuditEvent(f"occurred_at must be a timezone-aware datetime, got {occurred_at!r}")
    if outcome is None:
        outcome = etype.outcome
    elif outcome not in OUTCOMES:
        raise InvalidAuditEvent(f"outcome must be one of {', '.join(OUTCOMES)}; got {str(outcome)[:40]!r}")
    if subject is None and etype.subject_field is not None:
        subject = normalized.get(etype.subject_field, "")
    row = dict(defaults.context)
    for name, value in context_fields.items():
        if name not in row:
            raise TypeError(f"record() got an unexpected keyword argument {name!r}")
        row[name] = _text(value, name)
    row["event_type"] = etype.name
    row["subject"] = _text(subject, "subject")
    row["actor"] = defaults.actor if actor is None else _text(actor, "actor")
    row["outcome"] = outcome
    row["source"] = _text(source or defaults.source or "command", "source")
    row["service"] = defaults.service
    row["environment"] = defaults.environment
    event_id = time_ordered_id()
    row["event_id"] = event_id
    row["occurred_at"] = occurred_at
    row["payload"] = normalized
    row["payload_text"] = payload_text
    row["digest"] = event_digest(event_id, occurred_at, row, payload_text, defaults.key)
    return row


class _Inserter:
    """The prepared INSERT for one connection vendor."""

    def __init__(self, connection: Any) -> None:
        qn = connection.ops.quote_name
        self.vendor = connection.vendor
        columns = ", ".join(qn(name) for name in _COLUMNS)
        table = qn(AuditEvent._meta.db_table)
        self.returning = connection.features.can_return_columns_from_insert
        self.sql = self.plain_sql = f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * len(_COLUMNS))})"
        if self.vendor == "postgresql":
            # The writers' lock first (a one-time filter runs before the id's nextval), in the same statement: the
            # sealer then knows this transaction may still commit an event below the ids it seals (locks.py).
            casts = ", ".join(f"%s::{AuditEvent._meta.get_field(name).db_type(connection)}" for name in _COLUMNS)
            self.sql = f"INSERT INTO {table} ({columns}) SELECT {casts} WHERE {WRITERS_LOCK_SQL} IS NOT NULL"
        if self.returning:
            self.sql += f" RETURNING {qn('id')}"
        self.copy_sql = f"COPY {table} ({columns}) FROM STDIN"
        self.time_field = AuditEvent._meta.get_field("occurred_at")

    def params(self, row: dict[str, Any], connection: Any) -> list[Any]:
        event_id = row["event_id"]  # 32 hex digits: what SQLite's char(32) holds and PostgreSQL's uuid accepts
        occurred_at = row["occurred_at"]
        if self.vendor != "postgresql":
            occurred_at = self.time_field.get_db_prep_value(occurred_at, connection)
        return [event_id, occurred_at, *[row[name] for name in DIGEST_FIELDS], row["payload_text"], row["digest"]]


_inserters: dict[str, _Inserter] = {}


def _inserter(connection: Any) -> _Inserter:
    inserter = _inserters.get(connection.vendor)
    if inserter is None:
        inserter = _inserters[connection.vendor] = _Inserter(connection)
    return inserter


def _db_alias(using: str | None) -> str:
    return using or router.db_for_write(AuditEvent) or DEFAULT_DB_ALIAS


def record(
    event_type: str,
    payload: Mapping[str, Any] | None = None,
    *,
    subject: Any = None,
    actor: Any = None,
    outcome: str | None = None,
    source: str | None = None,
    occurred_at: datetime | None = None,
    using: str | None = None,
    **context_fields: Any,
) -> AuditEvent:
    """Store one audit event in the caller's transaction and return it.

    ``subject`` defaults to the type's subject field of the payload; ``actor``, ``source`` and the correlation,
    request and trace ids default to the current request or job context. ``context_fields`` override single context
    values (``correlation_id=...``). Raises :class:`InvalidAuditEvent` (unknown type, missing or mistyped fields,
    payload not JSON or too large) before anything is written.
    """
    row = build_row(
        event_type,
        payload,
        subject=subject,
        actor=actor,
        outcome=outcome,
        source=source,
        occurred_at=occurred_at,
        **context_fields,
    )
    alias = _db_alias(using)
    connection = connections[alias]
    inserter = _inserter(connection)
    with connection.cursor() as cursor:
        cursor.execute(inserter.sql, inserter.params(row, connection))
        pk = cursor.fetchone()[0] if inserter.returning else cursor.lastrowid
    del row["payload_text"]
    row["event_id"] = uuid.UUID(hex=row["event_id"])
    event = AuditEvent(id=pk, **row)
    event._state.adding = False
    event._state.db = alias
    if event_recorded.receivers:
        event_recorded.send(sender=AuditEvent, event_type=event.event_type, count=1)
    return event


def _build_item(index: int, item: Any, defaults: _Defaults) -> dict[str, Any]:
    try:
        if isinstance(item, tuple):
            return build_row(*item, defaults=defaults)
        if isinstance(item, Mapping):
            return build_row(**item, defaults=defaults)
        raise InvalidAuditEvent(f"expected a mapping or (event_type, payload) tuple, got {type(item).__name__}")
    except (InvalidAuditEvent, TypeError) as exc:
        raise InvalidAuditEvent(f"event #{index}: {exc}") from exc


def record_many(
    events: Iterable[Mapping[str, Any] | tuple], *, using: str | None = None, batch_size: int = 2000
) -> int:
    """Store many events atomically (all or none); returns how many.

    Each item is a mapping of :func:`record`'s arguments (``{"event_type": ..., "payload": ...}``) or a tuple
    ``(event_type, payload)``. Events are validated as they stream into the database (``COPY`` on PostgreSQL,
    ``executemany`` in batches elsewhere) inside one savepoint: the database works on one batch while Python
    validates the next, and an invalid event anywhere rolls the savepoint back, so nothing of the call is stored.
    """
    alias = _db_alias(using)
    connection = connections[alias]
    inserter = _inserter(connection)
    defaults = _Defaults(None)
    counts: dict[str, int] = {}
    total = 0
    with transaction.atomic(using=alias, savepoint=True), connection.cursor() as cursor:
        if inserter.vendor == "postgresql":
            take_writers_lock(alias)
            with cursor.cursor.copy(inserter.copy_sql) as copy:
                for index, item in enumerate(events):
                    row = _build_item(index, item, defaults)
                    copy.write_row(inserter.params(row, connection))
                    counts[row["event_type"]] = counts.get(row["event_type"], 0) + 1
                    total += 1
        else:
            batch: list[list[Any]] = []
            for index, item in enumerate(events):
                row = _build_item(index, item, defaults)
                batch.append(inserter.params(row, connection))
                counts[row["event_type"]] = counts.get(row["event_type"], 0) + 1
                total += 1
                if len(batch) >= batch_size:
                    cursor.executemany(inserter.plain_sql, batch)
                    batch = []
            if batch:
                cursor.executemany(inserter.plain_sql, batch)
    if event_recorded.receivers:
        for name, count in counts.items():
            event_recorded.send(sender=AuditEvent, event_type=name, count=count)
    return total
