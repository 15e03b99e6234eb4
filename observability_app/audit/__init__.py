"""The append-only, tamper-evident audit trail.

Public API::

    from observability_app import audit

    audit.record("ARTIFACT_ACCESSED", {"artifact_id": "a1", "version": "1", "reader": "ci", "purpose": "eval"})
    audit.record_many([("ARTIFACT_ACCESSED", {...}), ...])
    audit.register_event_type("MODEL_PROMOTED", required=["artifact_id", "stage"], retention=365 * 7)

``record`` and ``record_many`` are loaded on first use so that importing this package never touches the model
registry (it is safe to import from a project's ``apps.py``).
"""

from __future__ import annotations

from typing import Any

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
    "record",
    "record_many",
    "register_event_type",
    "retention_for",
]


def __getattr__(name: str) -> Any:
    if name in ("record", "record_many", "event_recorded"):
        from . import recording

        return getattr(recording, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
