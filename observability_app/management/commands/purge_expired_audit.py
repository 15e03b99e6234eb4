"""``manage.py purge_expired_audit``: remove audit events past their retention. The policy lives in
:mod:`observability_app.audit.retention`; this command only parses options and reports.

Exit codes: 0 done (or nothing to do); 2 bad options; 3 another purge holds the lock (safe to ignore from cron);
4 the database role may not delete audit events (run it as the purge login of ``audit_db_roles``); 1 the purge
left events whose content no longer gives their digest (a time moved back, say), or a seal it relies on does not
verify: run ``verify_audit``.
"""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from ...audit.exceptions import UnknownEventType
from ...audit.locks import LockBusy
from ...audit.retention import TamperedTrail, purge_expired
from ._options import EXIT_BAD_OPTIONS, parse_when

__all__ = ["EXIT_LOCKED", "EXIT_NOT_PERMITTED", "EXIT_TAMPERED", "INSUFFICIENT_PRIVILEGE", "Command"]


EXIT_TAMPERED = 1
EXIT_LOCKED = 3
EXIT_NOT_PERMITTED = 4
INSUFFICIENT_PRIVILEGE = "42501"


class Command(BaseCommand):
    help = "Delete audit events past their type's retention (never legal holds), in bounded batches."

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="count what would go, delete nothing")
        parser.add_argument("--batch-size", type=int, default=None, help="rows per transaction (default: setting)")
        parser.add_argument("--event-type", action="append", dest="event_types", help="only this type (repeatable)")
        parser.add_argument("--now", help="ISO 8601 time to evaluate retention at (testing, replays)")
        parser.add_argument("--database", default="default")

    def handle(self, *args, **options):
        batch_size = options["batch_size"]
        if batch_size is not None and not 1 <= batch_size <= 1_000_000:
            raise CommandError(
                f"--batch-size must be between 1 and 1000000, got {batch_size}", returncode=EXIT_BAD_OPTIONS
            )
        now = parse_when(options["now"], "--now")
        try:
            result = purge_expired(
                now=now,
                dry_run=options["dry_run"],
                batch_size=batch_size,
                event_types=options["event_types"],
                using=options["database"],
            )
        except UnknownEventType as exc:
            raise CommandError(str(exc), returncode=EXIT_BAD_OPTIONS) from None
        except TamperedTrail as exc:
            self.stderr.write(f"nothing deleted: {exc}")
            sys.exit(EXIT_TAMPERED)
        except LockBusy:
            self.stderr.write("another purge_expired_audit holds the lock; nothing done")
            sys.exit(EXIT_LOCKED)
        except DatabaseError as exc:
            if getattr(exc.__cause__, "sqlstate", None) != INSUFFICIENT_PRIVILEGE:
                raise
            self.stderr.write(
                "this database role may not delete audit events: run purge_expired_audit as the purge login set up"
                f" by `manage.py audit_db_roles` (docs/deployment.md); nothing deleted. ({str(exc).strip()[:200]})"
            )
            sys.exit(EXIT_NOT_PERMITTED)
        for old_run, counts in sorted(result.reconciled.items()):
            state = "found" if result.dry_run else "recorded AUDIT_PURGED for"
            self.stdout.write(f"{state} interrupted run {old_run}: deleted {sum(counts.values())} event(s) {counts}")
        verb = "would delete" if result.dry_run else "deleted"
        for name in sorted(result.cutoffs):
            self.stdout.write(f"{name:<28} {verb} {result.counts.get(name, 0):>10}   cut-off {result.cutoffs[name]}")
        self.stdout.write(
            self.style.SUCCESS(f"{verb} {result.total} event(s) in {result.batches} batch(es); run {result.run_id}")
        )
        if result.refused:
            for name, ids in sorted(result.refused.items()):
                shown = ", ".join(map(str, ids[:20])) + (" ..." if len(ids) > 20 else "")
                self.stderr.write(
                    f"left {len(ids)} {name} event(s) that look expired but whose content does not give their digest"
                    f" (changed behind the app's back?): ids {shown}. Run verify_audit."
                )
            sys.exit(EXIT_TAMPERED)
