"""``manage.py verify_audit``: check the audit trail against its seals; name every tampered event.

Exit codes: 0 intact; 1 tampering found (each problem printed: kind, event id, detail). Policy:
:func:`observability_app.audit.integrity.verify`.
"""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand

from ...audit.integrity import verify


class Command(BaseCommand):
    help = (
        "Verify every audit event and seal; exit 1 and name the events when anything was changed, removed or inserted."
    )

    def add_arguments(self, parser):
        parser.add_argument("--database", default="default")
        parser.add_argument("--max-problems", type=int, default=1000, help="print at most this many problems")

    def handle(self, *args, **options):
        report = verify(using=options["database"])
        for problem in report.problems[: max(0, options["max_problems"])]:
            self.stdout.write(f"TAMPERED {problem}")
        summary = (
            f"checked {report.events_checked} event(s) against {report.seals_checked} seal(s);"
            f" {report.unsealed} not sealed yet; {len(report.problems)} problem(s)"
        )
        if report.ok:
            self.stdout.write(self.style.SUCCESS(summary))
            return
        self.stdout.write(self.style.ERROR(summary))
        sys.exit(1)
