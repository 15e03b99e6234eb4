"""Random identifiers: request and correlation ids, and the random part of audit event ids.

Both are made on every request or event, so the random bytes are read from ``os.urandom`` 256 ids at a time (one
system call instead of one per id); ``list.pop`` hands each id out once across threads, and a forked child (a
gunicorn worker) starts with none of its parent's.
"""

from __future__ import annotations

import os
import re
import time

__all__ = ["new_id", "safe_id", "time_ordered_id"]

_SAFE_ID = re.compile(r"[A-Za-z0-9._:\-]+")

_ids: list[str] = []
_IDS_PER_READ = 256


def new_id() -> str:
    """A fresh request/correlation id: 128 random bits from ``os.urandom`` as 32 hex digits."""
    try:
        return _ids.pop()
    except IndexError:
        block = os.urandom(16 * _IDS_PER_READ).hex()
        _ids.extend(block[i : i + 32] for i in range(32, len(block), 32))
        return block[:32]


os.register_at_fork(after_in_child=_ids.clear)


def time_ordered_id() -> str:
    """A time-ordered UUID (version 7 layout: 48-bit Unix milliseconds, then 74 random bits) as 32 hex digits.

    Time order keeps inserts into a unique index at its right edge instead of scattered over random pages (what
    makes bulk recording fast); the random bits keep ids unguessable and unique.
    """
    rand = new_id()
    variant = "89ab"[int(rand[3], 16) & 3]  # the two top bits of the variant nibble are 10
    return f"{time.time_ns() // 1_000_000:012x}7{rand[0:3]}{variant}{rand[4:19]}"


def safe_id(value: str | None, max_length: int = 128) -> str | None:
    """``value`` when it is safe to log and echo (length, characters: ASCII letters, digits, ``._:-``), else None.

    Incoming correlation ids and job ids pass through it before they are logged, echoed in a header or stored.
    """
    if value and len(value) <= max_length and _SAFE_ID.fullmatch(value):
        return value
    return None
