"""Exceptions of the audit trail. Each names the bad value and how to fix it."""

from __future__ import annotations

__all__ = [
    "AppendOnlyViolation",
    "AuditError",
    "InvalidAuditEvent",
    "MissingPayloadFields",
    "PayloadTooLarge",
    "UnknownEventType",
]


class AuditError(Exception):
    """Base class: every error the audit API raises on purpose."""


class InvalidAuditEvent(AuditError, ValueError):
    """The event cannot be stored as given; nothing was written."""


class UnknownEventType(InvalidAuditEvent):
    def __init__(self, name: object, known: list[str]) -> None:
        shown = repr(name)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        super().__init__(
            f"unknown audit event type {shown}; register it with observability_app.audit.register_event_type()"
            f" or use one of: {', '.join(known)}"
        )
        self.name = name


class MissingPayloadFields(InvalidAuditEvent):
    def __init__(self, event_type: str, missing: list[str]) -> None:
        super().__init__(f"{event_type} needs payload field(s) {', '.join(missing)}")
        self.missing = missing


class PayloadTooLarge(InvalidAuditEvent):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"audit payload is {size} bytes of JSON, over the limit of {limit}"
            " (OBSERVABILITY['AUDIT_MAX_PAYLOAD_BYTES']); store large data elsewhere and reference it"
        )
        self.size = size
        self.limit = limit


class AppendOnlyViolation(AuditError, PermissionError):
    """Something tried to change or delete a stored audit event outside the retention purge."""

    def __init__(self, what: str = "audit events are append-only") -> None:
        super().__init__(
            f"{what}: stored audit events cannot be updated or deleted; expired events are removed only by"
            " `manage.py purge_expired_audit`"
        )
