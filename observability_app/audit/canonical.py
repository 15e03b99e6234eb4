"""Payload validation and the canonical form that event digests are computed over.

An event's digest must be recomputable from what the database gives back, on PostgreSQL (``jsonb``) and SQLite
(text) alike. ``jsonb`` reorders keys and turns ``1e16`` into ``10000000000000000``; so the canonical form sorts keys
and writes integral floats as integers, and :func:`normalize_payload` stores payloads already in that form.
Values a database cannot keep exactly (NaN, infinities, NUL characters, lone surrogates, non-string keys) are
refused up front with a message that names the path to the bad value.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import json.scanner
from datetime import UTC, datetime
from typing import Any

from .exceptions import InvalidAuditEvent

__all__ = [
    "DIGEST_FIELDS",
    "DIGEST_VERSION",
    "EVENT_COLUMNS",
    "MAX_DEPTH",
    "RowDigester",
    "digest_material",
    "digest_material_values",
    "dumps",
    "encode_payload",
    "event_digest",
    "format_time",
    "mac_hex",
    "normalize_payload",
    "signing_key",
    "stored_event_digest",
    "values_text",
]


MAX_DEPTH = 32
_encode_string = json.encoder.encode_basestring  # the C encoder when available
_dumps = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False).encode


class _PathError(Exception):
    """Raised deep in a payload; the path to the bad value is built while it unwinds (cheap on success)."""

    def __init__(self, why: str) -> None:
        self.why = why
        self.path: list[str] = []


def _normalize(value: Any, depth: int) -> Any:
    # Ordered by how common each type is in payloads; no path strings are built unless something is wrong.
    if isinstance(value, str):
        if "\x00" in value:
            raise _PathError("contains a NUL character, which databases cannot store in JSON")
        return value
    if value is None or value is True or value is False or type(value) is int:
        return value
    if isinstance(value, float):
        if value != value or value in (_INF, _NEG_INF):
            raise _PathError(f"is {value!r}, which JSON cannot represent")
        return int(value) if value.is_integer() else value
    if isinstance(value, int):  # int subclasses (IntEnum): stored as plain int
        return int(value)
    if depth >= MAX_DEPTH:
        raise _PathError(f"nests deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if type(key) is not str:
                raise _PathError(f"has a key {key!r} that is not a string")
            if "\x00" in key:
                raise _PathError("has a key with a NUL character")
            kind = type(item)
            if (kind is str and "\x00" not in item) or kind is int or kind is bool or item is None:
                out[key] = item  # the common leaves, without a call per value
                continue
            try:
                out[key] = _normalize(item, depth + 1)
            except _PathError as exc:
                exc.path.append(f"[{key[:40]!r}]")
                raise
        return out
    if isinstance(value, list | tuple):
        out_list = []
        for index, item in enumerate(value):
            kind = type(item)
            if (kind is str and "\x00" not in item) or kind is int or kind is bool or item is None:
                out_list.append(item)
                continue
            try:
                out_list.append(_normalize(item, depth + 1))
            except _PathError as exc:
                exc.path.append(f"[{index}]")
                raise
        return out_list
    raise _PathError(f"holds a {type(value).__name__}, which is not JSON (use str, int, float, bool, None, list, dict)")


_INF = float("inf")
_NEG_INF = float("-inf")


def normalize_payload(payload: Any) -> dict[str, Any]:
    """Validate ``payload`` as a JSON object and return it in canonical form (see the module docstring)."""
    if not isinstance(payload, dict):
        raise InvalidAuditEvent(f"audit payload must be a dict (a JSON object), got {type(payload).__name__}")
    try:
        return _normalize(payload, 0)
    except _PathError as exc:
        raise InvalidAuditEvent(f"audit payload{''.join(reversed(exc.path))} {exc.why}") from None


def encode_payload(payload: dict[str, Any]) -> tuple[str, bytes]:
    """Canonical text of a normalized payload and its UTF-8 bytes; lone surrogates are refused here."""
    text = _dumps(payload)
    try:
        return text, text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidAuditEvent("audit payload contains a lone surrogate, which is not valid Unicode") from None


def dumps(value: Any) -> str:
    """Canonical JSON text: sorted keys, no spaces, UTF-8 characters kept."""
    return _dumps(value)


def format_time(value: datetime) -> str:
    """UTC, microseconds always written, ``Z`` suffix (``2026-11-22T18:00:00.000000Z``): digests and exports."""
    if value.tzinfo is None:  # read back from a project with USE_TZ = False: Django stores UTC
        return value.isoformat(timespec="microseconds") + "Z"
    if value.utcoffset():
        value = value.astimezone(UTC)
    return value.isoformat(timespec="microseconds")[:-6] + "Z"  # drop "+00:00"


#: The columns an event digest covers, in order. Changing it changes every digest: bump DIGEST_VERSION.
DIGEST_FIELDS = (
    "event_type",
    "subject",
    "actor",
    "outcome",
    "source",
    "correlation_id",
    "request_id",
    "trace_id",
    "span_id",
    "client_ip",
    "user_agent",
    "route",
    "service",
    "environment",
)
DIGEST_VERSION = 1

#: Every column of an event but ``id``, in the order the writer inserts and exports write them.
EVENT_COLUMNS = ("event_id", "occurred_at", *DIGEST_FIELDS, "payload", "digest")


def digest_material_values(event_id_hex: str, occurred_at: str, values: Any, payload_text: str) -> bytes:
    """:func:`digest_material` from the DIGEST_FIELDS values in order and the time already in
    :func:`format_time`'s form (verification reads rows as tuples, with the time formatted by the database)."""
    fields = ",".join(map(_encode_string, [event_id_hex, occurred_at, *values]))
    return f"[{DIGEST_VERSION},{fields},{payload_text}]".encode()


_scan_once = json.scanner.make_scanner(json.JSONDecoder())  # the C scanner when available
if json.encoder.c_make_encoder is not None:  # the C encoder, built once (JSONEncoder.encode() builds one per call)
    # arguments: markers, default, string encoder, indent, key and item separators, sort_keys, skipkeys, allow_nan
    _encode_chunks = json.encoder.c_make_encoder(None, None, _encode_string, None, ":", ",", True, False, False)
else:  # pure-Python json

    def _encode_chunks(value: Any, _level: int) -> tuple[str]:
        return (_dumps(value),)


def _new_mac(key: bytes | None) -> Any:
    """A factory of fresh digest objects: a copy of the keyed HMAC (its key schedule done once), else SHA-256."""
    if not key:
        return hashlib.sha256
    keyed = _keyed(key)
    inner = getattr(keyed, "_hmac", None)  # the OpenSSL HMAC object: its copy() skips hmac.HMAC's Python layer
    return inner.copy if inner is not None else keyed.copy


def values_text(event_id_hex: Any, occurred_at: Any, values: Any) -> str:
    """The JSON array of ``[event id hex, time in format_time's form, *DIGEST_FIELDS values]`` (compact)."""
    return _dumps([event_id_hex, occurred_at, *values])


class RowDigester:
    """The digest each stored row's content gives: verification's hot loop, called once per fetched chunk.

    Rows are ``(id, values text, payload text, digest)``: ``values text`` is :func:`values_text` of the row (on
    PostgreSQL the server writes it with ``array_to_json``, whose string escaping is Python's), ``payload text``
    the stored JSON. The payload is decoded by the C scanner and re-encoded by one prebuilt C encoder, the MAC
    comes from a copy of the keyed state: the bytes are :func:`digest_material`'s. A row whose fast digest is not
    its stored one is recomputed the slow, exact way (both texts decoded, :func:`normalize_payload` applied) before
    it can count as changed, so the shortcut only ever saves time.
    """

    def __init__(self, key: bytes | None) -> None:
        self.key = key
        self._new_mac = _new_mac(key)

    def __call__(self, rows: Any) -> list[str | None]:
        new_mac, scan, chunks, join = self._new_mac, _scan_once, _encode_chunks, "".join
        head = f"[{DIGEST_VERSION},"
        out: list[str | None] = []
        append = out.append
        for row in rows:
            text = row[2]
            try:
                payload, end = scan(text, 0)
                if end != len(text) or type(payload) is not dict:
                    raise ValueError
                mac = new_mac()
                mac.update(f"{head}{row[1][1:-1]},{join(chunks(payload, 0))}]".encode())
                digest = mac.hexdigest()
            except (StopIteration, ValueError, TypeError, RecursionError):
                digest = None
            if digest != row[3]:
                digest = _exact_row_digest(row, self.key)
            append(digest)
        return out


def _exact_row_digest(row: Any, key: bytes | None) -> str | None:
    try:
        values = json.loads(row[1])
        if type(values) is not list or len(values) != 2 + len(DIGEST_FIELDS):
            return None
        text = row[2]
        payload = json.loads(text) if isinstance(text, str) else text
        canonical = dumps(normalize_payload(payload))
        return mac_hex(digest_material_values(values[0], values[1], values[2:], canonical), key)
    except (InvalidAuditEvent, TypeError, ValueError, RecursionError):
        return None


def mac_hex(material: bytes, key: bytes | None) -> str:
    if key:
        mac = _keyed(key).copy()
        mac.update(material)
        return mac.hexdigest()
    return hashlib.sha256(material).hexdigest()


def digest_material(event_id_hex: str, occurred_at: datetime, columns: dict[str, Any], payload_text: str) -> bytes:
    """The bytes an event digest covers: the canonical JSON array ``[version, id, time, *DIGEST_FIELDS, payload]``.

    Written with the C string encoder directly: the same text ``dumps()`` gives for that list, at a third of the
    cost, because the columns are always strings.
    """
    fields = ",".join(
        map(_encode_string, [event_id_hex, format_time(occurred_at), *map(columns.__getitem__, DIGEST_FIELDS)])
    )
    return f"[{DIGEST_VERSION},{fields},{payload_text}]".encode()


def event_digest(
    event_id_hex: str, occurred_at: datetime, columns: dict[str, Any], payload_text: str, key: bytes | None
) -> str:
    """The hex digest of one event: HMAC-SHA256 with the signing key when there is one, else SHA-256.

    ``payload_text`` is the payload's canonical text (``dumps(normalize_payload(payload))``).
    """
    material = digest_material(event_id_hex, occurred_at, columns, payload_text)
    if key:
        mac = _keyed(key).copy()  # the key schedule is computed once per key, not once per event
        mac.update(material)
        return mac.hexdigest()
    return hashlib.sha256(material).hexdigest()


@functools.lru_cache(maxsize=8)
def _keyed(key: bytes) -> hmac.HMAC:
    return hmac.new(key, digestmod=hashlib.sha256)


def stored_event_digest(event: Any, key: bytes | None) -> str:
    """Recompute the digest of an event as read back from the database (what verification compares)."""
    columns = {name: getattr(event, name) for name in DIGEST_FIELDS}
    payload_text = dumps(normalize_payload(event.payload))
    return event_digest(event.event_id.hex, event.occurred_at, columns, payload_text, key)


_key_cache: tuple[Any, bytes | None] = (None, None)


def signing_key() -> bytes | None:
    """The HMAC key from ``OBSERVABILITY["AUDIT_SIGNING_KEY"]`` as bytes, or None; cached per settings object."""
    global _key_cache
    from ..conf import settings

    conf = settings._setup()
    if _key_cache[0] is conf:
        return _key_cache[1]
    key = conf.values["AUDIT_SIGNING_KEY"]
    key_bytes = None if not key else (key.encode("utf-8") if isinstance(key, str) else bytes(key))
    _key_cache = (conf, key_bytes)
    return key_bytes
