"""The keyed digests of seals, purge records and verification runs, and the packed leaves of a seal.

Pure functions over bytes and values, no database: what :mod:`.sealing` writes and :mod:`.verification` checks
must be computed by one piece of code.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .canonical import (
    format_time,
)
from .models import AuditSeal

__all__ = [
    "LEAF",
    "PurgeContext",
    "iter_leaves",
    "leaf_ids",
    "pack_leaves",
    "purge_digest",
    "seal_digest",
    "seal_signature_valid",
    "verification_digest",
]


LEAF = 40  # 8-byte id + 32-byte digest


def _mac(key: bytes | None, material: bytes) -> str:
    if key:
        return hmac.new(key, material, hashlib.sha256).hexdigest()
    return hashlib.sha256(material).hexdigest()


def seal_digest(
    previous: str,
    first_id: int,
    last_id: int,
    count: int,
    leaves: bytes,
    key: bytes | None,
    v2: tuple[Any, datetime] | None = None,
) -> str:
    """A seal's digest. Version 2 seals (``v2`` = ``(watch, created_at)``) also sign what they say was still in
    flight and when they were written: nobody can widen ``watch`` or move a seal in time without the key (the purge
    trusts a seal's time, see retention). Version 1 seals keep their original material."""
    version = "v1" if v2 is None else "v2"
    material = f"seal/{version}|{previous}|{first_id}|{last_id}|{count}|".encode() + hashlib.sha256(leaves).digest()
    if v2 is not None:
        watch, created_at = v2
        material += f"|{format_time(created_at)}|".encode()
        material += json.dumps(watch, sort_keys=True, separators=(",", ":")).encode()
    return _mac(key, material)


def _seal_v2(version: int, watch: Any, created_at: datetime) -> tuple[Any, datetime] | None:
    """What :func:`seal_digest` takes as ``v2`` for a stored seal of ``version``."""
    return None if version < 2 else (watch, created_at)


def seal_signature_valid(seal_: AuditSeal, key: bytes | None) -> bool:
    """Does this stored seal's digest verify (with its leaves read)?"""
    expected = seal_digest(
        seal_.previous_digest,
        seal_.first_id,
        seal_.last_id,
        seal_.event_count,
        bytes(seal_.leaves),
        key,
        _seal_v2(seal_.version, seal_.watch, seal_.created_at),
    )
    return hmac.compare_digest(expected, seal_.digest)


def purge_digest(
    seal_digest_: str, run_id: str, removed: bytes, key: bytes | None, context: PurgeContext | None = None
) -> str:
    """A purge record's digest. Version 2 records (``context`` given) also sign what verification checks against
    the legal holds: the batch's event type, the subjects it removed and the database time it ran."""
    if context is None:
        return _mac(key, f"purge/v1|{seal_digest_}|{run_id}|".encode() + hashlib.sha256(removed).digest())
    material = f"purge/v2|{seal_digest_}|{run_id}|{context.event_type}|{format_time(context.created_at)}|".encode()
    subjects = json.dumps(sorted(context.subjects), separators=(",", ":")).encode()
    return _mac(key, material + hashlib.sha256(removed).digest() + b"|" + hashlib.sha256(subjects).digest())


@dataclass(frozen=True)
class PurgeContext:
    """What a version 2 purge record says about its batch, signed with it."""

    event_type: str
    created_at: datetime
    subjects: tuple[str, ...] = ()


def pack_leaves(rows: list[tuple[int, str]]) -> bytes:
    return b"".join(pk.to_bytes(8, "big") + bytes.fromhex(digest) for pk, digest in sorted(rows))


def iter_leaves(blob: bytes) -> Iterator[tuple[int, bytes]]:
    """(event id, 32-byte digest) pairs of a seal, decoded in C."""
    usable = len(blob) - len(blob) % LEAF
    return struct.iter_unpack(">q32s", blob[:usable]) if usable else iter(())


def leaf_ids(blob: bytes) -> array:
    return array("q", (pk for pk, _digest in iter_leaves(blob)))


def verification_digest(
    started_at: datetime, through_seal: int | None, through_digest: str, through_purge: int, key: bytes | None
) -> str:
    """The keyed digest of a verification run's "verified through" claim: without the key, no row can be forged
    to make the next incremental run skip history."""
    material = f"verification/v1|{format_time(started_at)}|{through_seal}|{through_digest}|{through_purge}"
    return _mac(key, material.encode())
