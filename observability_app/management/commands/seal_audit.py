"""``manage.py seal_audit``: seal the events written since the last seal (run it from cron every few minutes).
Policy: :func:`observability_app.audit.integrity.seal`."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from ...audit.integrity import seal


class Command(BaseCommand):
    help = "Write seals (chained, keyed digests) over the audit events not sealed yet."

    def add_arguments(self, parser):
        parser.add_argument("--database", default="default")

    def handle(self, *args, **options):
        result = seal(using=options["database"])
        for new in result.seals:
            self.stdout.write(f"seal {new.pk}: events {new.first_id}..{new.last_id} ({new.event_count}) {new.digest}")
        self.stdout.write(self.style.SUCCESS(f"sealed {result.events} event(s) in {len(result.seals)} seal(s)"))
