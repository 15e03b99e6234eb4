"""Option parsing shared by the audit commands: errors name the option and the expected form."""

from __future__ import annotations

from datetime import UTC, datetime

from django.core.management.base import CommandError


def parse_when(value: str | None, option: str) -> datetime | None:
    """``value`` as an aware datetime (UTC when it names no zone); a bad one exits 2, as argparse does."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise CommandError(
            f"{option} must be an ISO 8601 time such as 2026-01-31T00:00:00Z, got {value[:60]!r}", returncode=2
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
