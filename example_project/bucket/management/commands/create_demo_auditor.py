"""Create the tour's auditor login and print it once: a staff user in the view-only "auditor" group.

The auditor sees the compliance browser (audit events, legal holds) and nothing else of the admin, and can change
nothing there. A later run keeps the password and only makes sure the user is still in the group.
"""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from observability_app.admin.permissions import ensure_auditor_group


class Command(BaseCommand):
    help = "Create a local auditor login 'auditor' (view-only access to the audit trail) with a random password."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="auditor")

    def handle(self, *args, **options):
        User = get_user_model()
        username = options["username"]
        if User.objects.filter(username=username).exists():
            ensure_auditor_group(users=[username])
            self.stdout.write(f"auditor login '{username}' exists (reset with: manage.py changepassword {username})")
            return
        password = secrets.token_urlsafe(12)
        User.objects.create_user(username=username, password=password)
        ensure_auditor_group(users=[username])
        self.stdout.write(
            self.style.SUCCESS(f"auditor login created: username '{username}', password '{password}' (view only)")
        )
