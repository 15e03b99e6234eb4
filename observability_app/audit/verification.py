"""Verification: :func:`verify` reads the trail in one snapshot and names every problem (:mod:`.problems`):
full or incremental from the last passing run, the legal-hold cross-check, and the content check the purge asks.
"""

from __future__ import annotations

import bisect
import contextlib
import hmac
import queue
import random
import struct
import sys
import threading
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.models import Q
from django.dispatch import Signal

from .canonical import (
    DIGEST_FIELDS,
    RowDigester,
    format_time,
    signing_key,
    values_text,
)
from .db import snapshot as _snapshot
from .digests import (
    LEAF,
    PurgeContext,
    _seal_v2,
    iter_leaves,
    leaf_ids,
    purge_digest,
    seal_digest,
    verification_digest,
)
from .models import AuditEvent, AuditPurgeRecord, AuditSeal, AuditVerification, LegalHold
from .problems import Problem
from .sealing import _checkpoint_problems, _rescan_start, late_carriers

__all__ = [
    "DEFAULT_SAMPLE_SEALS",
    "Report",
    "connection_vendor",
    "content_mismatches",
    "hold_problems",
    "last_verification",
    "verification_finished",
    "verify",
]


#: Sent after every :func:`verify` run with ``report`` and ``using``: the metrics module counts failures from it
#: (the audit package never imports metrics).
verification_finished = Signal()


@dataclass
class Report:
    events_checked: int = 0
    seals_checked: int = 0
    unsealed: int = 0
    #: The oldest event not sealed yet (its id and when it was written), and when the newest seal was written:
    #: the unsealed tail is what a database attacker can still change unseen, so its size and age are reported.
    unsealed_oldest_id: int | None = None
    unsealed_oldest_at: datetime | None = None
    last_seal_at: datetime | None = None
    #: False for an incremental run: ``sampled`` older seals were checked in full beside everything since the
    #: baseline, verification run ``baseline`` (see :func:`verify`).
    full: bool = True
    baseline: int | None = None
    sampled: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _purged_ids(
    using: str,
    key: bytes | None,
    seal_digests: dict[int, str],
    report: Report,
    batches: list[tuple[int, PurgeContext]],
    scope: _Scope | None = None,
) -> dict[int, array]:
    """Seal id -> sorted ids its purge records say were removed (records that do not verify are reported); the
    verified version 2 records' contexts are appended to ``batches`` for the legal-hold cross-check.

    Held as 8-byte arrays (a million purged ids: 8 MB), decoded from the records in C.
    """
    removed: dict[int, array] = {}
    records = AuditPurgeRecord.objects.using(using).order_by("id")
    if scope is not None:  # incremental: the records since the baseline, and those of the seals checked in full
        checked_seals = [seal_id for seal_id in seal_digests if scope.checks(seal_id)]
        records = records.filter(Q(id__gt=scope.after_purge) | Q(seal_id__in=checked_seals))
    columns = ("id", "seal_id", "run_id", "removed", "digest", "version", "event_type", "subjects", "created_at")
    for pk, seal_id, run_id, blob, digest, version, event_type, subjects, created_at in records.values_list(
        *columns
    ).iterator(chunk_size=100):
        blob = bytes(blob)
        seal_digest_ = seal_digests.get(seal_id)
        context = None
        if version >= 2:
            context = PurgeContext(event_type, created_at, tuple(subjects if isinstance(subjects, list) else ()))
        expected = purge_digest(seal_digest_ or "", run_id, blob, key, context)
        if seal_digest_ is None or not hmac.compare_digest(expected, digest):
            report.problems.append(Problem("purge_forged", None, f"purge record {pk} does not verify"))
            continue
        if context is not None:
            batches.append((pk, context))
        removed.setdefault(seal_id, array("q")).frombytes(blob[: len(blob) - len(blob) % 8])
    for seal_id, ids in removed.items():
        if _LITTLE_ENDIAN:
            ids.byteswap()  # stored big-endian
        removed[seal_id] = array("q", sorted(ids))
    return removed


_LITTLE_ENDIAN = sys.byteorder == "little"


def _contains(ids: array | None, value: int) -> bool:
    if not ids:
        return False
    index = bisect.bisect_left(ids, value)
    return index < len(ids) and ids[index] == value


#: Older seals an incremental run re-checks in full, chosen at random (unpredictable to an attacker), beside all
#: that is new since its baseline. 16 seals of 10,000 events: 160,000 events, a second or two.
DEFAULT_SAMPLE_SEALS = 16


@dataclass(frozen=True)
class _Scope:
    """An incremental run: seals after ``after_seal`` and the ``sample`` in full; purge records after
    ``after_purge`` and those of the checked seals."""

    baseline: int
    after_seal: int
    after_purge: int
    sample: frozenset[int]

    def checks(self, seal_id: int) -> bool:
        """Is this seal checked in full by the run?"""
        return seal_id > self.after_seal or seal_id in self.sample


def verify(
    *,
    using: str = DEFAULT_DB_ALIAS,
    chunk_size: int = 2000,
    record_run: bool = True,
    full: bool = False,
    sample: int = DEFAULT_SAMPLE_SEALS,
) -> Report:
    """Check the events against their digests and seals, the seals against their chain and the chain against the
    checkpoint file; name each problem.

    Incremental by default: from the latest run that passed (its row is keyed with the signing key and names the
    seal it verified through, which must still be there with the same digest), it checks every seal and event since,
    every purge record since, and ``sample`` older seals chosen at random, plus, always, the whole chain's links
    (seal rows only) and the checkpoint file. ``full=True`` (``verify_audit --full``), the first run, a run after a
    failed one and any run without a signing key check everything.

    Everything is read in one snapshot (REPEATABLE READ on PostgreSQL, one read transaction on SQLite), so a purge,
    a seal or writers running at the same time can never make a consistent trail look tampered.
    """
    if sample < 0:
        raise ValueError(f"sample must be 0 or more, got {sample}")
    started = datetime.now(UTC)
    key = signing_key()
    report = Report()
    with _snapshot(using):
        scope = None if full or not key else _incremental_scope(using, key, sample, report)
        _verify_in_snapshot(using, chunk_size, key, report, scope)
        newest = AuditSeal.objects.using(using).order_by("-id").values_list("id", "digest", "created_at").first()
        through_purge = AuditPurgeRecord.objects.using(using).order_by("-id").values_list("id", flat=True).first()
        report.last_seal_at = newest[2] if newest else None
        if report.unsealed_oldest_id is not None:
            report.unsealed_oldest_at = (
                AuditEvent.objects.using(using)
                .filter(pk=report.unsealed_oldest_id)
                .values_list("occurred_at", flat=True)
                .first()
            )
    if record_run:
        through_seal, through_digest = (newest[0], newest[1]) if newest and report.ok else (None, "")
        summary = {
            "by_kind": _by_kind(report),
            "unsealed": report.unsealed,
            "unsealed_oldest_at": report.unsealed_oldest_at.isoformat() if report.unsealed_oldest_at else None,
            "through_purge": through_purge or 0,
            "baseline": report.baseline,
            "sampled": report.sampled,
        }
        AuditVerification.objects.using(using).create(
            started_at=started,
            finished_at=datetime.now(UTC),
            events_checked=report.events_checked,
            seals_checked=report.seals_checked,
            problems=len(report.problems),
            summary=summary,
            full=report.full,
            through_seal=through_seal,
            through_digest=through_digest,
            digest=verification_digest(started, through_seal, through_digest, through_purge or 0, key),
        )
    verification_finished.send(sender=Report, report=report, using=using)
    return report


def _incremental_scope(using: str, key: bytes, sample: int, report: Report) -> _Scope | None:
    """The baseline of an incremental run, or None (a full run): the latest run that passed, whose row verifies and
    whose "through" seal is still there unchanged. A row that does not verify is itself a problem."""
    latest = AuditVerification.objects.using(using).order_by("-id").first()
    if latest is None or latest.problems or latest.through_seal is None:
        return None  # first run, or the last one failed: check everything again
    through_purge = latest.summary.get("through_purge", 0) if isinstance(latest.summary, dict) else 0
    expected = verification_digest(latest.started_at, latest.through_seal, latest.through_digest, through_purge, key)
    if not hmac.compare_digest(expected, latest.digest):
        report.problems.append(
            Problem("verification_forged", None, f"verification run {latest.pk} does not verify: checking everything")
        )
        return None
    still = AuditSeal.objects.using(using).filter(pk=latest.through_seal).values_list("digest", flat=True).first()
    if still != latest.through_digest:
        return None  # the chain changed under the baseline: the full run names how
    older = list(AuditSeal.objects.using(using).filter(id__lte=latest.through_seal).values_list("id", flat=True))
    chosen = random.SystemRandom().sample(older, min(sample, len(older)))
    return _Scope(latest.pk, latest.through_seal, int(through_purge or 0), frozenset(chosen))


def _verify_in_snapshot(
    using: str, chunk_size: int, key: bytes | None, report: Report, scope: _Scope | None = None
) -> None:
    report.problems.extend(_checkpoint_problems(using, key))
    seal_rows = list(
        AuditSeal.objects.using(using)
        .order_by("id")
        .values_list(
            "id", "first_id", "last_id", "event_count", "previous_digest", "digest", "watch", "version", "created_at"
        )
    )

    def checked(seal_id: int) -> bool:
        return scope is None or scope.checks(seal_id)

    if scope is not None:
        report.full, report.baseline, report.sampled = False, scope.baseline, len(scope.sample)
    batches: list[tuple[int, PurgeContext]] = []
    purged = _purged_ids(using, key, {row[0]: row[5] for row in seal_rows}, report, batches, scope)
    report.problems.extend(hold_problems(using, batches))
    # Pass 1 over the seals: the chain's links for every seal (rows only); signature, leaf count and late leaves
    # for the checked ones (one blob in memory at a time). The other seals' late leaves (their leading bytes only)
    # are read too, so an event they carried is not taken for an inserted one.
    late: dict[int, tuple[bytes, int]] = {}
    previous_digest, previous_last = "", 0
    for seal_id, first_id, last_id, count, prev, digest, watch, version, created_at in seal_rows:
        if prev != previous_digest and not previous_digest:
            report.problems.append(
                Problem("seals_missing", None, f"the chain starts at seal {seal_id}, whose predecessors are gone")
            )
        elif prev != previous_digest or first_id != previous_last + 1:
            report.problems.append(Problem("chain_broken", None, f"seal {seal_id} does not follow the seal before it"))
        previous_digest, previous_last = digest, last_id
        if not checked(seal_id):
            continue
        blob = _blob(using, seal_id)
        report.seals_checked += 1
        signed = seal_digest(prev, first_id, last_id, count, blob, key, _seal_v2(version, watch, created_at))
        if not hmac.compare_digest(signed, digest):
            report.problems.append(Problem("seal_forged", None, f"seal {seal_id} digest does not verify"))
        if len(blob) != count * LEAF:
            report.problems.append(Problem("seal_forged", None, f"seal {seal_id} holds {len(blob) // LEAF} leaves"))
        for pk, leaf_digest in iter_leaves(blob):
            if pk < first_id:
                late[pk] = (leaf_digest, seal_id)
    carried_elsewhere: set[int] = set()
    if scope is not None:
        for seal_id, blob in late_carriers(using):
            if not checked(seal_id):
                carried_elsewhere.update(leaf_ids(blob))
    last_sealed = seal_rows[-1][2] if seal_rows else 0
    # Unsealed events at or above this id may still be late commits the next seal takes (see _rescan_start).
    rescan = _rescan_start((row[0], row[1], row[2], row[6]) for row in reversed(seal_rows))
    last_seal_first = rescan[0] if rescan else 1
    # Pass 2: the events in id order, merged with each seal's in-range leaves (one seal's leaves at a time); an
    # incremental run walks each run of consecutive checked seals (the last one open-ended: the unsealed tail).
    seen_late: set[int] = set()
    row_digests = RowDigester(key)
    segments = _segments([row for row in seal_rows if checked(row[0])], seal_rows)
    for low, high, segment_seals in segments:
        leaves = _SealLeaves(using, segment_seals, purged, report)
        lpk, leaf, upcoming, last_id = _BEYOND, b"", iter(()), -1
        for rows in _stream_chunks(using, chunk_size, low, high):
            report.events_checked += len(rows)
            for row, content in zip(rows, row_digests(rows), strict=True):
                pk = row[0]
                if pk > last_id or pk > lpk:  # past this seal, or leaves of it whose event is gone
                    lpk, leaf, upcoming, last_id = leaves.advance(pk, lpk, leaf)
                stored = row[-1]
                if pk == lpk:
                    if content != stored:
                        report.problems.append(Problem("changed", pk, "content does not give its stored digest"))
                    elif leaf.hex() != stored:
                        report.problems.append(Problem("changed", pk, "digest differs from the sealed one"))
                    lpk, leaf = next(upcoming, _NO_LEAF)
                elif pk not in carried_elsewhere:
                    _check_unexpected(
                        pk, stored, content == stored, late, seen_late, report, last_sealed, last_seal_first
                    )
        leaves.advance(_BEYOND, lpk, leaf)  # the segment's leaves left without their event
    # Late leaves whose event is gone (those carried by checked seals; an event outside the streamed ranges is
    # looked up by id).
    missing = [pk for pk in late if pk not in seen_late]
    present = (
        set(AuditEvent.objects.using(using).filter(pk__in=missing).values_list("pk", flat=True)) if scope else set()
    )
    for pk in missing:
        seal_id = late[pk][1]
        if pk not in present and not _contains(purged.get(seal_id), pk):
            report.problems.append(Problem("removed", pk, f"sealed late by seal {seal_id}, missing, not purged"))


def _segments(checked_rows: list[tuple], all_rows: list[tuple]) -> list[tuple[int, int | None, list[tuple]]]:
    """Runs of consecutive checked seals: ``(first event id, last event id or None, their rows)``. The run that
    ends with the newest seal (or, with no seal checked after the baseline, the unsealed tail alone) is open-ended.
    A full run is one open-ended segment from id 1."""
    if len(checked_rows) == len(all_rows):
        return [(1, None, all_rows)]
    position = {row[0]: index for index, row in enumerate(all_rows)}
    segments: list[tuple[int, int | None, list[tuple]]] = []
    run: list[tuple] = []
    for row in checked_rows:
        if run and position[row[0]] != position[run[-1][0]] + 1:
            segments.append((run[0][1], run[-1][2], run))
            run = []
        run.append(row)
    newest = all_rows[-1] if all_rows else None
    if run and newest is not None and run[-1][0] == newest[0]:
        segments.append((run[0][1], None, run))
    else:
        if run:
            segments.append((run[0][1], run[-1][2], run))
        segments.append(((newest[2] + 1) if newest else 1, None, []))
    return segments


def hold_problems(using: str, batches: list[tuple[int, PurgeContext]]) -> list[Problem]:
    """Did a purge batch remove events a legal hold covered at the time? And is every hold still on record?

    The holds are rebuilt from the sealed LEGAL_HOLD_PLACED / LEGAL_HOLD_RELEASED events (with the database times
    their payloads carry), not from ``observability_legal_hold``: deleting a hold's row, then purging, cannot
    launder the deletion. A hold's event without its row is named too (``hold_missing``).
    """
    placed: dict[str, tuple[str, str, datetime]] = {}
    released: dict[str, datetime] = {}
    events = AuditEvent.objects.using(using).filter(event_type__in=("LEGAL_HOLD_PLACED", "LEGAL_HOLD_RELEASED"))
    for event_type, payload, occurred_at in events.values_list("event_type", "payload", "occurred_at"):
        if not isinstance(payload, dict) or not isinstance(payload.get("hold_id"), str):
            continue
        if event_type == "LEGAL_HOLD_PLACED":
            when = _payload_time(payload.get("placed_at"), occurred_at)
            placed[payload["hold_id"]] = (str(payload.get("subject") or ""), str(payload.get("event_type") or ""), when)
        else:
            released[payload["hold_id"]] = _payload_time(payload.get("released_at"), occurred_at)
    problems: list[Problem] = []
    if not placed:
        return problems
    rows = {str(pk) for pk in LegalHold.objects.using(using).values_list("pk", flat=True)}
    for hold_id in sorted(set(placed) - rows, key=lambda h: (len(h), h)):
        problems.append(
            Problem("hold_missing", None, f"legal hold {hold_id} was placed (sealed event) but its row is gone")
        )
    for pk, context in batches:
        subjects = set(context.subjects)
        for hold_id, (subject, event_type, since) in placed.items():
            until = released.get(hold_id)
            if not (since <= context.created_at and (until is None or context.created_at < until)):
                continue
            if event_type and event_type != context.event_type:
                continue
            if subject and subject not in subjects:
                continue
            what = f"{context.event_type} events" + (f" about {subject}" if subject else "")
            problems.append(
                Problem(
                    "purged_under_hold",
                    None,
                    f"purge record {pk} ({format_time(context.created_at)}) removed {what} while legal hold {hold_id}"
                    f" (placed {format_time(since)}) was in force",
                )
            )
    return problems


def _payload_time(value: Any, fallback: datetime) -> datetime:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return fallback
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return fallback


def _blob(using: str, seal_id: int) -> bytes:
    return bytes(AuditSeal.objects.using(using).values_list("leaves", flat=True).get(pk=seal_id))


_BEYOND = 1 << 63  # above every bigint id


_NO_LEAF = (_BEYOND, b"")


class _SealLeaves:
    """Walks the seals' in-range leaves in id order beside the event stream; reports leaves left without an event.

    The caller holds the hot state (the next unmatched leaf ``lpk, leaf``, the iterator of the seal's further
    leaves, the seal's range end) in locals and hands it back to :meth:`advance` at seal boundaries and gaps. Only
    one seal's leaves are in memory.
    """

    def __init__(self, using: str, seal_rows: list[tuple], purged: dict[int, array], report: Report) -> None:
        self.using, self.purged, self.report = using, purged, report
        self.seals = iter(seal_rows)
        self.seal_id: int | None = None
        self.last_id = -1
        self._leaves: Iterator[tuple[int, bytes]] = iter(())

    def advance(self, pk: int, lpk: int, leaf: bytes) -> tuple[int, bytes, Iterator[tuple[int, bytes]], int]:
        """Move to the leaf for event ``pk``: leaves passed over are removed events, unless a purge took them.
        Returns the next leaf, the iterator of the ones after it, and the current seal's range end."""
        leaves = self._leaves
        while True:
            while lpk < pk and lpk <= self.last_id:
                self._gone(lpk)
                lpk, leaf = next(leaves, _NO_LEAF)
            if pk <= self.last_id:
                return lpk, leaf, leaves, self.last_id
            while lpk != _BEYOND:  # a forged seal's leaves beyond its range
                self._gone(lpk)
                lpk, leaf = next(leaves, _NO_LEAF)
            row = next(self.seals, None)
            if row is None:
                self.last_id = _BEYOND
                return lpk, leaf, leaves, self.last_id
            self.seal_id, first_id, self.last_id = row[0], row[1], row[2]
            blob = _blob(self.using, self.seal_id)
            skip = 0  # the late leaves come first (sorted by id, below first_id): pass 1 took them
            while skip + LEAF <= len(blob) and struct.unpack_from(">q", blob, skip)[0] < first_id:
                skip += LEAF
            self._leaves = leaves = iter_leaves(blob[skip:])
            lpk, leaf = next(leaves, _NO_LEAF)

    def _gone(self, pk: int) -> None:
        if not _contains(self.purged.get(self.seal_id), pk):
            self.report.problems.append(Problem("removed", pk, f"sealed by seal {self.seal_id}, missing, not purged"))


def content_mismatches(ids: list[int], *, using: str = DEFAULT_DB_ALIAS, key: bytes | None = None) -> list[int]:
    """The ids among ``ids`` whose stored content no longer gives their stored digest: changed behind the app's
    back. The purge asks this before deleting an event whose old time it cannot vouch for (retention)."""
    connection = connections[using]
    qn = connection.ops.quote_name
    digester, bad = RowDigester(key), []
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        sql = (
            f"SELECT {_row_columns(connection)} FROM {qn(AuditEvent._meta.db_table)}"
            f" WHERE {qn('id')} IN ({', '.join(['%s'] * len(chunk))})"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, chunk)
            rows = cursor.fetchall()
        if connection.vendor != "postgresql":
            rows = [_sqlite_row(row) for row in rows]
        bad.extend(row[0] for row, content in zip(rows, digester(rows), strict=True) if content != row[-1])
    return sorted(bad)


def _row_columns(connection: Any) -> str:
    """The columns :class:`RowDigester` reads, as the server should write them (see :func:`_stream_chunks`)."""
    qn = connection.ops.quote_name
    if connection.vendor == "postgresql":
        when = "to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
        values = ", ".join(["encode(uuid_send(event_id), 'hex')", when, *map(qn, DIGEST_FIELDS)])
        return f"{qn('id')}, array_to_json(ARRAY[{values}])::text, payload::text, {qn('digest')}"
    return ", ".join(
        [qn("id"), qn("event_id"), qn("occurred_at"), *map(qn, DIGEST_FIELDS), qn("payload"), qn("digest")]
    )


def _stream_chunks(
    using: str, chunk_size: int, low: int | None = None, high: int | None = None
) -> Iterator[list[tuple[Any, ...]]]:
    """Lists of rows ``(id, values text, payload text, digest)`` in id order, as :class:`RowDigester` reads them.

    A plain DB-API cursor, not the ORM: verification reads every row once and needs neither model instances nor
    Django's per-row converters. On PostgreSQL a named (server-side) cursor inside a transaction streams the
    table, one chunk ahead of the hashing, and the server writes each row's digest columns as one JSON array
    (event id as hex, the time in :func:`format_time`'s form): four values per row for psycopg to build, none to
    format in Python. On SQLite the rows are reshaped here.
    """
    connection = connections[using]
    qn = connection.ops.quote_name
    postgres = connection.vendor == "postgresql"
    columns = _row_columns(connection)
    where, params = [], []
    if low is not None:
        where.append(f"{qn('id')} >= %s")
        params.append(low)
    if high is not None:
        where.append(f"{qn('id')} <= %s")
        params.append(high)
    condition = f" WHERE {' AND '.join(where)}" if where else ""
    sql = f"SELECT {columns} FROM {qn(AuditEvent._meta.db_table)}{condition} ORDER BY {qn('id')}"
    with transaction.atomic(using=using):
        connection.ensure_connection()
        if postgres:
            cursor = connection.connection.cursor(name="observability_verify")
        else:
            cursor = connection.connection.cursor()
        try:
            cursor.execute(sql.replace("%s", "?") if not postgres else sql, params)
            if postgres:
                yield from _prefetched(cursor, chunk_size)
            else:
                while rows := cursor.fetchmany(chunk_size):
                    yield [_sqlite_row(row) for row in rows]
        finally:
            cursor.close()


def _prefetched(cursor: Any, chunk_size: int) -> Iterator[list[tuple[Any, ...]]]:
    """``cursor.fetchmany`` run one chunk ahead in a thread: the server produces the next chunk (and the thread
    waits for it, without the GIL) while this one is hashed. Memory: three chunks at most."""
    chunks: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()

    def fetch() -> None:
        try:
            while not stop.is_set():
                rows = cursor.fetchmany(chunk_size)
                chunks.put(rows)
                if not rows:
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            chunks.put(exc)

    thread = threading.Thread(target=fetch, name="observability-verify-fetch", daemon=True)
    thread.start()
    try:
        while True:
            rows = chunks.get()
            if isinstance(rows, BaseException):
                raise rows
            if not rows:
                return
            yield rows
    finally:
        stop.set()
        while thread.is_alive():  # unblock a put() so the thread sees stop
            with contextlib.suppress(queue.Empty):
                chunks.get(timeout=0.05)
        thread.join()


def _sqlite_row(row: tuple[Any, ...]) -> tuple[Any, ...]:
    event_id, occurred_at = row[1], row[2]
    event_hex = event_id if isinstance(event_id, str) else event_id.hex
    if isinstance(occurred_at, datetime):  # SQLite's converters give naive UTC datetimes
        occurred_at = format_time(occurred_at)
    elif isinstance(occurred_at, str) and " " in occurred_at:  # or the stored text "YYYY-MM-DD HH:MM:SS[.ffffff]"
        occurred_at = format_time(datetime.fromisoformat(occurred_at).replace(tzinfo=UTC))
    return (row[0], values_text(event_hex.replace("-", ""), occurred_at, row[3:-2]), row[-2], row[-1])


def _check_unexpected(
    pk: int,
    stored: str,
    valid: bool,
    late: dict,
    seen_late: set[int],
    report: Report,
    last_sealed: int,
    last_seal_first: int,
) -> None:
    """An event that is not the next leaf of its range's seal: sealed late, not sealed yet, or inserted."""
    if pk in late:
        seen_late.add(pk)
        if not valid:
            report.problems.append(Problem("changed", pk, "content does not give its stored digest"))
        elif late[pk][0].hex() != stored:
            report.problems.append(Problem("changed", pk, "digest differs from the sealed one"))
        return
    if pk > last_sealed or (pk >= last_seal_first and valid):
        # Written after the last seal (or committed late inside its range): the next seal takes it.
        report.unsealed += 1
        if report.unsealed_oldest_id is None:  # the stream is in id order: the first one is the oldest
            report.unsealed_oldest_id = pk
        if not valid:
            report.problems.append(Problem("changed", pk, "unsealed event whose content does not give its digest"))
        return
    report.problems.append(Problem("inserted", pk, "inside a sealed range but in no seal"))


def _by_kind(report: Report) -> dict[str, int]:
    counts: dict[str, int] = {}
    for problem in report.problems:
        counts[problem.kind] = counts.get(problem.kind, 0) + 1
    return counts


def last_verification(using: str = DEFAULT_DB_ALIAS) -> tuple[datetime, int] | None:
    """(finished_at, problems) of the latest verify run, or None: one indexed row for /metrics."""
    row = AuditVerification.objects.using(using).order_by("-id").values_list("finished_at", "problems").first()
    return (row[0], row[1]) if row else None


def connection_vendor(using: str = DEFAULT_DB_ALIAS) -> str:
    return connections[using].vendor
