"""``manage.py verify_audit``: check the audit trail against its seals; name every tampered event.

Exit codes: 0 intact; 1 tampering found (each problem printed: kind, event id, detail); 2 bad options. Policy:
:func:`observability_app.audit.integrity.verify`. It also says how many events are not sealed yet and how old the
oldest is: that tail is what sealing (``seal_audit --every``) has not protected yet.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

from django.core.management.base import BaseCommand, CommandError

from ...audit.integrity import DEFAULT_SAMPLE_SEALS, verify
from ._options import EXIT_BAD_OPTIONS, database_vendor

__all__ = ["Command"]


class Command(BaseCommand):
    help = (
        "Verify every audit event and seal; exit 1 and name the events when anything was changed, removed or inserted."
    )

    def add_arguments(self, parser):
        parser.add_argument("--database", default="default")
        parser.add_argument("--max-problems", type=int, default=1000, help="print at most this many problems")
        parser.add_argument(
            "--full", action="store_true", help="check all history, not what is new since the last pass"
        )
        parser.add_argument(
            "--sample",
            type=int,
            default=DEFAULT_SAMPLE_SEALS,
            help=f"older seals an incremental run re-checks at random (default {DEFAULT_SAMPLE_SEALS})",
        )

    def handle(self, *args, **options):
        using = options["database"]
        database_vendor(using)
        if not 0 <= options["max_problems"] <= 10_000_000:
            raise CommandError(
                f"--max-problems must be 0 to 10000000, got {options['max_problems']}", returncode=EXIT_BAD_OPTIONS
            )
        if not 0 <= options["sample"] <= 1_000_000:
            raise CommandError(f"--sample must be 0 to 1000000, got {options['sample']}", returncode=EXIT_BAD_OPTIONS)
        report = verify(using=using, full=options["full"], sample=options["sample"])
        for problem in report.problems[: max(0, options["max_problems"])]:
            self.stdout.write(f"TAMPERED {problem}")
        summary = (
            f"checked {report.events_checked} event(s) against {report.seals_checked} seal(s);"
            f" {report.unsealed} not sealed yet; {len(report.problems)} problem(s)"
        )
        self.stdout.write(_tail(report))
        if report.full:
            self.stdout.write("full run: every seal and event checked")
        else:
            self.stdout.write(
                f"incremental run since verification {report.baseline}: new seals and events, every purge record"
                f" since, the whole chain's links, and {report.sampled} older seal(s) at random (--full for all)"
            )
        if report.ok:
            self.stdout.write(self.style.SUCCESS(summary))
            return
        self.stdout.write(self.style.ERROR(summary))
        sys.exit(1)


def _tail(report) -> str:
    """The unsealed tail in words: how many, since when, and when the last seal was written."""
    now = datetime.now(UTC)
    last = (
        f"last seal {report.last_seal_at.isoformat()} ({(now - report.last_seal_at).total_seconds():.0f} s ago)"
        if report.last_seal_at
        else "no seal yet"
    )
    if not report.unsealed:
        return f"unsealed tail: none; {last}"
    oldest = report.unsealed_oldest_at
    age = f", the oldest written {oldest.isoformat()} ({(now - oldest).total_seconds():.0f} s ago)" if oldest else ""
    return f"unsealed tail: {report.unsealed} event(s) from id {report.unsealed_oldest_id}{age}; {last}"
