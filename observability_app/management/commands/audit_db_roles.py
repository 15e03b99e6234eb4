"""``manage.py audit_db_roles``: print (and with ``--apply`` run) the PostgreSQL grants that keep the app's runtime
role to reading and appending the audit trail, and give deletion to a purge role only. ``--check`` reports what
the connection's own role can do. The plan itself lives in :mod:`observability_app.audit.roles`.

Exit codes: 0 done (``--check``: nothing dangerous); 1 ``--check`` found the role can change or remove evidence;
2 bad options, or the database is not PostgreSQL.
"""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, connections

from ...audit import roles
from ._options import EXIT_BAD_OPTIONS, database_vendor

__all__ = ["Command"]


class Command(BaseCommand):
    help = (
        "Print the grants for the audit tables (runtime role: SELECT and INSERT only; purge role: DELETE on events);"
        " --apply runs them, --check reports what this connection's role can do."
    )

    def add_arguments(self, parser):
        parser.add_argument("--runtime-role", help="the role the app connects as (required unless --check)")
        parser.add_argument("--purge-role", default=roles.DEFAULT_PURGE_ROLE, help="NOLOGIN role allowed to purge")
        parser.add_argument("--purge-login", help="login role purge_expired_audit runs as: made a purge role member")
        parser.add_argument("--owner", help="make this role the tables' owner first (not the runtime role)")
        parser.add_argument("--apply", action="store_true", help="run the statements (as the owner or a superuser)")
        parser.add_argument("--check", action="store_true", help="report this connection's rights; exit 1 if unsafe")
        parser.add_argument("--database", default="default")

    def handle(self, *args, **options):
        using = options["database"]
        if database_vendor(using) != "postgresql":
            raise CommandError(
                "audit_db_roles needs PostgreSQL: SQLite has no roles, so whoever can write the database file can"
                " change it; the checkpoint file is the guarantee there (docs/audit-integrity.md)",
                returncode=EXIT_BAD_OPTIONS,
            )
        if options["check"]:
            return self._check(using)
        if not options["runtime_role"]:
            raise CommandError("--runtime-role is required (or use --check)", returncode=EXIT_BAD_OPTIONS)
        try:
            statements = roles.plan(
                runtime_role=options["runtime_role"],
                purge_role=options["purge_role"],
                purge_login=options["purge_login"],
                owner=options["owner"],
                using=using,
            )
        except roles.InvalidRoleName as exc:
            raise CommandError(str(exc), returncode=EXIT_BAD_OPTIONS) from None
        self._warn_about_runtime_role(options["runtime_role"], options["owner"], using)
        if not options["apply"]:
            self.stdout.write("-- run as the audit tables' owner or a superuser (or pass --apply)")
            for statement in statements:
                self.stdout.write(f"{statement};")
            return
        try:
            roles.apply(statements, using=using)
        except DatabaseError as exc:
            raise CommandError(f"nothing applied: {str(exc).strip()[:500]}") from None
        self.stdout.write(self.style.SUCCESS(f"applied {len(statements)} statement(s)"))

    def _warn_about_runtime_role(self, runtime_role: str, owner: str | None, using: str) -> None:
        """Grants cannot bind a superuser or an owner: say so before anyone relies on them."""
        with connections[using].cursor() as cursor:
            cursor.execute(
                "SELECT r.rolsuper, bool_or(pg_has_role(r.oid, c.relowner, 'MEMBER'))"
                " FROM pg_roles r, pg_class c WHERE r.rolname = %s AND c.oid = ANY(%s::regclass[]) GROUP BY r.rolsuper",
                [runtime_role, roles.audit_tables()],
            )
            row = cursor.fetchone()
        if row is None:
            self.stderr.write(f"warning: role {runtime_role} does not exist yet; create it before applying")
            return
        superuser, owns = row
        if superuser:
            self.stderr.write(f"warning: {runtime_role} is a superuser: no grant binds it; connect as another role")
        if owns and owner is None:
            self.stderr.write(
                f"warning: {runtime_role} owns the audit tables (or is a member of their owner): pass --owner ROLE"
                " to hand them to another role, or an owner can switch the triggers off"
            )

    def _check(self, using: str) -> None:
        found = roles.exposure(using)
        if found is None:
            self.stdout.write("the audit tables do not exist yet: run migrate first")
            return
        if not found.exposed:
            self.stdout.write(
                self.style.SUCCESS(f"role {found.role} can only read and append the audit tables")
                + (" (and purge, as a member of the purge role)" if found.purge_member else "")
            )
            return
        for line in found.describe():
            self.stdout.write(line)
        self.stdout.write(f"fix: manage.py audit_db_roles --runtime-role {found.role} --owner <another role> --apply")
        sys.exit(1)
