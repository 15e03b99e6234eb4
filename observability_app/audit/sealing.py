"""Sealing: :func:`seal` writes chained, keyed :class:`AuditSeal` rows over the events not sealed yet, anchored by
checkpoints outside the database, and picks up late commits however many seals passed (docs/audit-integrity.md).
"""

from __future__ import annotations

import bisect
import hmac
import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.db import DEFAULT_DB_ALIAS
from django.db.models import BinaryField, F
from django.db.models.functions import Substr

from . import checkpoints
from .canonical import (
    InvalidAuditEvent,
    signing_key,
    stored_event_digest,
)
from .checkpoints import checkpoint_of
from .db import snapshot as _snapshot
from .digests import LEAF, iter_leaves, leaf_ids, pack_leaves, seal_digest, seal_signature_valid
from .locks import exclusive, writers_in_progress
from .models import AuditEvent, AuditSeal
from .problems import Problem

__all__ = ["SEAL_LOCK", "SealResult", "UnanchoredChain", "event_seal_status", "late_carriers", "seal", "seal_for"]


SEAL_LOCK = "observability_app.seal"


logger = logging.getLogger("observability_app.audit.integrity")


@dataclass
class SealResult:
    seals: list[AuditSeal] = field(default_factory=list)
    events: int = 0
    late: int = 0


def seal(*, using: str = DEFAULT_DB_ALIAS, max_events: int | None = None, now: datetime | None = None) -> SealResult:
    """Seal every committed event not sealed yet; returns what was written. One sealer at a time."""
    from ..conf import settings

    max_events = max_events or settings.AUDIT_SEAL_MAX_EVENTS
    result = SealResult()
    with exclusive(SEAL_LOCK, using=using, wait=True):
        key = signing_key()
        _refuse_unanchored_chain(using, key)
        try:
            with _snapshot(using, read_only=False):
                _seal_locked(using, key, max_events, now, result)
        except BaseException:
            result.seals, result.events, result.late = [], 0, 0  # rolled back: nothing was sealed
            raise
        # After the commit (a checkpoint must never name a seal that is not there); a crash before this line
        # leaves the file one seal behind, which verification accepts: the chain still extends it.
        for new in result.seals:
            checkpoint = checkpoint_of(new, key)
            for sink in checkpoints.sinks():
                sink.append(checkpoint)
    return result


class UnanchoredChain(Exception):
    """The database's seal chain does not hold the latest checkpoint: sealing on would sign a tampered trail."""


def _refuse_unanchored_chain(using: str, key: bytes | None) -> None:
    problems = _checkpoint_problems(using, key)
    if problems:
        raise UnanchoredChain("; ".join(problem.detail for problem in problems))


def _checkpoint_problems(using: str, key: bytes | None) -> list[Problem]:
    """Does the database's chain still hold the latest checkpoint of the file outside it?"""
    sink = checkpoints.reference_file()
    if sink is None:
        return []
    latest, unreadable = sink.latest()
    problems = [Problem("checkpoint_forged", None, text) for text in unreadable]
    if latest is None:
        return problems
    if not latest.valid(key):
        detail = f"the latest checkpoint (seal {latest.seal_id}) does not verify"
        problems.append(Problem("checkpoint_forged", None, detail))
        return problems
    row = AuditSeal.objects.using(using).filter(pk=latest.seal_id).values_list("last_id", "digest").first()
    if row is None:
        newest = AuditSeal.objects.using(using).order_by("-id").values_list("id", flat=True).first()
        problems.append(
            Problem(
                "checkpoint_missing",
                None,
                f"seal {latest.seal_id} (events up to {latest.last_id}) is in the checkpoint file but not in the"
                f" database, whose newest seal is {newest if newest is not None else 'none: the trail was wiped'}:"
                " seals were deleted, the trail was replaced, or an older backup was restored",
            )
        )
    elif row != (latest.last_id, latest.digest):
        problems.append(
            Problem(
                "checkpoint_mismatch",
                None,
                f"seal {latest.seal_id} in the database is not the one in the checkpoint file"
                f" (last event {row[0]} vs {latest.last_id}): the seal chain was rewritten",
            )
        )
    return problems


def _seal_locked(using: str, key: bytes | None, max_events: int, now: datetime | None, result: SealResult) -> None:
    """Write the seals of one call, all read in one snapshot (the caller's transaction) and sharing one ``watch``:
    ``{"after": the newest seal before this call, "writers": the writers' lock holders listed after the snapshot}``.
    """
    late = _late_events(using)
    previous = AuditSeal.objects.using(using).order_by("-id").first()
    after = previous.pk if previous else 0
    watch: dict[str, Any] | None = None
    while True:
        start = previous.last_id + 1 if previous else 1
        rows = list(
            AuditEvent.objects.using(using)
            .filter(id__gte=start)
            .order_by("id")
            .values_list("id", "digest")[:max_events]
        )
        if not rows and not late:
            return
        if watch is None:  # listed after the snapshot (taken by the first read above): see _rescan_start
            watch = {"after": after, "writers": writers_in_progress(using)}
        leaves = pack_leaves(rows + late)
        # The range starts where the previous one ended, not at the first event read: ids below that event may
        # still be in open transactions, and the next seal looks for late commits inside this range only.
        first_id = start
        last_id = rows[-1][0] if rows else start - 1
        count = len(rows) + len(late)
        prev_digest = previous.digest if previous else ""
        created_at = now or datetime.now(UTC)
        new = AuditSeal.objects.using(using).create(
            created_at=created_at,
            first_id=first_id,
            last_id=last_id,
            event_count=count,
            late_count=len(late),
            leaves=leaves,
            previous_digest=prev_digest,
            digest=seal_digest(prev_digest, first_id, last_id, count, leaves, key, (watch, created_at)),
            keyed=bool(key),
            watch=watch,
            version=2,
        )
        result.seals.append(new)
        previous = new
        result.events += count
        result.late += len(late)
        late = []
        if len(rows) < max_events:
            return


def _late_events(using: str) -> list[tuple[int, str]]:
    """Committed events inside sealed ranges that no seal holds yet: they committed after the seal that read their
    range ("late"). Only the ranges that may still receive one are read (:func:`_rescan_start`)."""
    seals = AuditSeal.objects.using(using).order_by("-id").values_list("id", "first_id", "last_id", "watch")
    newest_first = seals.iterator(chunk_size=50)
    newest = next(newest_first, None)
    if newest is None:
        return []
    start = _rescan_start(itertools.chain([newest], newest_first))
    if start is None:  # not reached: the chain holds ``newest``
        return []
    first_id, earliest_seal = start
    last_id = newest[2]
    sealed: set[int] = set()
    for blob in AuditSeal.objects.using(using).filter(id__gte=earliest_seal).values_list("leaves", flat=True):
        sealed.update(leaf_ids(bytes(blob)))
    return [
        (pk, digest)
        for pk, digest in AuditEvent.objects.using(using)
        .filter(id__gte=first_id, id__lte=last_id)
        .values_list("id", "digest")
        .iterator(chunk_size=10_000)
        if pk not in sealed
    ]


def _groups(seals_newest_first: Iterator[tuple[Any, ...]]) -> Iterator[tuple[int, int, frozenset[str]]]:
    """The seal calls, newest first: ``(lowest first_id, earliest seal id, writers)`` for each run of seals that
    share one ``watch`` (one :func:`seal` call). A version 1 seal (no watch) is a call of its own, with no writers."""
    current: tuple[Any, int, int, frozenset[str]] | None = None
    for seal_id, first_id, _last_id, watch in seals_newest_first:
        group = watch.get("after") if isinstance(watch, dict) else ("v1", seal_id)
        writers = frozenset(watch.get("writers") or ()) if isinstance(watch, dict) else frozenset()
        if current is not None and current[0] == group:
            current = (group, min(current[1], first_id), seal_id, current[3])
            continue
        if current is not None:
            yield current[1], current[2], current[3]
        current = (group, first_id, seal_id, writers)
    if current is not None:
        yield current[1], current[2], current[3]


def _rescan_start(seals_newest_first: Iterator[tuple[Any, ...]]) -> tuple[int, int] | None:
    """Where late events can still appear: ``(first event id, earliest seal id)``, or None without seals.

    A late event was written by a transaction that held the writers' lock before the snapshot of the call that
    sealed past its id. Either it ended before that call listed the lock's holders (then it committed before the
    next call's snapshot: so the **last call's** ranges are always read again), or it is in that call's
    ``writers`` and stays in the ``writers`` of every later call until it ends. It ended, at the latest, just
    after the last call listed it, and so it is in the writers of one of the **last two calls**; every call it was
    in progress for lists it, back to the one whose range holds its event. So: the last call, then back through
    every call whose writers meet the last two calls' writers.
    """
    groups = _groups(seals_newest_first)
    last = next(groups, None)
    if last is None:
        return None
    first_id, earliest, suspects = last
    candidate = next(groups, None)
    if candidate is not None:
        suspects = suspects | candidate[2]
    while candidate is not None and candidate[2] & suspects:
        first_id, earliest = candidate[0], candidate[1]
        candidate = next(groups, None)
    return first_id, earliest


def late_carriers(using: str) -> Iterator[tuple[int, bytes]]:
    """``(seal id, its late leaves)`` for every seal that carried late events: only the leading ``late_count``
    leaves are read (late ones sort first, below the seal's ``first_id``), not the whole blob."""
    carriers = _with_late_leaves(AuditSeal.objects.using(using).filter(late_count__gt=0)).values_list(
        "id", "late_leaves"
    )
    for seal_id, blob in carriers.iterator(chunk_size=100):
        yield seal_id, bytes(blob)


def seal_for(event_id: int, using: str = DEFAULT_DB_ALIAS) -> AuditSeal | None:
    """The seal that holds ``event_id``: its range's seal, else the later seal that carried it late (however many
    seals later: only seals that carry late events are read, and only their leading, late, leaves)."""
    seals = AuditSeal.objects.using(using)
    home = seals.filter(first_id__lte=event_id, last_id__gte=event_id).order_by("id").first()
    if home is not None and _holds(bytes(home.leaves), event_id):
        return home
    carriers = _with_late_leaves(seals.filter(late_count__gt=0, first_id__gt=event_id)).order_by("id")
    if home is not None:
        carriers = carriers.filter(id__gt=home.pk)
    for seal_id, blob in carriers.values_list("id", "late_leaves").iterator(chunk_size=20):
        if _holds(bytes(blob), event_id):
            return seals.get(pk=seal_id)
    return None


def _holds(blob: bytes, event_id: int) -> bool:
    ids = leaf_ids(blob)
    index = bisect.bisect_left(ids, event_id)
    return index < len(ids) and ids[index] == event_id


def _with_late_leaves(seals: Any) -> Any:
    """``seals`` annotated with ``late_leaves``: the leading ``late_count`` leaves only (late ones sort first)."""
    return seals.annotate(late_leaves=Substr("leaves", 1, F("late_count") * LEAF, output_field=BinaryField()))


def event_seal_status(event: AuditEvent) -> dict[str, Any]:
    """For the admin's detail page: is the event sealed, by which seal, and does everything still match?"""
    using = event._state.db or DEFAULT_DB_ALIAS
    key = signing_key()
    try:
        content_ok = hmac.compare_digest(stored_event_digest(event, key), event.digest)
    except InvalidAuditEvent:
        content_ok = False
    found = seal_for(event.pk, using)
    if found is None:
        summary = "not sealed yet" if content_ok else "TAMPERED"
        return {"sealed": False, "content_matches_digest": content_ok, "summary": summary}
    sealed_digest = dict(iter_leaves(bytes(found.leaves))).get(event.pk)
    seal_ok = seal_signature_valid(found, key)
    matches = sealed_digest is not None and sealed_digest.hex() == event.digest
    return {
        "sealed": True,
        "seal_id": found.pk,
        "sealed_at": found.created_at,
        "seal_digest": found.digest,
        "seal_signature_valid": seal_ok,
        "content_matches_digest": content_ok,
        "digest_matches_seal": matches,
        "summary": "sealed and intact" if (seal_ok and matches and content_ok) else "TAMPERED",
    }
