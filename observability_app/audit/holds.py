"""Legal holds: place and lift them (each an audit event); the purge never touches what a hold in force covers.

A hold is one :class:`LegalHold` row, its lifting one :class:`LegalHoldRelease` row; neither is edited or deleted.
Both run serialized against purge batches (:func:`~observability_app.audit.locks.holds_serialized`) and take their
time from the database's clock, which the LEGAL_HOLD_PLACED / LEGAL_HOLD_RELEASED payloads carry: verification
rebuilds the holds in force at any moment from those sealed events, not from the rows an attacker could delete.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import DEFAULT_DB_ALIAS, IntegrityError

from . import registry
from .canonical import format_time
from .exceptions import InvalidAuditEvent
from .locks import database_now, holds_serialized
from .models import LegalHold, LegalHoldRelease
from .recording import record

__all__ = ["HeldScope", "active_scope", "place", "release"]


def place(
    *, reason: str, placed_by: str, subject: str = "", event_type: str = "", using: str = DEFAULT_DB_ALIAS
) -> LegalHold:
    """Place a hold on a subject (an artifact id), an event type, or events of one type about one subject."""
    subject, event_type, reason = (subject or "").strip(), (event_type or "").strip(), (reason or "").strip()
    placed_by = (placed_by or "").strip()
    if not subject and not event_type:
        raise InvalidAuditEvent("a legal hold needs a subject, an event type, or both")
    if event_type:
        registry.get(event_type)
    if not reason:
        raise InvalidAuditEvent("a legal hold needs a reason")
    if len(subject) > 255 or len(reason) > 10_000 or not placed_by or "\x00" in subject + reason + placed_by:
        raise InvalidAuditEvent(
            "subject is at most 255 characters, reason at most 10,000, placed_by is required, and none holds NUL"
        )
    with holds_serialized(using=using, shared=False):
        now = database_now(using)
        hold = LegalHold.objects.using(using).create(
            subject=subject, event_type=event_type, reason=reason, placed_by=placed_by[:255], placed_at=now
        )
        record(
            "LEGAL_HOLD_PLACED",
            {
                "hold_id": str(hold.pk),
                "reason": reason,
                "subject": subject,
                "event_type": event_type,
                "placed_at": format_time(now),
            },
            actor=placed_by,
            subject=subject,
            using=using,
        )
    return hold


def release(hold: LegalHold, *, released_by: str, reason: str, using: str = DEFAULT_DB_ALIAS) -> LegalHoldRelease:
    """Lift a hold (both rows stay on record); lifting a lifted hold is an error."""
    reason = (reason or "").strip()
    released_by = (released_by or "").strip()
    if not reason:
        raise InvalidAuditEvent("lifting a legal hold needs a reason")
    if not released_by or len(reason) > 10_000 or "\x00" in reason + released_by:
        raise InvalidAuditEvent("released_by is required; the reason is at most 10,000 characters, without NUL")
    with holds_serialized(using=using, shared=False):
        if LegalHoldRelease.objects.using(using).filter(hold_id=hold.pk).exists():
            raise InvalidAuditEvent(f"legal hold {hold.pk} was already lifted")
        now = database_now(using)
        try:
            lifted = LegalHoldRelease.objects.using(using).create(
                hold_id=hold.pk, released_by=released_by[:255], released_at=now, reason=reason
            )
        except IntegrityError:  # lifted by someone else between the check and the insert
            raise InvalidAuditEvent(f"legal hold {hold.pk} was already lifted") from None
        record(
            "LEGAL_HOLD_RELEASED",
            {"hold_id": str(hold.pk), "reason": reason, "released_at": format_time(now)},
            actor=released_by,
            subject=hold.subject,
            using=using,
        )
    return lifted


@dataclass(frozen=True)
class HeldScope:
    """What the holds in force cover: whole types, whole subjects, and (subject, type) pairs."""

    types: frozenset[str]
    subjects: frozenset[str]
    pairs: frozenset[tuple[str, str]]

    def subjects_for(self, event_type: str) -> set[str]:
        return set(self.subjects) | {subject for subject, kind in self.pairs if kind == event_type}


def active_scope(using: str = DEFAULT_DB_ALIAS) -> HeldScope:
    """The scope of the holds in force now (read inside the caller's transaction)."""
    types, subjects, pairs = set(), set(), set()
    for subject, event_type in LegalHold.objects.using(using).active().values_list("subject", "event_type"):
        if subject and event_type:
            pairs.add((subject, event_type))
        elif subject:
            subjects.add(subject)
        elif event_type:
            types.add(event_type)
    return HeldScope(frozenset(types), frozenset(subjects), frozenset(pairs))
