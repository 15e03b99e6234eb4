"""The audit trail's integrity at a glance, in words: the last verification and the unsealed tail.

Read from the tables the sealing and verification commands write (``observability_audit_verification``: the latest
``verify_audit`` run; ``observability_audit_seal``: the latest seal and the events recorded after its ``last_id``),
with three small queries that indexes answer (the latest row of each table by primary key; the events past the
seal counted up to ``ADMIN_COUNT_LIMIT``), so the admin index and the changelist can show it on every view.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import DEFAULT_DB_ALIAS
from django.utils.timesince import timesince

from ..audit.models import AuditEvent, AuditSeal, AuditVerification
from ..conf import settings

__all__ = ["TrailIntegrity", "trail_integrity"]


@dataclass(frozen=True)
class TrailIntegrity:
    """What the glance says. ``state`` is ``ok``, ``problems`` or ``unknown`` (never verified)."""

    state: str
    verification: str
    tail: str
    verified_at: datetime | None = None
    problems: int | None = None
    unsealed: int = 0
    unsealed_exact: bool = True
    oldest_unsealed: datetime | None = None
    sealed_at: datetime | None = None


def _ago(when: datetime, now: datetime) -> str:
    if when > now:
        return "in the future (check the clocks)"
    return f"{timesince(when, now).split(',')[0]} ago".replace("\xa0", " ")


def trail_integrity(using: str = DEFAULT_DB_ALIAS, *, now: datetime | None = None) -> TrailIntegrity:
    """The verification state of the trail on database ``using``, as two sentences and the figures behind them."""
    now = now or datetime.now(UTC)
    limit = settings.ADMIN_COUNT_LIMIT
    verification = AuditVerification.objects.using(using).order_by("-id").first()
    if verification is None:
        state, said, verified_at, problems = "unknown", "Never verified: run manage.py verify_audit.", None, None
    else:
        verified_at, problems = verification.finished_at, verification.problems
        when = f"{_ago(verified_at, now)} ({verified_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC)"
        checked = f"{verification.events_checked:,} events and {verification.seals_checked:,} seals checked"
        if problems:
            state = "problems"
            said = f"Last verified {when}: {problems:,} problem{'s' if problems != 1 else ''} found ({checked})."
        else:
            state = "ok"
            said = f"Last verified {when}: no problems ({checked})."
    seal = AuditSeal.objects.using(using).order_by("-id").only("id", "created_at", "last_id").first()
    after = AuditEvent.objects.using(using).order_by()
    if seal is not None:
        after = after.filter(pk__gt=seal.last_id)
    unsealed = after.values("pk")[: limit + 1].count()
    exact = unsealed <= limit
    oldest = after.order_by("pk").values_list("occurred_at", flat=True).first() if unsealed else None
    how_many = f"{unsealed:,}" if exact else f"More than {limit:,}"
    if unsealed == 0:
        tail = "Every event is sealed." if seal is not None else "No events yet."
    else:
        noun = "event" if exact and unsealed == 1 else "events"
        if seal is not None:
            since = f"since the last seal {_ago(seal.created_at, now)}"
        else:
            since = "(the trail was never sealed)"
        tail = f"{how_many} {noun} not sealed yet {since}; the first of them is dated {_ago(oldest, now)}."
        tail = tail[0].upper() + tail[1:]
    return TrailIntegrity(
        state=state,
        verification=said,
        tail=tail,
        verified_at=verified_at,
        problems=problems,
        unsealed=unsealed,
        unsealed_exact=exact,
        oldest_unsealed=oldest,
        sealed_at=seal.created_at if seal is not None else None,
    )
