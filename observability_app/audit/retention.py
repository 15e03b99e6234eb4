"""The retention policy: which events have expired, and their removal in bounded, verifiable batches.

``manage.py purge_expired_audit`` is a doorway to :func:`purge_expired`. Each run:

1. takes the purge lock (one winner when cron starts it on several hosts; the others get :class:`LockBusy`);
2. seals every unsealed event, so what it deletes is covered by a seal;
3. per event type, computes the cut-off from the retention *in force now* (``retention_for``): permanent types are
   skipped, artifact-lifetime types go once their artifact's ARTIFACT_DELETED is older than
   ``AUDIT_ARTIFACT_GRACE_DAYS``; events under an active legal hold (by subject or by type) are never selected;
4. deletes in batches of ``batch_size`` events, each batch its own short transaction that opens the delete gate,
   selects and deletes the next expired events in one statement (keyset on id; on PostgreSQL by row address, the
   deleted ids coming back as one packed value) and writes the signed :class:`AuditPurgeRecord` of what it
   removed per seal (bulk-inserted; seals found by bisecting their id ranges, read once per run);
5. records one AUDIT_PURGED event with the per-type counts, cut-offs and run id (``/metrics`` sums these into
   ``audit_events_purged_total`` in every process, whichever host purged).

A run killed between two batches (``kill -9``, a lost host) has committed its batches and their purge records but
no AUDIT_PURGED event. The next run, under the same lock before it deletes anything, writes that AUDIT_PURGED for
it from its purge records (``"interrupted": true``, :func:`interrupted_runs`), so the AUDIT_PURGED totals and the
purge records always agree.

Memory stays flat (one batch of ids at a time, 8 bytes each) and no transaction holds more than one batch. A second
run finds nothing more to delete.
"""

from __future__ import annotations

import bisect
import sys
import time
import uuid
from array import array
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Sum
from django.db.models.expressions import RawSQL

from . import registry
from .db import purge_gate
from .digests import PurgeContext, leaf_ids, purge_digest, seal_signature_valid
from .holds import HeldScope, active_scope
from .locks import LockBusy, database_now, exclusive, holds_serialized
from .models import AuditEvent, AuditPurgeRecord, AuditSeal
from .recording import record
from .sealing import late_carriers, seal
from .verification import content_mismatches

PURGE_LOCK = "observability_app.purge"
__all__ = ["LockBusy", "PurgeResult", "TamperedTrail", "interrupted_runs", "last_purge", "plan", "purge_expired"]


@dataclass
class PurgeResult:
    run_id: str
    dry_run: bool
    counts: dict[str, int] = field(default_factory=dict)
    cutoffs: dict[str, str] = field(default_factory=dict)
    batches: int = 0
    longest_batch_seconds: float = 0.0
    #: Earlier runs that were killed after deleting (purge records, no AUDIT_PURGED): run id -> counts by type.
    reconciled: dict[str, dict[str, int]] = field(default_factory=dict)
    #: Events that looked expired but whose content no longer gives their digest (a time moved back behind the
    #: app, say): left in place for verify_audit to name. Type -> ids.
    refused: dict[str, list[int]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def plan(now: datetime, *, event_types: list[str] | None = None, using: str = DEFAULT_DB_ALIAS) -> dict[str, object]:
    """Event type -> cut-off datetime, or the string "lifetime"; types not purgeable now are left out."""
    from ..conf import settings

    names = event_types or [t.name for t in registry.all_types()]
    held_types = active_scope(using).types
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


def _expired(name: str, cutoff: datetime, lifetime: bool, holds: HeldScope, using: str):
    """The queryset of events of type ``name`` that have expired and are not held."""
    held_subjects = holds.subjects_for(name)
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
    from ..conf import settings

    now = now or datetime.now(UTC)
    batch_size = batch_size or settings.AUDIT_PURGE_BATCH_SIZE
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    for name in event_types or []:
        registry.get(name)  # UnknownEventType for a typo, before anything happens
    result = PurgeResult(run_id=uuid.uuid4().hex, dry_run=dry_run)
    with exclusive(PURGE_LOCK, using=using, wait=False):
        result.reconciled = interrupted_runs(using)
        if not dry_run:
            for old_run, counts in result.reconciled.items():
                record(
                    "AUDIT_PURGED",
                    {
                        "counts": counts,
                        "cutoffs": {},
                        "run_id": old_run,
                        "interrupted": True,
                        "reconciled_by": result.run_id,
                    },
                    source="command",
                    using=using,
                )
        cutoffs = plan(now, event_types=event_types, using=using)
        if not dry_run:
            seal(using=using)
        seals = _SealMap(using) if not dry_run else None
        for name, cutoff in cutoffs.items():
            lifetime = registry.retention_for(name) == registry.ARTIFACT_LIFETIME
            result.cutoffs[name] = cutoff.isoformat()
            if dry_run:
                count = _expired(name, cutoff, lifetime, active_scope(using), using).count()
            else:
                # First the events a seal written before the cut-off vouches for (up to its last id), then the few
                # others, each checked against its digest first (see _tampered_candidates).
                boundary = _vouched_up_to(cutoff, using)
                count, after, refused = 0, 0, None
                for upper in (boundary, None):
                    if upper is None:
                        refused = _tampered_candidates(name, cutoff, lifetime, boundary, using)
                        if refused:
                            result.refused[name] = refused
                    while True:
                        started = time.perf_counter()
                        removed = _delete_batch(
                            name, cutoff, lifetime, after, batch_size, result.run_id, using, seals, refused, upper
                        )
                        if not removed:
                            break
                        elapsed = time.perf_counter() - started
                        result.longest_batch_seconds = max(result.longest_batch_seconds, elapsed)
                        result.batches += 1
                        count += len(removed)
                        after = removed[-1]
                    after = max(after, boundary)
            if count:
                result.counts[name] = count
        if not dry_run:
            payload: dict[str, Any] = {"counts": result.counts, "cutoffs": result.cutoffs, "run_id": result.run_id}
            if result.refused:
                payload["refused"] = {name: len(ids) for name, ids in result.refused.items()}
            record(
                "AUDIT_PURGED",
                payload,
                source="command",
                using=using,
            )
    return result


class TamperedTrail(Exception):
    """A seal the purge relies on does not verify: deleting on its word would launder whatever was changed."""


def _vouched_up_to(cutoff: datetime, using: str) -> int:
    """The last event id of the newest seal written before ``cutoff`` (0 without one).

    Those events were in the trail before the cut-off, so an old time on them is not news. The seal's time is in
    its keyed digest (version 2), which must verify: else :class:`TamperedTrail`, and nothing is deleted.
    """
    from .canonical import signing_key

    found = AuditSeal.objects.using(using).filter(created_at__lt=cutoff).order_by("-id").first()
    if found is None:
        return 0
    if found.version >= 2 and not seal_signature_valid(found, signing_key()):
        raise TamperedTrail(f"seal {found.pk} does not verify: run verify_audit before purging")
    return found.last_id


def _tampered_candidates(name: str, cutoff: datetime, lifetime: bool, boundary: int, using: str) -> list[int]:
    """Expired-looking events of ``name`` above ``boundary`` whose content no longer gives their digest.

    An event above the last id a pre-cut-off seal vouches for, with a time before the cut-off, was written after the
    cut-off with an old time: backfilled, or moved back in time behind the app's back so that the purge erases it.
    Those (rare in a trail that expires by age; read through the (event type, time) index, after the vouched-for
    ones are gone) have their content checked; the ones that fail are left for verify_audit to name.
    """
    from .canonical import signing_key

    key = signing_key()
    everything = HeldScope(frozenset(), frozenset(), frozenset())
    suspects = sorted(
        _expired(name, cutoff, lifetime, everything, using).filter(id__gt=boundary).values_list("id", flat=True)
    )
    bad: list[int] = []
    for start in range(0, len(suspects), 2000):
        bad += content_mismatches(suspects[start : start + 2000], using=using, key=key)
    return bad


def interrupted_runs(using: str = DEFAULT_DB_ALIAS) -> dict[str, dict[str, int]]:
    """Runs that deleted events (their purge records committed batch by batch) but never wrote their AUDIT_PURGED
    event: killed, or their host lost, between a batch and the end. Run id -> events removed by type.

    Read under the purge lock, so a run still going is never taken for one. One anti-join over the purge records
    (AUDIT_PURGED's subject is its run id, indexed).
    """
    finished = AuditEvent.objects.using(using).filter(event_type="AUDIT_PURGED").values("subject")
    rows = (
        AuditPurgeRecord.objects.using(using)
        .exclude(run_id__in=finished)
        .values_list("run_id", "event_type")
        .annotate(removed=Sum("removed_count"))
        .order_by("run_id", "event_type")
    )
    out: dict[str, dict[str, int]] = {}
    for run_id, event_type, removed in rows:
        out.setdefault(run_id, {})[event_type or "unknown"] = int(removed or 0)
    return out


class _SealMap:
    """Which seal holds which event id, for the purge records, read once per run (after the run's own seal).

    Seals cover consecutive id ranges, so an id's seal is found by bisecting the range ends (three 8-byte arrays:
    a million seals take 24 MB); their digests are read per batch, for the seals the batch touches. The exceptions
    are the late events (committed after their range was sealed, carried by a later seal): their ids come from the
    first ``late_count`` leaves of the seals that have any (leaves are sorted by id, late ones below ``first_id``),
    and only those leading bytes are read.
    """

    def __init__(self, using: str) -> None:
        self.using = using
        self.seal_ids, self.first_ids, self.last_ids = array("q"), array("q"), array("q")
        seals = AuditSeal.objects.using(using).order_by("last_id").values_list("id", "first_id", "last_id")
        for seal_id, first_id, last_id in seals.iterator(chunk_size=10_000):
            self.seal_ids.append(seal_id)
            self.first_ids.append(first_id)
            self.last_ids.append(last_id)
        self.late: dict[int, int] = {}  # event id -> the seal that carried it late
        for seal_id, blob in late_carriers(using):
            for pk in leaf_ids(blob):
                self.late[pk] = seal_id
        self.late_ids = array("q", sorted(self.late))

    def digests(self, seal_ids: Any) -> dict[int, str]:
        return dict(AuditSeal.objects.using(self.using).filter(id__in=list(seal_ids)).values_list("id", "digest"))

    def group(self, removed: array) -> dict[int, array]:
        """Seal id -> the sorted ids of ``removed`` (sorted) that it holds; ids after the last seal hold none."""
        by_seal: dict[int, array] = {}
        low, high = removed[0], removed[-1]
        index = bisect.bisect_left(self.last_ids, low)
        while index < len(self.last_ids) and self.first_ids[index] <= high:
            start = bisect.bisect_left(removed, self.first_ids[index])
            stop = bisect.bisect_right(removed, self.last_ids[index])
            if stop > start:
                by_seal[self.seal_ids[index]] = removed[start:stop]
            index += 1
        if self.late_ids:
            late = self.late_ids[bisect.bisect_left(self.late_ids, low) : bisect.bisect_right(self.late_ids, high)]
            for pk in late:
                position = bisect.bisect_left(removed, pk)
                if position < len(removed) and removed[position] == pk:
                    self._move(by_seal, pk, self.late[pk])
        return by_seal

    def _move(self, by_seal: dict[int, array], pk: int, carrier: int) -> None:
        for seal_id, ids in by_seal.items():
            position = bisect.bisect_left(ids, pk)
            if position < len(ids) and ids[position] == pk:
                del ids[position]
                if not ids:
                    del by_seal[seal_id]
                break
        target = by_seal.setdefault(carrier, array("q"))
        bisect.insort(target, pk)


def _delete_batch(
    name: str,
    cutoff: datetime,
    lifetime: bool,
    after: int,
    size: int,
    run_id: str,
    using: str,
    seals: _SealMap,
    refused: list[int] | None = None,
    upper: int | None = None,
) -> array:
    """One short transaction: open the gate, delete the next ``size`` expired events after id ``after``, and record
    what went per seal (signed). Returns the removed ids, sorted.

    The legal holds in force are read again by every batch, inside a transaction serialized against placing and
    lifting holds (:func:`~observability_app.audit.locks.holds_serialized`): a hold placed while a purge runs
    protects its events from the next batch on, and one placed during a batch waits until that batch commits.

    One statement selects and deletes: ``DELETE ... WHERE id IN (<the expired query> ORDER BY id LIMIT size)``,
    walking the ``(event_type, id)`` index from ``after``, so a batch costs the same at any depth of the table.
    On PostgreSQL the deleted ids come back as one ``bytea`` of 8-byte big-endian ids in id order (the format of
    :attr:`AuditPurgeRecord.removed`): no per-row Python at all.
    """
    from .canonical import signing_key

    key = signing_key()
    connection = connections[using]
    table = connection.ops.quote_name(AuditEvent._meta.db_table)
    postgres = connection.vendor == "postgresql"
    with holds_serialized(using=using, shared=True), purge_gate(using):
        holds = active_scope(using)
        if name in holds.types:  # a hold on the whole type placed since the run began
            return array("q")
        window = _expired(name, cutoff, lifetime, holds, using).filter(id__gt=after).order_by("id")
        if upper is not None:
            window = window.filter(id__lte=upper)
        if refused:
            window = window.exclude(id__in=refused)
        if postgres:  # the rows' physical addresses: the delete then reads no index at all
            window = window.annotate(row_address=RawSQL("ctid", ())).values("row_address")[:size]
        else:
            window = window.values("id")[:size]
        inner, params = window.query.get_compiler(using=using).as_sql()
        with connection.cursor() as cursor:
            if postgres:
                cursor.execute(
                    f"WITH gone AS (DELETE FROM {table} WHERE ctid = ANY(ARRAY({inner})) RETURNING id, subject)"
                    " SELECT string_agg(int8send(id), ''::bytea ORDER BY id), array_agg(DISTINCT subject) FROM gone",
                    params,
                )
                blob, subjects = cursor.fetchone()
                removed = array("q", bytes(blob) if blob else b"")
                if _LITTLE_ENDIAN:
                    removed.byteswap()
            elif connection.features.can_return_columns_from_insert:  # SQLite 3.35+: DELETE ... RETURNING too
                cursor.execute(f"DELETE FROM {table} WHERE id IN ({inner}) RETURNING id, subject", params)
                rows = cursor.fetchall()
                removed = array("q", sorted(row[0] for row in rows))
                subjects = [row[1] for row in rows]
            else:
                cursor.execute(inner, params)
                removed = array("q", sorted(row[0] for row in cursor.fetchall()))
                subjects = []
                for start in range(0, len(removed), 500):  # SQLite's bound-parameter limit
                    chunk = removed[start : start + 500].tolist()
                    marks = ", ".join(["%s"] * len(chunk))
                    cursor.execute(f"SELECT DISTINCT subject FROM {table} WHERE id IN ({marks})", chunk)
                    subjects.extend(row[0] for row in cursor.fetchall())
                    cursor.execute(f"DELETE FROM {table} WHERE id IN ({marks})", chunk)
        if not removed:
            return removed
        now = database_now(using)
        records = []
        by_seal = seals.group(removed)
        digests = seals.digests(by_seal)
        # The batch's distinct subjects go on its first record (signed with it): verification checks them against
        # the legal holds in force at ``now`` (verification.hold_problems).
        batch_subjects = tuple(sorted({subject for subject in subjects or () if subject is not None}))
        for index, (seal_id, ids) in enumerate(by_seal.items()):
            blob = _big_endian(ids)
            context = PurgeContext(name, now, batch_subjects if index == 0 else ())
            records.append(
                AuditPurgeRecord(
                    run_id=run_id,
                    seal_id=seal_id,
                    created_at=now,
                    removed=blob,
                    removed_count=len(ids),
                    digest=purge_digest(digests[seal_id], run_id, blob, key, context),
                    event_type=name,
                    subjects=list(context.subjects),
                    version=2,
                )
            )
        AuditPurgeRecord.objects.using(using).bulk_create(records)
    return removed


_LITTLE_ENDIAN = sys.byteorder == "little"


def _big_endian(ids: array) -> bytes:
    out = array("q", ids)
    if _LITTLE_ENDIAN:
        out.byteswap()
    return out.tobytes()


def last_purge(using: str = DEFAULT_DB_ALIAS) -> datetime | None:
    """When the latest purge ran (its AUDIT_PURGED event): one indexed row, read by /metrics at scrape time."""
    return (
        AuditEvent.objects.using(using)
        .filter(event_type="AUDIT_PURGED")
        .order_by("-occurred_at")
        .values_list("occurred_at", flat=True)
        .first()
    )
