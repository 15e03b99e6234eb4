"""Redaction of secrets and personal data, wherever the app writes something down.

One rule for logs, debug headers and CONFIG_CHANGED payloads: a key whose normalized name contains one of the
secret words (password, token, secret, authorization, cookie, api key, ...) or is listed in
``OBSERVABILITY["REDACT_FIELDS"]`` has its value replaced by ``REDACTED``, in nested dicts and lists too.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from .conf import on_reload, settings

__all__ = ["REDACTED", "SECRET_WORDS", "is_secret_key", "redact", "redact_headers", "redact_value", "scrub_text"]


REDACTED = "[REDACTED]"
SECRET_WORDS = (
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "authorization",
    "cookie",
    "session",
    "apikey",
    "api_key",
    "privatekey",
    "private_key",
    "signingkey",
    "credential",
    "csrf",
    "signature",
)
_MAX_DEPTH = 16
_NORMALIZE = re.compile(r"[^a-z0-9]")


@lru_cache(maxsize=4096)
def _is_secret_key(key: str) -> bool:
    lowered = key.lower()
    compact = _NORMALIZE.sub("", lowered)
    extra = {_NORMALIZE.sub("", str(name).lower()) for name in settings.REDACT_FIELDS or ()}
    if compact in extra:
        return True
    return any(_NORMALIZE.sub("", word) in compact for word in SECRET_WORDS)


on_reload(_is_secret_key.cache_clear)


def is_secret_key(key: Any) -> bool:
    """True when values under ``key`` must not be written down."""
    return isinstance(key, str) and _is_secret_key(key)


def redact_value(key: Any, value: Any) -> Any:
    """``value`` itself when ``key`` is harmless (with nested secrets redacted), else ``REDACTED``."""
    if is_secret_key(key):
        return REDACTED
    return redact(value)


def redact(value: Any, _depth: int = 0) -> Any:
    """A copy of ``value`` with every secret-keyed entry replaced, at any depth."""
    if _depth > _MAX_DEPTH:
        return REDACTED
    if isinstance(value, dict):
        return {key: (REDACTED if is_secret_key(key) else redact(item, _depth + 1)) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact(item, _depth + 1) for item in value]
    return value


_TEXT_SECRET = re.compile(
    # A prefixed name (api_token=, x-auth-token:, db_password=) is masked as the bare one is.
    r"(?i)\b((?:[a-z0-9]+[_-])*(?:password|passwd|pwd|secret|token|api[_-]?key|authorization|cookie|session[_-]?id"
    r"|csrf[_-]?token))"
    r"(\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|bearer\s+\S+|basic\s+\S+|[^\s,;&]+)"
)


def scrub_text(text: str) -> str:
    """Mask ``password=...``, ``token: ...``, ``Authorization: Bearer ...`` pairs inside free text."""
    if "=" not in text and ":" not in text:
        return text
    return _TEXT_SECRET.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)


def redact_headers(headers: dict[str, Any]) -> dict[str, Any]:
    """Request or response headers with secret ones (Authorization, Cookie, tokens, ...) replaced."""
    return {name: (REDACTED if is_secret_key(name) else value) for name, value in headers.items()}
