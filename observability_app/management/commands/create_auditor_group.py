"""``manage.py create_auditor_group [--name auditor] [--add-user NAME ...]``: the view-only auditor group."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from ...admin.permissions import AUDITOR_GROUP, AuditorGroupError, ensure_auditor_group

__all__ = ["Command"]


class Command(BaseCommand):
    help = (
        "Create or update the group whose members may view (never add, change or delete) audit events and legal"
        " holds in the admin. Idempotent; takes back any other permission the group was given."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--name", default=AUDITOR_GROUP, help=f"group name (default: {AUDITOR_GROUP})")
        parser.add_argument(
            "--add-user",
            action="append",
            default=[],
            metavar="USERNAME",
            help="make this existing user a staff member of the group (repeatable)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            result = ensure_auditor_group(options["name"], users=options["add_user"])
        except AuditorGroupError as exc:
            raise CommandError(str(exc)) from None
        verb = "created" if result.created else "updated"
        self.stdout.write(f"group {result.group.name!r} {verb}: {', '.join(result.permissions) or 'no permissions'}")
        for label in result.granted:
            self.stdout.write(f"  granted {label}")
        for label in result.revoked:
            self.stdout.write(f"  revoked {label}")
        for username in result.users_added:
            self.stdout.write(f"  added user {username!r}")
