"""Retention purge and verification at scale, on PostgreSQL.

Run: ``python -m benchmarks.retention`` (``--events N``, default 1,000,000; ``--postgres URL``; ``--verify-only``
to load, seal and time the full and the daily, incremental, verification without the purge phases: the 10M run).

1. Loads N back-dated ARTIFACT_ACCESSED events (expired under the 2-year rule) with ``record_many``, plus a
   few thousand recent ones, and seals them.
2. ``verify_audit``'s work (:func:`integrity.verify`): events per second, peak memory. Baseline in the same run:
   reading the same rows (every column, a server-side cursor, no hashing), the floor any verification pays. Then
   the daily run: 0.1% new events sealed, and the default incremental ``verify()`` timed against the full one.
3. ``purge_expired_audit``'s work (:func:`retention.purge_expired`) while a second thread calls ``record()`` in a
   loop: expired events deleted per second, the longest purge transaction, the writer's longest wait, peak memory.
   Baseline in the same run: one plain ``DELETE`` of the same number of rows in one transaction (what
   django-auditlog's ``auditlogflush`` does), with the writer's longest wait during it.

Targets (issue 5): purge >= 200,000 events/s, peak memory <= 150 MB, no transaction > 1 s, writer wait <= 100 ms;
verify >= 100,000 events/s at constant memory.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

PURGE_TARGET = 200_000
VERIFY_TARGET = 100_000
MEMORY_TARGET_MB = 150
TXN_TARGET_S = 1.0
WAIT_TARGET_S = 0.100
PAYLOAD = {"artifact_id": "models/clf@1", "version": "1", "reader": "nightly-eval", "purpose": "evaluation"}


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


class MemorySampler(threading.Thread):
    """The largest resident set size seen while a phase runs (sampled every 10 ms)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.peak = rss_mb()

    def run(self) -> None:
        while not self.stop.wait(0.01):
            self.peak = max(self.peak, rss_mb())

    def __enter__(self) -> MemorySampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.join()


class Writer(threading.Thread):
    """Calls record() in a loop (autocommit), keeping the longest single call."""

    def __init__(self, using: str) -> None:
        super().__init__(daemon=True)
        self.using = using
        self.stop = threading.Event()
        self.longest = 0.0
        self.calls = 0

    def run(self) -> None:
        from django.db import connections

        from observability_app import audit

        try:
            while not self.stop.is_set():
                started = time.perf_counter()
                audit.record("ARTIFACT_ACCESSED", PAYLOAD, using=self.using)
                self.longest = max(self.longest, time.perf_counter() - started)
                self.calls += 1
                time.sleep(0.002)
        finally:
            connections[self.using].close()


def reset_trail(using: str) -> None:
    """Empty every audit table of a benchmark database of its own (the append-only triggers off for it)."""
    from django.db import connections

    with connections[using].cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
        cursor.execute(
            "TRUNCATE observability_audit_purge_record, observability_audit_seal, observability_audit_verification,"
            " observability_legal_hold_release, observability_legal_hold, observability_audit_event"
            " RESTART IDENTITY CASCADE"
        )
        cursor.execute("SET session_replication_role = origin")


def load(n: int, using: str) -> float:
    from observability_app import audit

    old = datetime.now(UTC) - timedelta(days=3 * 365)

    def rows(start: int, count: int):
        for i in range(start, start + count):
            yield {"event_type": "ARTIFACT_ACCESSED", "payload": PAYLOAD, "occurred_at": old + timedelta(seconds=i)}

    started = time.perf_counter()
    batch = 100_000
    for start in range(0, n, batch):
        audit.record_many(rows(start, min(batch, n - start)), using=using)
    audit.record_many([("ARTIFACT_ACCESSED", PAYLOAD)] * 2000, using=using)
    return time.perf_counter() - started


def read_floor(using: str) -> float:
    """Seconds to stream every event row through a server-side cursor without looking at it."""
    from django.db import connections, transaction

    connection = connections[using]
    started = time.perf_counter()
    with transaction.atomic(using=using), connection.connection.cursor(name="bench_read_floor") as cursor:
        cursor.execute("SELECT * FROM observability_audit_event ORDER BY id")
        while cursor.fetchmany(2000):
            pass
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument(
        "--postgres", default=os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/obs_bench_ret")
    )
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--verify-only", action="store_true", help="load, seal and verify (full and daily); no purge")
    args = parser.parse_args(argv)

    from benchmarks.audit import configure, ensure_postgres_database

    if not ensure_postgres_database(args.postgres):
        print("PostgreSQL is required for this benchmark", file=sys.stderr)
        return 2
    import tempfile

    configure(os.path.join(tempfile.mkdtemp(), "unused.sqlite3"), args.postgres)
    from django.core.management import call_command
    from django.db import connections, transaction

    from observability_app.audit import integrity, retention
    from observability_app.audit.db import purge_gate

    using = "postgres"
    connection = connections[using]
    call_command("migrate", database=using, verbosity=0)
    reset_trail(using)
    loaded = load(args.events, using)
    started = time.perf_counter()
    # Sealed as they would have been when they were written, years ago: a seal's (signed) time is what lets the
    # purge delete old events without re-checking each one's content (retention._tampered_candidates).
    integrity.seal(using=using, now=datetime.now(UTC) - timedelta(days=3 * 365 - 1))
    sealed = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE observability_audit_event") if not connection.in_atomic_block else None
    print(f"loaded {args.events:,} events in {loaded:.1f} s ({args.events / loaded:,.0f}/s); sealed in {sealed:.1f} s")

    with MemorySampler() as verify_memory:
        base_verify = verify_memory.peak
        started = time.perf_counter()
        report = integrity.verify(using=using)
        verify_s = time.perf_counter() - started
    verify_rate = report.events_checked / verify_s
    print(
        f"verify: {report.events_checked:,} events in {verify_s:.2f} s = {verify_rate:,.0f} events/s;"
        f" problems {len(report.problems)}; RSS {base_verify:.0f} MB before, peak {verify_memory.peak:.0f} MB"
    )

    # The daily run: incremental since the pass above, after a day's worth of new events (0.1% of the trail).
    from observability_app import audit

    audit.record_many([("ARTIFACT_ACCESSED", PAYLOAD)] * max(1, args.events // 1000), using=using)
    integrity.seal(using=using)
    started = time.perf_counter()
    daily = integrity.verify(using=using)
    daily_s = time.perf_counter() - started
    print(
        f"incremental verify: {daily.events_checked:,} events ({daily.sampled} sampled older seals) in"
        f" {daily_s:.2f} s, {verify_s / daily_s:.1f}x faster than the full run; problems {len(daily.problems)}"
    )

    read_s = read_floor(using)
    print(f"baseline plain read of the same rows: {report.events_checked / read_s:,.0f} rows/s")

    if args.verify_only:
        met = verify_rate >= VERIFY_TARGET
        print("targets: " + ("all met" if met else f"MISSED: verify {verify_rate:,.0f}/s < {VERIFY_TARGET:,}"))
        return 1 if (not met and args.check) else 0
    writer = Writer(using)
    writer.start()
    with MemorySampler() as purge_memory:
        base_purge = purge_memory.peak
        started = time.perf_counter()
        result = retention.purge_expired(using=using)
        purge_s = time.perf_counter() - started
    writer.stop.set()
    writer.join()
    writer_longest = writer.longest
    purge_rate = result.total / purge_s
    print(
        f"purge: {result.total:,} events in {purge_s:.2f} s = {purge_rate:,.0f} events/s; {result.batches} batches;"
        f" longest transaction {result.longest_batch_seconds * 1000:.0f} ms; writer: {writer.calls} record() calls,"
        f" longest {writer.longest * 1000:.1f} ms; RSS {base_purge:.0f} MB before, peak {purge_memory.peak:.0f} MB"
    )
    after = integrity.verify(using=using, record_run=False)
    print(f"verify after purge: ok={after.ok}, {after.events_checked:,} events")

    # Baseline: the same number of rows removed by one DELETE in one transaction.
    load(args.events, using)
    writer = Writer(using)
    writer.start()
    started = time.perf_counter()
    with transaction.atomic(using=using), purge_gate(using), connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM observability_audit_event WHERE event_type = 'ARTIFACT_ACCESSED' AND occurred_at < %s",
            [datetime.now(UTC) - timedelta(days=730)],
        )
        deleted = cursor.rowcount
    single_s = time.perf_counter() - started
    writer.stop.set()
    writer.join()
    print(
        f"baseline single DELETE: {deleted:,} rows in {single_s:.2f} s = {deleted / single_s:,.0f} rows/s,"
        f" one transaction of {single_s * 1000:.0f} ms; writer longest {writer.longest * 1000:.1f} ms"
    )
    missed = []
    if purge_rate < PURGE_TARGET:
        missed.append(f"purge {purge_rate:,.0f}/s < {PURGE_TARGET:,}")
    if result.longest_batch_seconds > TXN_TARGET_S:
        missed.append("a purge transaction over 1 s")
    if purge_memory.peak > MEMORY_TARGET_MB:
        missed.append(f"purge peak RSS {purge_memory.peak:.0f} MB > {MEMORY_TARGET_MB}")
    if writer_longest > WAIT_TARGET_S:
        missed.append(f"writer waited {writer_longest * 1000:.0f} ms")
    if verify_rate < VERIFY_TARGET:
        missed.append(f"verify {verify_rate:,.0f}/s < {VERIFY_TARGET:,}")
    print("targets: " + ("all met" if not missed else "MISSED: " + "; ".join(missed)))
    return 1 if (missed and args.check) else 0


if __name__ == "__main__":
    sys.exit(main())
