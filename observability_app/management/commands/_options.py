"""Option parsing shared by the audit commands: errors name the option and the expected form."""

from __future__ import annotations

from datetime import UTC, datetime

from django.core.management.base import CommandError
from django.db import connections
from django.utils.connection import ConnectionDoesNotExist

#: The exit status of a command refusing its options, as argparse exits for an option it cannot parse.
EXIT_BAD_OPTIONS = 2


def parse_when(value: str | None, option: str) -> datetime | None:
    """``value`` as an aware datetime (UTC when it names no zone); a bad one exits :data:`EXIT_BAD_OPTIONS`."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise CommandError(
            f"{option} must be an ISO 8601 time such as 2026-01-31T00:00:00Z, got {value[:60]!r}",
            returncode=EXIT_BAD_OPTIONS,
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def database_vendor(alias: str) -> str:
    """The vendor of ``--database alias``; an alias not in ``DATABASES`` exits :data:`EXIT_BAD_OPTIONS`."""
    try:
        return connections[alias].vendor
    except ConnectionDoesNotExist:
        raise CommandError(f"--database {alias[:60]!r} is not in DATABASES", returncode=EXIT_BAD_OPTIONS) from None
