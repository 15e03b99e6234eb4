"""Retention under concurrency at scale, on PostgreSQL: the three scenarios of issue 11, each with real processes.

Run: ``python -m benchmarks.scenarios`` (``--events N``, default 250,000; ``--postgres URL``; ``--batch-size``).
Each scenario starts from a fresh trail of N expired events (sealed three years ago) plus a few thousand recent
ones, and prints what it measured and whether it held:

1. ``verify()`` in a loop in a second thread while ``purge_expired()`` deletes everything expired: the number of
   verify runs and the problems they reported (must be 0).
2. A legal hold on one subject, whose events are spread over the whole id range, placed ``--hold-after`` seconds
   into the purge (or when four fifths are gone, if the purge is faster): its events left when the hold was placed must
   all survive, and verify must pass.
3. ``manage.py purge_expired_audit`` in a child process, killed with SIGKILL mid-run, then run again: the
   AUDIT_PURGED totals must equal the purge records' totals, and verify must pass.

Exit status 1 (with ``--check``) when a scenario did not hold. These are correctness figures at scale, not speed
targets; the speed targets are benchmarks.retention's.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta

PAYLOAD = {"artifact_id": "models/clf@1", "version": "1", "reader": "nightly-eval", "purpose": "evaluation"}
HELD = "models/held@1"


def fresh_trail(n: int, using: str) -> None:
    """N expired events (one in 100 about ``HELD``), 2,000 recent ones, sealed as when they were written."""
    from django.db import connections

    from benchmarks.retention import reset_trail
    from observability_app import audit
    from observability_app.audit import integrity

    reset_trail(using)
    old = datetime.now(UTC) - timedelta(days=3 * 365)

    def rows(start: int, count: int):
        for i in range(start, start + count):
            subject = HELD if i % 100 == 0 else PAYLOAD["artifact_id"]
            yield {
                "event_type": "ARTIFACT_ACCESSED",
                "payload": {**PAYLOAD, "artifact_id": subject},
                "occurred_at": old + timedelta(seconds=i),
            }

    for start in range(0, n, 100_000):
        audit.record_many(rows(start, min(100_000, n - start)), using=using)
    audit.record_many([("ARTIFACT_ACCESSED", PAYLOAD)] * 2000, using=using)
    integrity.seal(using=using, now=datetime.now(UTC) - timedelta(days=3 * 365 - 1))
    with connections[using].cursor() as cursor:
        cursor.execute("ANALYZE observability_audit_event")


def totals(using: str) -> tuple[int, int]:
    from django.db.models import Sum

    from observability_app.audit.models import AuditEvent, AuditPurgeRecord

    events = sum(
        sum(payload["counts"].values())
        for payload in AuditEvent.objects.using(using)
        .filter(event_type="AUDIT_PURGED")
        .values_list("payload", flat=True)
    )
    return events, AuditPurgeRecord.objects.using(using).aggregate(n=Sum("removed_count"))["n"] or 0


def verify_during_purge(args: argparse.Namespace, using: str) -> bool:
    from django.db import connections

    from observability_app.audit import integrity, retention

    fresh_trail(args.events, using)
    stop, runs, problems = threading.Event(), [0], [0]
    examples: list[str] = []

    def loop() -> None:
        try:
            while not stop.is_set():
                report = integrity.verify(using=using, record_run=False, full=True)
                runs[0] += 1
                problems[0] += len(report.problems)
                examples.extend(str(p) for p in report.problems[:3])
        finally:
            connections[using].close()

    thread = threading.Thread(target=loop)
    thread.start()
    started = time.perf_counter()
    result = retention.purge_expired(using=using, batch_size=args.batch_size)
    elapsed = time.perf_counter() - started
    time.sleep(0.5)  # one more run after the purge's last batch
    stop.set()
    thread.join()
    held = problems[0] == 0 and runs[0] >= 2
    print(
        f"1. verify looping during a purge of {result.total:,} events ({elapsed:.1f} s):"
        f" {runs[0]} verify runs, {problems[0]} problems -> {'held' if held else 'FAILED'}"
    )
    for line in examples[:5]:
        print(f"   {line}")
    return held


def hold_during_purge(args: argparse.Namespace, using: str) -> bool:
    from django.db import connections

    from observability_app.audit import holds, integrity, retention
    from observability_app.audit.models import AuditEvent

    fresh_trail(args.events, using)
    held_before = AuditEvent.objects.using(using).filter(subject=HELD).count()
    outcome: dict[str, object] = {}

    def purge() -> None:
        try:
            outcome["result"] = retention.purge_expired(using=using, batch_size=args.batch_size)
        finally:
            connections[using].close()

    thread = threading.Thread(target=purge)
    started = time.perf_counter()
    thread.start()
    total = args.events
    while thread.is_alive() and time.perf_counter() - started < args.hold_after:
        left = AuditEvent.objects.using(using).filter(event_type="ARTIFACT_ACCESSED").count()
        if left < total * 0.2:  # a fast purge: place the hold while a fifth is still to go
            break
        time.sleep(0.05)
    placed_at = time.perf_counter() - started
    hold = holds.place(subject=HELD, reason="litigation", placed_by="scenario", using=using)
    left_at_hold = AuditEvent.objects.using(using).filter(subject=HELD).count()
    thread.join()
    left_after = AuditEvent.objects.using(using).filter(subject=HELD).count()
    report = integrity.verify(using=using, full=True)
    held = left_after == left_at_hold and report.ok and thread_ran(outcome)
    print(
        f"2. hold {hold.pk} placed {placed_at:.1f} s into a purge"
        f" ({'after deletions began' if left_at_hold < held_before else 'before any deletion'}):"
        f" {HELD} had {held_before:,} events, {left_at_hold:,} when the hold was placed, {left_after:,} after the"
        f" purge; verify problems {len(report.problems)} -> {'held' if held else 'FAILED'}"
    )
    return held


def thread_ran(outcome: dict[str, object]) -> bool:
    return "result" in outcome


def kill_9_mid_purge(args: argparse.Namespace, using: str, url: str) -> bool:
    from django.db import connections

    from observability_app.audit import integrity, retention
    from observability_app.audit.models import AuditPurgeRecord

    fresh_trail(args.events, using)
    connections[using].close()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "DJANGO_SETTINGS_MODULE": "example_project.settings",
        "EXAMPLE_AUDIT_SIGNING_KEY": "bench-key",  # benchmarks.audit.configure's key: one trail, one key
    }
    child = subprocess.Popen(
        [sys.executable, "manage.py", "purge_expired_audit", "--batch-size", str(args.batch_size)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while child.poll() is None and time.monotonic() < deadline:
        if AuditPurgeRecord.objects.using(using).count() >= 3:
            break
        time.sleep(0.01)
    killed = child.poll() is None
    if killed:
        os.kill(child.pid, signal.SIGKILL)
    child.wait()
    before = totals(using)
    deadline = time.monotonic() + 60
    while True:  # the killed client's server session lets go of the purge lock once the server notices
        try:
            result = retention.purge_expired(using=using, batch_size=args.batch_size)
            break
        except retention.LockBusy:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    after = totals(using)
    report = integrity.verify(using=using, full=True)
    held = killed and after[0] == after[1] and report.ok
    print(
        f"3. kill -9 mid-purge: {'killed' if killed else 'the child finished first'} with {before[1]:,} events"
        f" deleted and {before[0]:,} in AUDIT_PURGED; the re-run reconciled {len(result.reconciled)} run(s) and"
        f" deleted {result.total:,} more; AUDIT_PURGED totals {after[0]:,}, purge records {after[1]:,};"
        f" verify problems {len(report.problems)} -> {'held' if held else 'FAILED'}"
    )
    return held


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=250_000)
    parser.add_argument("--batch-size", type=int, default=2000)
    parser.add_argument("--hold-after", type=float, default=4.0)
    parser.add_argument(
        "--postgres", default=os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/obs_scenarios")
    )
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)

    from benchmarks.audit import configure, ensure_postgres_database

    if not ensure_postgres_database(args.postgres):
        print("PostgreSQL is required for these scenarios", file=sys.stderr)
        return 2
    configure(os.path.join(tempfile.mkdtemp(), "unused.sqlite3"), args.postgres)
    from django.core.management import call_command

    call_command("migrate", database="postgres", verbosity=0)
    results = [
        verify_during_purge(args, "postgres"),
        hold_during_purge(args, "postgres"),
        kill_9_mid_purge(args, "postgres", args.postgres),
    ]
    print("scenarios: " + ("all held" if all(results) else "SOME FAILED"))
    return 1 if (args.check and not all(results)) else 0


if __name__ == "__main__":
    sys.exit(main())
