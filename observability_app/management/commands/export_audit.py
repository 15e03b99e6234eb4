"""``manage.py export_audit``: stream audit events as JSON Lines or CSV, with constant memory.
Serialization: :mod:`observability_app.audit.export`.

Each run records an AUDIT_EXPORTED event (the operating-system user, the filter options, how many events, the
format) when it ends, also when the reader of stdout went away early.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import sys

from django.core.management.base import BaseCommand, CommandError

from ...audit import registry
from ...audit.exceptions import UnknownEventType
from ...audit.export import FORMATS, recorded_export_lines
from ...audit.models import AuditEvent
from ._options import parse_when

__all__ = ["Command"]


class Command(BaseCommand):
    help = "Write audit events (oldest first) as JSON Lines or CSV to stdout or a file."

    def add_arguments(self, parser):
        parser.add_argument("--format", default="jsonl", choices=sorted(FORMATS))
        parser.add_argument("--event-type", action="append", dest="event_types")
        parser.add_argument("--since", help="ISO 8601, inclusive")
        parser.add_argument("--until", help="ISO 8601, exclusive")
        parser.add_argument("--subject")
        parser.add_argument("--correlation-id")
        parser.add_argument("--output", help="file to write (default: stdout)")
        parser.add_argument("--database", default="default")

    def handle(self, *args, **options):
        queryset = AuditEvent.objects.using(options["database"]).order_by("id")
        for name in options["event_types"] or []:
            try:
                registry.get(name)
            except UnknownEventType as exc:
                raise CommandError(str(exc)) from None
        if options["event_types"]:
            queryset = queryset.filter(event_type__in=options["event_types"])
        since, until = parse_when(options["since"], "--since"), parse_when(options["until"], "--until")
        if since and until and since >= until:
            raise CommandError("--since must be before --until")
        if since:
            queryset = queryset.filter(occurred_at__gte=since)
        if until:
            queryset = queryset.filter(occurred_at__lt=until)
        for option, column in (("subject", "subject"), ("correlation_id", "correlation_id")):
            if options[option] is not None:
                if len(options[option]) > 255:
                    raise CommandError(f"--{option.replace('_', '-')} is at most 255 characters")
                queryset = queryset.filter(**{column: options[option]})
        filters = {
            name: options[name]
            for name in ("event_types", "since", "until", "subject", "correlation_id")
            if options[name] is not None
        }
        if options["output"]:
            try:
                stream = open(options["output"], "w", encoding="utf-8", newline="")  # noqa: SIM115 (closed below)
            except OSError as exc:
                raise CommandError(f"cannot write --output {options['output']!r}: {exc.strerror}") from None
        lines = recorded_export_lines(
            queryset, options["format"], exported_by=_os_user(), filters=filters, source="command"
        )
        if not options["output"]:
            with contextlib.closing(lines):  # closing records the export, however it ended
                try:
                    sys.stdout.writelines(lines)
                    sys.stdout.flush()
                except BrokenPipeError:  # the reader (head, less) went away: stop quietly, like any Unix filter
                    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return
        count = 0
        try:
            with stream, contextlib.closing(lines):
                for line in lines:
                    stream.write(line)
                    count += 1
        except OSError as exc:
            raise CommandError(f"cannot write --output {options['output']!r}: {exc.strerror}") from None
        self.stderr.write(f"wrote {count} line(s) to {options['output']}")


def _os_user() -> str:
    """Who ran the command: the operating-system user ("unknown" when the system cannot say)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER (some containers)
        return "unknown"
