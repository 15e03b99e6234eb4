"""What the event detail page shows beyond the columns: the payload as readable JSON, whether the event still matches
its digest, and its seal / verification state from the integrity module.

Everything an event holds came from outside (request headers, payloads written by callers), so every value is
escaped (``format_html``); nothing here marks event data safe.
"""

from __future__ import annotations

import hmac
import json
import logging
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from ..audit.canonical import signing_key, stored_event_digest
from ..audit.exceptions import InvalidAuditEvent
from ..audit.models import AuditEvent

logger = logging.getLogger("observability_app.admin")

INTEGRITY_MODULE = "observability_app.audit.integrity"


def pretty_json(value: Any) -> SafeString:
    """``value`` as indented JSON with sorted keys, escaped, in a ``<pre>``."""
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    return format_html('<pre class="obs-json">{}</pre>', text)


def digest_matches(event: AuditEvent) -> bool:
    """Whether the stored digest is still the digest of the event's stored content (under the current key)."""
    try:
        expected = stored_event_digest(event, signing_key())
    except InvalidAuditEvent:  # a payload edited behind the app's back into something that is not canonical JSON
        return False
    return hmac.compare_digest(expected, event.digest or "")


@dataclass(frozen=True)
class SealState:
    """The seal / verification state of one event as the detail page shows it."""

    summary: str
    details: dict[str, Any] = field(default_factory=dict)
    available: bool = True


_SEALED_KEYS = ("sealed", "is_sealed")
_STATE_KEYS = ("state", "status")


def seal_state(event: AuditEvent) -> SealState:
    """Ask ``integrity.event_seal_status(event)`` when the integrity module is installed.

    Without the module the page says so; an empty answer, or one that says the event is not sealed, reads "not
    sealed yet" (seals cover events written before the last ``seal_audit`` run). A failing integrity module must not
    take the audit trail's detail page down with it: the error is logged and named on the page.
    """
    try:
        integrity = import_module(INTEGRITY_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name == INTEGRITY_MODULE:
            return SealState("integrity module not installed", available=False)
        logger.exception("the integrity module could not be imported")
        return SealState(f"could not be determined: {type(exc).__name__}: {exc}", available=False)
    except ImportError as exc:
        logger.exception("the integrity module could not be imported")
        return SealState(f"could not be determined: {type(exc).__name__}: {exc}", available=False)
    status_of = getattr(integrity, "event_seal_status", None)
    if status_of is None:
        return SealState("integrity module not installed", available=False)
    try:
        status = status_of(event)
    except Exception as exc:  # shown, not raised: the rest of the page is still what the auditor came for
        logger.exception("event_seal_status failed for audit event %s", event.pk)
        return SealState(f"could not be determined: {type(exc).__name__}: {exc}", available=False)
    details = dict(status) if isinstance(status, dict) else ({"status": status} if status is not None else {})
    if not details or any(key in details and details[key] is False for key in _SEALED_KEYS):
        return SealState("not sealed yet", details)
    for key in _STATE_KEYS:
        if details.get(key) not in (None, ""):
            return SealState(str(details[key]), details)
    return SealState("sealed", details)


def render_seal_state(state: SealState) -> SafeString:
    """The seal state as a headline and a definition list of what the integrity module returned."""
    rows = format_html_join(
        "",
        "<dt>{}</dt><dd>{}</dd>",
        ((key, _text(value)) for key, value in state.details.items()),
    )
    if not state.details:
        return format_html('<strong class="obs-seal-summary">{}</strong>', state.summary)
    return format_html('<strong class="obs-seal-summary">{}</strong><dl class="obs-seal">{}</dl>', state.summary, rows)


def _text(value: Any) -> str:
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return str(value)
