"""Receivers that turn signals into stored events. Each is a thin doorway to :func:`record`.

Connected from ``ObservabilityConfig.ready()``: the built-in type signals, Django's auth signals (AUTH_*: the
username only, never the password) and the admin's own log (ADMIN_ACTION).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db.models.signals import post_save

from ..redaction import redact_value
from .recording import record
from .signals import SIGNAL_EVENT_TYPES, config_changed

__all__ = [
    "connect_admin_log",
    "connect_auth_signals",
    "connect_builtin_signals",
    "on_log_entry_saved",
    "on_login",
    "on_login_failed",
    "on_logout",
    "record_admin_entry",
]


_RECORD_OPTIONS = ("subject", "actor", "outcome", "occurred_at")
_ADMIN_ACTIONS = {1: "addition", 2: "change", 3: "deletion"}


def _make_receiver(event_type: str):
    def receiver(sender: Any, signal: Any = None, **kwargs: Any) -> None:
        options = {name: kwargs.pop(name) for name in _RECORD_OPTIONS if name in kwargs}
        record(event_type, kwargs, **options)

    receiver.__name__ = f"record_{event_type.lower()}"
    return receiver


_receivers = {signal: _make_receiver(name) for signal, name in SIGNAL_EVENT_TYPES.items()}


def _config_changed(sender: Any, signal: Any = None, **kwargs: Any) -> None:
    """CONFIG_CHANGED: values of secret-looking keys are redacted before they reach the payload."""
    key = str(kwargs.get("key", ""))
    for name in ("old_value", "new_value"):
        if name in kwargs:
            kwargs[name] = redact_value(key, kwargs[name])
    options = {name: kwargs.pop(name) for name in _RECORD_OPTIONS if name in kwargs}
    record("CONFIG_CHANGED", kwargs, **options)


_receivers[config_changed] = _config_changed


def _username_from_credentials(credentials: dict[str, Any] | None) -> str:
    credentials = credentials or {}
    field = get_user_model().USERNAME_FIELD
    value = credentials.get(field, credentials.get("username", ""))
    return str(value)[:255] if value is not None else ""


def on_login(sender: Any, request: Any = None, user: Any = None, **kwargs: Any) -> None:
    record("AUTH_LOGIN_SUCCEEDED", {"username": user.get_username()}, actor=user.get_username())


def on_login_failed(sender: Any, credentials: dict[str, Any] | None = None, request: Any = None, **kwargs: Any) -> None:
    username = _username_from_credentials(credentials)
    record("AUTH_LOGIN_FAILED", {"username": username}, actor=username)


def on_logout(sender: Any, request: Any = None, user: Any = None, **kwargs: Any) -> None:
    username = user.get_username() if user is not None else ""
    record("AUTH_LOGOUT", {"username": username}, actor=username)


def record_admin_entry(entry: Any) -> None:
    """ADMIN_ACTION from one ``django.contrib.admin`` LogEntry."""
    content_type = entry.content_type
    object_type = f"{content_type.app_label}.{content_type.model}" if content_type else ""
    user = entry.user
    record(
        "ADMIN_ACTION",
        {
            "object_type": object_type,
            "object_id": str(entry.object_id or ""),
            "object_repr": str(entry.object_repr or ""),
            "action": _ADMIN_ACTIONS.get(entry.action_flag, "change"),
            "change_message": str(entry.get_change_message()),
        },
        actor=user.get_username() if user is not None else None,
        source="admin",
    )


def on_log_entry_saved(sender: Any, instance: Any, created: bool = False, raw: bool = False, **kwargs: Any) -> None:
    if created and not raw:
        record_admin_entry(instance)


def connect_builtin_signals() -> None:
    for signal, receiver in _receivers.items():
        signal.connect(receiver, dispatch_uid=f"observability_app.audit.{receiver.__name__}", weak=False)


def connect_auth_signals() -> None:
    from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed

    user_logged_in.connect(on_login, dispatch_uid="observability_app.audit.on_login")
    user_login_failed.connect(on_login_failed, dispatch_uid="observability_app.audit.on_login_failed")
    user_logged_out.connect(on_logout, dispatch_uid="observability_app.audit.on_logout")


def connect_admin_log() -> None:
    """ADMIN_ACTION from LogEntry rows, single (post_save) and bulk.

    Since Django 5.1 the admin writes the log of a multi-object deletion with ``bulk_create``, which sends no
    ``post_save``; the manager's ``bulk_create`` is wrapped once so those entries are audited too.
    """
    from django.contrib.admin.models import LogEntry

    post_save.connect(on_log_entry_saved, sender=LogEntry, dispatch_uid="observability_app.audit.admin_log")
    manager = LogEntry._default_manager
    if getattr(manager.bulk_create, "_observability_wrapped", False):
        return
    original = manager.bulk_create

    def bulk_create(objs: Any, *args: Any, **kwargs: Any) -> Any:
        created = original(objs, *args, **kwargs)
        for entry in created:
            record_admin_entry(entry)
        return created

    bulk_create._observability_wrapped = True  # type: ignore[attr-defined]
    manager.bulk_create = bulk_create
