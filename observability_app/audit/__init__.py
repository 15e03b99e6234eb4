"""The append-only, tamper-evident audit trail.

Public API::

    from observability_app import audit

    audit.record("ARTIFACT_ACCESSED", {"artifact_id": "a1", "version": "1", "reader": "ci", "purpose": "eval"})
    audit.record_many([("ARTIFACT_ACCESSED", {...}), ...])
    audit.register_event_type("MODEL_PROMOTED", required=["artifact_id", "stage"], retention=365 * 7)

``record`` and ``record_many`` load the recording module on their first call, so that importing this package never
touches the model registry (it is safe to import from a project's ``apps.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .exceptions import (
    AppendOnlyViolation,
    AuditError,
    InvalidAuditEvent,
    MissingPayloadFields,
    PayloadTooLarge,
    UnknownEventType,
)
from .registry import ARTIFACT_LIFETIME, PERMANENT, EventType, all_types, retention_for
from .registry import register as register_event_type
from .signals import event_recorded

if TYPE_CHECKING:
    from .models import AuditEvent

__all__ = [
    "ARTIFACT_LIFETIME",
    "PERMANENT",
    "AppendOnlyViolation",
    "AuditError",
    "EventType",
    "InvalidAuditEvent",
    "MissingPayloadFields",
    "PayloadTooLarge",
    "UnknownEventType",
    "all_types",
    "event_recorded",
    "record",
    "record_many",
    "register_event_type",
    "retention_for",
]


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
    """Store one audit event in the caller's transaction: :func:`observability_app.audit.recording.record`.

    A plain function (not a module ``__getattr__``) so that type checkers see it; the recording module, which
    imports the models, is loaded on the first call.
    """
    from .recording import record as _record

    return _record(
        event_type,
        payload,
        subject=subject,
        actor=actor,
        outcome=outcome,
        source=source,
        occurred_at=occurred_at,
        using=using,
        **context_fields,
    )


def record_many(
    events: Iterable[Mapping[str, Any] | tuple[Any, ...]], *, using: str | None = None, batch_size: int = 2000
) -> int:
    """Store many events atomically (all or none): :func:`observability_app.audit.recording.record_many`."""
    from .recording import record_many as _record_many

    return _record_many(events, using=using, batch_size=batch_size)
