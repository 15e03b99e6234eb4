"""The retention policy: which events have expired, and their removal in bounded, verifiable batches.

``manage.py purge_expired_audit`` is a doorway to :func:`purge_expired`. Each run:

1. takes the purge lock (one winner when cron starts it on several hosts; the others get :class:`LockBusy`);
2. seals every unsealed event, so what it deletes is covered by a seal;
3. per event type, computes the cut-off from the retention *in force now* (``retention_for``): permanent types are
   skipped, artifact-lifetime types go once their artifact's ARTIFACT_DELETED is older than
   ``AUDIT_ARTIFACT_GRACE_DAYS``; events under an active legal hold (by subject or by type) are never selected;
4. deletes in batches of ``batch_size`` ids, each batch its own short transaction that opens the delete gate,
   removes the rows by primary key and writes the signed :class:`AuditPurgeRecord` of what it removed per seal;
5. records one AUDIT_PURGED event with the per-type counts, cut-offs and run id (``/metrics`` sums these into
   ``audit_events_purged_total`` in every process, whichever host purged).

Memory stays flat (one batch of ids at a time) and no transaction holds more than one batch. A second run finds
nothing more to delete.
"""

from __future__ import annotations

import bisect
import uuid
from array import array
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.db import DEFAULT_DB_ALIAS, connections, transaction

from . import registry
from .db import purge_gate
from .integrity import leaf_ids, purge_digest, seal
from .locks import LockBusy, exclusive
from .models import AuditEvent, AuditPurgeRecord, AuditSeal, LegalHold
from .recording import record

PURGE_LOCK = "observability_app.purge"
__all__ = ["LockBusy", "PurgeResult", "last_purge", "plan", "purge_expired"]


@dataclass
class PurgeResult:
    run_id: str
    dry_run: bool
    counts: dict[str, int] = field(default_factory=dict)
    cutoffs: dict[str, str] = field(default_factory=dict)
    batches: int = 0
    longest_batch_seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def _active_holds(using: str) -> tuple[set[str], set[str], set[tuple[str, str]]]:
    """(held types, held subjects, held (subject, type) pairs) of the holds in force."""
    types, subjects, pairs = set(), set(), set()
    for subject, event_type in (
        LegalHold.objects.using(using).filter(released_at__isnull=True).values_list("subject", "event_type")
    ):
        if subject and event_type:
            pairs.add((subject, event_type))
        elif subject:
            subjects.add(subject)
        elif event_type:
            types.add(event_type)
    return types, subjects, pairs


def plan(now: datetime, *, event_types: list[str] | None = None, using: str = DEFAULT_DB_ALIAS) -> dict[str, object]:
    """Event type -> cut-off datetime, or the string "lifetime"; types not purgeable now are left out."""
    from ..conf import settings

    names = event_types or [t.name for t in registry.all_types()]
    held_types, _, _ = _active_holds(using)
    out: dict[str, object] = {}
    for name in names:
        if name in held_types:
            continue
        retention = registry.retention_for(name)
        if retention == registry.PERMANENT:
            continue
        if retention == registry.ARTIFACT_LIFETIME:
            out[name] = now - timedelta(days=settings.AUDIT_ARTIFACT_GRACE_DAYS)
            continue
        out[name] = now - timedelta(days=int(retention))
    return out


def _expired(name: str, cutoff: datetime, lifetime: bool, holds: tuple, using: str):
    """The queryset of events of type ``name`` that have expired and are not held."""
    _, subjects, pairs = holds
    held_subjects = subjects | {subject for subject, event_type in pairs if event_type == name}
    queryset = AuditEvent.objects.using(using).filter(event_type=name)
    if lifetime:
        deleted = AuditEvent.objects.using(using).filter(event_type="ARTIFACT_DELETED", occurred_at__lt=cutoff)
        queryset = queryset.filter(subject__in=deleted.values("subject"))
    else:
        queryset = queryset.filter(occurred_at__lt=cutoff)
    if held_subjects:
        queryset = queryset.exclude(subject__in=held_subjects)
    return queryset


def purge_expired(
    *,
    now: datetime | None = None,
    dry_run: bool = False,
    batch_size: int | None = None,
    event_types: list[str] | None = None,
    using: str = DEFAULT_DB_ALIAS,
) -> PurgeResult:
    """Delete the events past their retention (see the module docstring). Raises :class:`LockBusy`."""
    import time

    from ..conf import settings

    now = now or datetime.now(UTC)
    batch_size = batch_size or settings.AUDIT_PURGE_BATCH_SIZE
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    for name in event_types or []:
        registry.get(name)  # UnknownEventType for a typo, before anything happens
    result = PurgeResult(run_id=uuid.uuid4().hex, dry_run=dry_run)
    with exclusive(PURGE_LOCK, using=using, wait=False):
        holds = _active_holds(using)
        cutoffs = plan(now, event_types=event_types, using=using)
        if not dry_run:
            seal(using=using)
        seal_index = _SealIndex(using)
        for name, cutoff in cutoffs.items():
            lifetime = registry.retention_for(name) == registry.ARTIFACT_LIFETIME
            result.cutoffs[name] = cutoff.isoformat()
            expired = _expired(name, cutoff, lifetime, holds, using)
            after, count = 0, 0
            while True:
                # The batch is a window of ids: its last id bounds the range the delete scans.
                window = list(expired.filter(id__gt=after).order_by("id").values_list("id", flat=True)[:batch_size])
                if not window:
                    break
                if dry_run:
                    count += len(window)
                else:
                    started = time.perf_counter()
                    count += _delete_batch(window, result.run_id, using, seal_index)
                    result.longest_batch_seconds = max(result.longest_batch_seconds, time.perf_counter() - started)
                    result.batches += 1
                after = window[-1]
            if count:
                result.counts[name] = count
        if not dry_run:
            record(
                "AUDIT_PURGED",
                {"counts": result.counts, "cutoffs": result.cutoffs, "run_id": result.run_id},
                source="command",
                using=using,
            )
    return result


class _SealIndex:
    """Which seal holds which event id, for the purge records; each seal's ids are read once per run."""

    def __init__(self, using: str) -> None:
        self.using = using
        self._ids: dict[int, array] = {}

    def ids(self, seal_id: int) -> array:
        if seal_id not in self._ids:
            blob = AuditSeal.objects.using(self.using).values_list("leaves", flat=True).get(pk=seal_id)
            self._ids[seal_id] = leaf_ids(bytes(blob))
        return self._ids[seal_id]

    def group(self, ids: list[int]) -> tuple[dict[int, list[int]], dict[int, str]]:
        """Seal id -> the given ids it holds (late events sit in a later seal than their range's)."""
        seals = list(
            AuditSeal.objects.using(self.using)
            .filter(last_id__gte=ids[0])
            .order_by("last_id")
            .values_list("id", "digest")
        )
        by_seal: dict[int, list[int]] = {}
        remaining = ids
        for seal_id, _digest in seals:
            if not remaining:
                break
            held = self.ids(seal_id)
            taken, rest = [], []
            for pk in remaining:
                index = bisect.bisect_left(held, pk)
                (taken if index < len(held) and held[index] == pk else rest).append(pk)
            if taken:
                by_seal[seal_id] = taken
            remaining = rest
        return by_seal, dict(seals)


def _delete_batch(window: list[int], run_id: str, using: str, index: _SealIndex) -> int:
    """One short transaction: open the gate, delete the window's events, record what went per seal (signed).

    The statement bounds the id range as well as listing the ids, so PostgreSQL walks just that slice of the
    primary key: the cost of a batch does not grow with the table.
    """
    from .canonical import signing_key

    key = signing_key()
    connection = connections[using]
    table = connection.ops.quote_name(AuditEvent._meta.db_table)
    with transaction.atomic(using=using), purge_gate(using):
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute(
                    f"DELETE FROM {table} WHERE id BETWEEN %s AND %s AND id = ANY(%s) RETURNING id",
                    [window[0], window[-1], window],
                )
                ids = sorted(row[0] for row in cursor.fetchall())
            else:
                for start in range(0, len(window), 500):  # SQLite's bound-parameter limit
                    chunk = window[start : start + 500]
                    cursor.execute(f"DELETE FROM {table} WHERE id IN ({', '.join(['%s'] * len(chunk))})", chunk)
                ids = list(window)
        if not ids:
            return 0
        by_seal, digests = index.group(ids)
        now = datetime.now(UTC)
        for seal_id, removed in by_seal.items():
            blob = b"".join(pk.to_bytes(8, "big") for pk in sorted(removed))
            AuditPurgeRecord.objects.using(using).create(
                run_id=run_id,
                seal_id=seal_id,
                created_at=now,
                removed=blob,
                removed_count=len(removed),
                digest=purge_digest(digests[seal_id], run_id, blob, key),
            )
    return len(ids)


def last_purge(using: str = DEFAULT_DB_ALIAS) -> datetime | None:
    """When the latest purge ran (its AUDIT_PURGED event): one indexed row, read by /metrics at scrape time."""
    return (
        AuditEvent.objects.using(using)
        .filter(event_type="AUDIT_PURGED")
        .order_by("-occurred_at")
        .values_list("occurred_at", flat=True)
        .first()
    )
