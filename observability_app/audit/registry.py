"""The catalog of audit event types.

The built-in types of SPEC section 2 are registered here through the same :func:`register` a project uses for its
own, so there is one code path for validation and retention whatever the type's origin.

Retention is a number of days, ``PERMANENT`` (never purged) or ``ARTIFACT_LIFETIME`` (purged a grace period after
the artifact's ARTIFACT_DELETED event). ``settings.OBSERVABILITY["AUDIT_RETENTION"]`` overrides the default per
type; :func:`retention_for` reads it at call time, so the purge always applies the rules in force when it runs.
"""

from __future__ import annotations

import functools
import re
import threading
from dataclasses import dataclass, field
from typing import Any

from .exceptions import UnknownEventType

__all__ = [
    "ARTIFACT_LIFETIME",
    "BUILTIN_TYPES",
    "PERMANENT",
    "EventType",
    "all_types",
    "get",
    "register",
    "register_from_settings",
    "retention_for",
    "unregister",
]


PERMANENT = "permanent"
ARTIFACT_LIFETIME = "artifact_lifetime"

_NAME_RE = re.compile(r"^[A-Z][A-Z0-9_]{1,63}$")
_YEAR = 365


@dataclass(frozen=True)
class EventType:
    """One kind of audit event.

    ``required`` maps each required payload field to the Python types it may hold (``None`` means any JSON value);
    ``choices`` restricts some fields to a set of values; ``subject_field`` names the payload field copied into the
    indexed ``subject`` column (the artifact id for the artifact events).
    """

    name: str
    required: dict[str, tuple[type, ...] | None]
    retention: int | str
    description: str = ""
    subject_field: str | None = None
    choices: dict[str, frozenset[Any]] = field(default_factory=dict)
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    outcome: str = "success"
    forbidden: frozenset[str] = frozenset()
    builtin: bool = False


_lock = threading.Lock()
_types: dict[str, EventType] = {}


def _normalize_required(required: Any) -> dict[str, tuple[type, ...] | None]:
    items = required.items() if isinstance(required, dict) else ((name, None) for name in required)
    out: dict[str, tuple[type, ...] | None] = {}
    for name, types in items:
        if not isinstance(name, str) or not name:
            raise ValueError(f"required field names must be non-empty strings, got {name!r}")
        if types is not None and not isinstance(types, tuple):
            types = (types,)
        out[name] = types
    return out


def _validate_retention(name: str, retention: Any) -> int | str:
    if retention in (PERMANENT, ARTIFACT_LIFETIME):
        return retention
    if retention is None:
        return PERMANENT
    if isinstance(retention, bool) or not isinstance(retention, int) or retention < 1:
        raise ValueError(
            f"retention for {name} must be a positive number of days, {PERMANENT!r} or {ARTIFACT_LIFETIME!r};"
            f" got {retention!r}"
        )
    return retention


def register(
    name: str,
    *,
    required: Any = (),
    retention: int | str | None,
    description: str = "",
    subject_field: str | None = None,
    choices: dict[str, Any] | None = None,
    ranges: dict[str, tuple[float, float]] | None = None,
    outcome: str = "success",
    forbidden: Any = (),
    replace: bool = False,
    _builtin: bool = False,
) -> EventType:
    """Register an event type; returns it. Registering the same name twice is an error unless ``replace``."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(f"event type names are UPPER_SNAKE_CASE, 2 to 64 characters; got {name!r}")
    event_type = EventType(
        name=name,
        required=_normalize_required(required),
        retention=_validate_retention(name, retention),
        description=description,
        subject_field=subject_field,
        choices={key: frozenset(values) for key, values in (choices or {}).items()},
        ranges=dict(ranges or {}),
        outcome=outcome,
        forbidden=frozenset(forbidden),
        builtin=_builtin,
    )
    with _lock:
        existing = _types.get(name)
        if existing is not None and not replace and existing != event_type:
            raise ValueError(f"audit event type {name} is already registered; pass replace=True to redefine it")
        _types[name] = event_type
    return event_type


def unregister(name: str) -> None:
    """Remove a project type (tests use it); built-ins stay."""
    with _lock:
        event_type = _types.get(name)
        if event_type is not None and not event_type.builtin:
            del _types[name]


def get(name: str) -> EventType:
    try:
        return _types[name]
    except (KeyError, TypeError):
        raise UnknownEventType(name, sorted(_types)) from None


def all_types() -> list[EventType]:
    return sorted(_types.values(), key=lambda t: t.name)


def retention_for(name: str) -> int | str:
    """The retention in force now for ``name``: the settings override, else the type's default."""
    from ..conf import settings

    overrides = settings.AUDIT_RETENTION or {}
    if name in overrides:
        return _validate_retention(name, overrides[name])
    return get(name).retention


def register_from_settings() -> None:
    """Register the types listed in ``OBSERVABILITY["AUDIT_EVENT_TYPES"]`` (run from ``AppConfig.ready``)."""
    from ..conf import settings

    for spec in settings.AUDIT_EVENT_TYPES or []:
        spec = dict(spec)
        name = spec.pop("name")
        retention = spec.pop("retention_days", spec.pop("retention", None))
        register(name, retention=retention, replace=True, **spec)


_STR = (str,)
_NUM = (int, float)


def _register_builtins() -> None:
    # Built-ins may be registered again (tests reload them) and are never unregistered.
    builtin = functools.partial(register, replace=True, _builtin=True)
    builtin(
        "ARTIFACT_CREATED",
        required={
            "artifact_id": _STR,
            "version": _STR,
            "client_digest": _STR,
            "stored_digest": _STR,
            "size_bytes": (int,),
            "bucket_id": _STR,
        },
        retention=7 * _YEAR,
        subject_field="artifact_id",
        description="An artifact version was stored and its digest verified after storage.",
    )
    builtin(
        "ARTIFACT_ACCESSED",
        required={"artifact_id": _STR, "version": _STR, "reader": _STR, "purpose": _STR},
        retention=2 * _YEAR,
        subject_field="artifact_id",
        description="An artifact version was read.",
    )
    builtin(
        "SAFETY_DECISION_RECORDED",
        required={
            "artifact_id": _STR,
            "decision": _STR,
            "scanner": _STR,
            "scanner_version": _STR,
            "confidence": _NUM,
        },
        choices={"decision": {"approved", "rejected", "quarantined"}},
        ranges={"confidence": (0.0, 1.0)},
        retention=PERMANENT,
        subject_field="artifact_id",
        description="A safety scanner decided on an artifact.",
    )
    builtin(
        "PROVENANCE_CHAIN_VERIFIED",
        required={"artifact_id": _STR, "upstream_refs": (list,), "result": _STR},
        choices={"result": {"verified", "failed"}},
        retention=ARTIFACT_LIFETIME,
        subject_field="artifact_id",
        description="An artifact's upstream references were checked.",
    )
    builtin(
        "ARTIFACT_DELETED",
        required={"artifact_id": _STR, "version": _STR, "reason": _STR},
        retention=7 * _YEAR,
        subject_field="artifact_id",
        description="An artifact version was deleted.",
    )
    builtin(
        "INTEGRITY_CHECK_FAILED",
        required={"artifact_id": _STR, "expected_digest": _STR, "actual_digest": _STR, "stage": _STR},
        retention=7 * _YEAR,
        subject_field="artifact_id",
        outcome="failure",
        description="A digest did not match at some stage (upload, storage, read).",
    )
    builtin(
        "SAFETY_DECISION_OVERTURNED",
        required={
            "artifact_id": _STR,
            "previous_decision": _STR,
            "new_decision": _STR,
            "overturn_reason": _STR,
        },
        choices={
            "previous_decision": {"approved", "rejected", "quarantined"},
            "new_decision": {"approved", "rejected", "quarantined"},
        },
        retention=PERMANENT,
        subject_field="artifact_id",
        description="A person overturned a safety decision.",
    )
    for name, outcome, text in (
        ("AUTH_LOGIN_SUCCEEDED", "success", "A user logged in."),
        ("AUTH_LOGIN_FAILED", "failure", "A login attempt failed."),
        ("AUTH_LOGOUT", "success", "A user logged out."),
    ):
        builtin(
            name,
            required={"username": _STR},
            forbidden={"password"},
            retention=2 * _YEAR,
            subject_field="username",
            outcome=outcome,
            description=text,
        )
    builtin(
        "ADMIN_ACTION",
        required={"object_type": _STR, "object_id": _STR, "action": _STR, "change_message": _STR},
        choices={"action": {"addition", "change", "deletion"}},
        retention=7 * _YEAR,
        subject_field="object_id",
        description="A change made through the Django admin, from the admin's own log.",
    )
    builtin(
        "CONFIG_CHANGED",
        required={"key": _STR, "old_value": None, "new_value": None},
        retention=7 * _YEAR,
        subject_field="key",
        description="A configuration value changed (secret values are redacted).",
    )
    builtin(
        "AUDIT_PURGED",
        required={"counts": (dict,), "cutoffs": (dict,), "run_id": _STR},
        retention=PERMANENT,
        subject_field="run_id",
        description="The retention purge ran; how many events of each type it removed.",
    )
    builtin(
        "LEGAL_HOLD_PLACED",
        required={"hold_id": _STR, "reason": _STR},
        retention=PERMANENT,
        subject_field="hold_id",
        description="A legal hold was placed on a subject or event type.",
    )
    builtin(
        "LEGAL_HOLD_RELEASED",
        required={"hold_id": _STR, "reason": _STR},
        retention=PERMANENT,
        subject_field="hold_id",
        description="A legal hold was lifted.",
    )
    builtin(
        "AUDIT_EXPORTED",
        required={"exported_by": _STR, "filter": (dict,), "count": (int,), "format": _STR},
        retention=7 * _YEAR,
        subject_field="exported_by",
        description="Audit events were exported (admin download or export_audit): who, which filter, how many, format.",
    )


_register_builtins()

BUILTIN_TYPES: tuple[str, ...] = tuple(t.name for t in all_types())
