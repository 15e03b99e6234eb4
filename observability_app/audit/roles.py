"""PostgreSQL roles for the audit tables: what the app's runtime role may do, and who may purge.

The triggers (migrations 0002 and 0005) stop an ``UPDATE`` or ``DELETE`` that reaches the tables; grants stop the
statement before it gets there. The layout this module prints and applies (``manage.py audit_db_roles``):

- the **runtime role** (the one the web servers and workers connect as) gets ``SELECT`` and ``INSERT`` on the audit
  tables and ``USAGE`` on their id sequences, nothing else: no ``UPDATE``, ``DELETE``, ``TRUNCATE``, ``TRIGGER``,
  no ownership, and it must not be a superuser (a superuser passes every grant check);
- the **purge role** (``observability_audit_purge`` by default, ``NOLOGIN``) gets the same plus ``DELETE`` on the
  events table, and ``observability_audit_purge_role()`` is pointed at it, so that the delete trigger lets a purge
  through only for its members, whatever a session sets;
- the **purge login** (optional) is the login role ``purge_expired_audit`` runs as from cron: made a member of the
  purge role.

Nothing here runs at import or at start-up; :func:`exposure` is read by the system check ``observability_app.W004``
and by ``audit_db_roles --check``. SQLite has no roles: whoever can write the file can do anything, and the
checkpoint file (docs/audit-integrity.md) is the guarantee there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from django.db import DEFAULT_DB_ALIAS, connections, transaction

from .models import AuditEvent, AuditPurgeRecord, AuditSeal, AuditVerification, LegalHold, LegalHoldRelease

DEFAULT_PURGE_ROLE = "observability_audit_purge"
#: Privileges on an audit table that let a role change or remove evidence (or switch its triggers off).
DANGEROUS = ("UPDATE", "DELETE", "TRUNCATE", "TRIGGER")
_ROLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,62}")

__all__ = ["DEFAULT_PURGE_ROLE", "Exposure", "InvalidRoleName", "apply", "audit_tables", "exposure", "plan"]


class InvalidRoleName(ValueError):
    """A role name that is not a plain PostgreSQL identifier (letters, digits, ``_``, ``$``; at most 63)."""


def audit_tables() -> list[str]:
    """The audit tables, events first (SPEC section 8 names them; operators grant on them)."""
    models = (AuditEvent, AuditSeal, AuditPurgeRecord, AuditVerification, LegalHold, LegalHoldRelease)
    return [model._meta.db_table for model in models]


def _role(name: str) -> str:
    """``name`` double-quoted, after checking it is a plain identifier: hostile names never reach the SQL."""
    if not isinstance(name, str) or not _ROLE_NAME.fullmatch(name):
        raise InvalidRoleName(
            f"{str(name)[:80]!r} is not a role name this command accepts: letters, digits, _ and $, starting with a"
            " letter or _, at most 63 characters"
        )
    return f'"{name}"'


def _literal(name: str) -> str:
    _role(name)
    return f"'{name}'"


def plan(
    *,
    runtime_role: str,
    purge_role: str = DEFAULT_PURGE_ROLE,
    purge_login: str | None = None,
    owner: str | None = None,
    using: str = DEFAULT_DB_ALIAS,
) -> list[str]:
    """The SQL statements, in order, that set the roles up. Run them as the tables' owner or a superuser."""
    runtime, purge = _role(runtime_role), _role(purge_role)
    for other in (purge_login, owner):
        if other is not None:
            _role(other)
    if runtime_role in (purge_role, purge_login):
        raise InvalidRoleName("the runtime role must not be the purge role or the purge login")
    if owner is not None and owner == runtime_role:
        raise InvalidRoleName("the owner must not be the runtime role: an owner can switch the triggers off")
    tables = audit_tables()
    listed = ", ".join(tables)
    sequences = _sequences(tables, using)
    statements = [
        f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {_literal(purge_role)}) THEN"
        f" CREATE ROLE {purge} NOLOGIN; END IF; END $$",
    ]
    if owner is not None:
        statements += [f"ALTER TABLE {table} OWNER TO {_role(owner)}" for table in tables]
    statements += [
        f"REVOKE ALL ON TABLE {listed} FROM {runtime}",
        f"GRANT SELECT, INSERT ON TABLE {listed} TO {runtime}",
        f"REVOKE ALL ON TABLE {listed} FROM {purge}",
        f"GRANT SELECT, INSERT ON TABLE {listed} TO {purge}",
        f"GRANT DELETE ON TABLE {tables[0]} TO {purge}",
    ]
    if sequences:
        statements += [
            f"GRANT USAGE ON SEQUENCE {', '.join(sequences)} TO {runtime}",
            f"GRANT USAGE ON SEQUENCE {', '.join(sequences)} TO {purge}",
        ]
    schema = _schema(using)
    statements.append(
        "CREATE OR REPLACE FUNCTION observability_audit_purge_role() RETURNS oid LANGUAGE sql STABLE"
        f" SET search_path = pg_catalog, {schema} AS $$ SELECT oid FROM pg_roles WHERE rolname = {_literal(purge_role)}"
        " $$"
    )
    if purge_login is not None:
        statements.append(f"GRANT {purge} TO {_role(purge_login)}")
    return statements


def apply(statements: list[str], using: str = DEFAULT_DB_ALIAS) -> None:
    """Run ``statements`` in one transaction: all of them or none."""
    with transaction.atomic(using=using), connections[using].cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def _schema(using: str) -> str:
    with connections[using].cursor() as cursor:
        cursor.execute("SELECT quote_ident(current_schema())")
        return cursor.fetchone()[0]


def _sequences(tables: list[str], using: str) -> list[str]:
    """The id sequences behind the tables (serial or identity): ``INSERT`` needs ``USAGE`` on a serial's."""
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT s FROM (SELECT pg_get_serial_sequence(t, 'id') AS s FROM unnest(%s::text[]) AS t) q"
            " WHERE s IS NOT NULL",
            [tables],
        )
        return [row[0] for row in cursor.fetchall()]


@dataclass
class Exposure:
    """What the connection's role can do to the audit tables beyond reading and appending."""

    role: str
    superuser: bool = False
    owns: list[str] = field(default_factory=list)
    privileges: dict[str, list[str]] = field(default_factory=dict)  # table -> dangerous privileges held
    purge_member: bool = False

    @property
    def exposed(self) -> bool:
        return self.superuser or bool(self.owns) or bool(self.privileges)

    def describe(self) -> list[str]:
        lines = []
        if self.superuser:
            lines.append(f"role {self.role} is a superuser: grants and triggers do not bind it")
        if self.owns:
            where = "every audit table" if len(self.owns) == len(audit_tables()) else ", ".join(self.owns)
            lines.append(f"role {self.role} owns (or is a member of the owner of) {where}")
        by_privileges: dict[tuple[str, ...], list[str]] = {}
        for table, privileges in self.privileges.items():
            by_privileges.setdefault(tuple(privileges), []).append(table)
        for granted, tables in by_privileges.items():
            where = "every audit table" if len(tables) == len(audit_tables()) else ", ".join(tables)
            lines.append(f"role {self.role} holds {', '.join(granted)} on {where}")
        if self.purge_member:
            lines.append(f"role {self.role} is a member of the purge role: it may delete events with the gate open")
        return lines


def exposure(using: str = DEFAULT_DB_ALIAS) -> Exposure | None:
    """The connection role's dangerous rights on the audit tables; ``None`` on SQLite or before migrating."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return None
    tables = audit_tables()
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user")
        role, superuser = cursor.fetchone()
        cursor.execute(
            "SELECT t, pg_has_role(current_user, c.relowner, 'MEMBER'),"
            + ", ".join(f"has_table_privilege(current_user, c.oid, '{p}')" for p in DANGEROUS)
            + " FROM unnest(%s::text[]) WITH ORDINALITY AS u(t, n) JOIN pg_class c ON c.oid = to_regclass(t)"
            " ORDER BY n",
            [tables],
        )
        rows = cursor.fetchall()
        if not rows:
            return None
        cursor.execute("SELECT to_regproc('observability_audit_purge_role') IS NOT NULL")
        purge_member = False
        if cursor.fetchone()[0]:  # installed by migration 0005
            cursor.execute("SELECT pg_has_role(current_user, observability_audit_purge_role(), 'MEMBER')")
            purge_member = bool(cursor.fetchone()[0])
    found = Exposure(role=role, superuser=superuser, purge_member=purge_member)
    for table, owns, *granted in rows:
        if owns:
            found.owns.append(table)
        held = [name for name, has in zip(DANGEROUS, granted, strict=True) if has]
        if held:
            found.privileges[table] = held
    return found
