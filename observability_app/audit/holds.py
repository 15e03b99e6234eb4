"""Legal holds: place and lift them (each audited); the purge never touches what they cover."""

from __future__ import annotations

from datetime import UTC, datetime

from django.db import DEFAULT_DB_ALIAS, transaction

from . import registry
from .exceptions import InvalidAuditEvent
from .models import LegalHold
from .recording import record


def place(
    *, reason: str, placed_by: str, subject: str = "", event_type: str = "", using: str = DEFAULT_DB_ALIAS
) -> LegalHold:
    """Place a hold on a subject (an artifact id), an event type, or events of one type about one subject."""
    subject, event_type, reason = (subject or "").strip(), (event_type or "").strip(), (reason or "").strip()
    if not subject and not event_type:
        raise InvalidAuditEvent("a legal hold needs a subject, an event type, or both")
    if event_type:
        registry.get(event_type)
    if not reason:
        raise InvalidAuditEvent("a legal hold needs a reason")
    if len(subject) > 255 or len(reason) > 10_000 or not placed_by:
        raise InvalidAuditEvent("subject is at most 255 characters, reason at most 10,000, placed_by is required")
    with transaction.atomic(using=using):
        hold = LegalHold.objects.using(using).create(
            subject=subject,
            event_type=event_type,
            reason=reason,
            placed_by=placed_by[:255],
            placed_at=datetime.now(UTC),
        )
        record(
            "LEGAL_HOLD_PLACED",
            {"hold_id": str(hold.pk), "reason": reason, "subject": subject, "event_type": event_type},
            actor=placed_by,
            using=using,
        )
    return hold


def release(hold: LegalHold, *, released_by: str, reason: str, using: str = DEFAULT_DB_ALIAS) -> LegalHold:
    """Lift a hold (it stays on record); lifting a lifted hold is an error."""
    reason = (reason or "").strip()
    if not reason:
        raise InvalidAuditEvent("lifting a legal hold needs a reason")
    with transaction.atomic(using=using):
        locked = LegalHold.objects.using(using).select_for_update().get(pk=hold.pk)
        if locked.released_at is not None:
            raise InvalidAuditEvent(f"legal hold {hold.pk} was already lifted")
        locked.released_at = datetime.now(UTC)
        locked.released_by = released_by[:255]
        locked.release_reason = reason[:10_000]
        locked.save(update_fields=["released_at", "released_by", "release_reason"])
        record("LEGAL_HOLD_RELEASED", {"hold_id": str(hold.pk), "reason": reason}, actor=released_by, using=using)
    return locked
