"""What the event detail page shows beyond the columns: the payload as readable JSON, and the event's integrity in
words an auditor reads.

The integrity headline is one of three states, from :func:`observability_app.audit.integrity.event_seal_status`:

* **Tampered**: a check failed. The event's stored content no longer gives its digest (changed after it was
  recorded), its digest is not the one its seal holds (rewritten after sealing), or its seal's own digest does not
  verify (the seal was altered or forged). An unsealed event whose content fails its digest is tampered too.
* **Sealed and intact**: a seal holds the event, and every check passed.
* **Not sealed yet**: no seal holds the event (it was recorded after the last ``seal_audit`` run), and its content
  still gives its digest.

Nothing is called "sealed" without the checks that say so: an answer this module does not understand reads "could
not be checked", never "intact". Whole-trail problems (removed events, a broken seal chain, a restored backup) are
``verify_audit``'s: the page points there.

Everything an event holds came from outside (request headers, payloads written by callers), so every value is
escaped (``format_html``); nothing here marks event data safe.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from ..audit.canonical import signing_key
from ..audit.integrity import event_seal_status, seal_signature_valid
from ..audit.models import AuditEvent, AuditSeal

__all__ = [
    "HEADLINES",
    "VERIFY_HINT",
    "Finding",
    "SealState",
    "pretty_json",
    "render_findings",
    "render_headline",
    "seal_state",
]


logger = logging.getLogger("observability_app.admin")

TAMPERED, SEALED, NOT_SEALED, UNKNOWN = "tampered", "sealed", "not-sealed", "unknown"
HEADLINES = {
    TAMPERED: "Tampered",
    SEALED: "Sealed and intact",
    NOT_SEALED: "Not sealed yet",
    UNKNOWN: "Could not be checked",
}
VERIFY_HINT = "Run manage.py verify_audit to have every problem of the trail named."


def pretty_json(value: Any) -> SafeString:
    """``value`` as indented JSON with sorted keys, escaped, in a ``<pre>``."""
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    return format_html('<pre class="obs-json">{}</pre>', text)


@dataclass(frozen=True)
class Finding:
    """One check of the event, in words: what was checked, what was found, and whether that is as it should be."""

    check: str
    result: str
    ok: bool | None  # None: not a pass/fail check (which seal holds the event)


@dataclass(frozen=True)
class SealState:
    """The event's integrity as the detail page says it: a state, its headline and sentence, and the checks."""

    state: str  # TAMPERED | SEALED | NOT_SEALED | UNKNOWN
    explanation: str
    findings: list[Finding] = field(default_factory=list)

    @property
    def headline(self) -> str:
        return HEADLINES[self.state]


def _when(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return str(value)


def seal_state(event: AuditEvent) -> SealState:
    """The event's integrity in words, from what ``event_seal_status`` returns.

    A failing check (an exception from the seal's data, say) is shown, not raised: the rest of the page is still what
    the auditor came for.
    """
    try:
        status = event_seal_status(event)
    except Exception as exc:  # a seal row that cannot be read is itself a finding
        logger.exception("event_seal_status failed for audit event %s", event.pk)
        return SealState(UNKNOWN, f"The seal check failed ({type(exc).__name__}: {exc}). {VERIFY_HINT}")
    if not isinstance(status, dict):
        return SealState(UNKNOWN, f"The integrity check gave no answer for this event. {VERIFY_HINT}")
    return _state_of(event, status)


def _state_of(event: AuditEvent, status: dict[str, Any]) -> SealState:
    content = status.get("content_matches_digest")
    sealed = status.get("sealed")
    findings = []
    failures = []
    if content is True:
        findings.append(Finding("Content against its digest", "matches: the event is as it was recorded", True))
    elif content is False:
        findings.append(
            Finding(
                "Content against its digest",
                "does not match: the event was changed after it was recorded (or its digest was made with another"
                " signing key)",
                False,
            )
        )
        failures.append("its content no longer matches its digest")
    if sealed is True:
        findings.append(
            Finding("Held by", f"seal #{status.get('seal_id', '?')}, written {_when(status.get('sealed_at'))}", None)
        )
        matches_seal = status.get("digest_matches_seal")
        signature = status.get("seal_signature_valid")
        if matches_seal is True:
            findings.append(Finding("Digest against the seal's copy", "matches the digest the seal holds", True))
        elif matches_seal is False:
            findings.append(
                Finding(
                    "Digest against the seal's copy",
                    "differs from the digest the seal holds: the event's digest was rewritten after sealing",
                    False,
                )
            )
            failures.append("its digest is not the one its seal holds")
        if signature is True:
            findings.append(Finding("Seal's own digest", "verifies: the seal is as it was written", True))
        elif signature is False:
            findings.append(
                Finding(
                    "Seal's own digest",
                    "does not verify: the seal was altered or forged (or made with another signing key)",
                    False,
                )
            )
            failures.append(f"its seal (#{status.get('seal_id', '?')}) does not verify")
        if not failures and content is True and matches_seal is True and signature is True:
            return SealState(
                SEALED,
                f"Seal #{status.get('seal_id', '?')} holds this event; its content, its digest and the seal all check"
                " out.",
                findings,
            )
    elif sealed is False:
        covering = _covering_seal(event)
        if covering is None:
            findings.append(Finding("Held by", "no seal yet", None))
        else:
            seal_id, verifies = covering
            findings.append(Finding("Held by", f"no seal, though seal #{seal_id}'s id range covers it", None))
            if not verifies:
                findings.append(
                    Finding(
                        "Seal's own digest",
                        f"seal #{seal_id} does not verify: the seal was altered or forged (or made with another"
                        " signing key)",
                        False,
                    )
                )
                failures.append(f"the seal whose range covers it (#{seal_id}) does not verify")
    if failures or str(status.get("summary", "")).strip().lower().startswith("tamper"):
        reasons = "; ".join(failures) or "the integrity check reports it tampered"
        return SealState(TAMPERED, f"Changed behind the app's back: {reasons}. {VERIFY_HINT}", findings)
    if sealed is False and content is True:
        return SealState(NOT_SEALED, _not_sealed_yet(event), findings)
    return SealState(UNKNOWN, f"The integrity check's answer is incomplete. {VERIFY_HINT}", findings)


def _covering_seal(event: AuditEvent) -> tuple[int, bool] | None:
    """(id, whether its own digest verifies) of the seal whose id range covers an event no seal holds, or None.

    Such an event committed late (the next seal carries it) or was inserted behind the app's back; and when that
    seal does not verify, the seal itself was altered (its list of events replaced, say), which is tampering.
    """
    seal = (
        AuditSeal.objects.using(event._state.db)
        .filter(first_id__lte=event.pk, last_id__gte=event.pk)
        .order_by("id")
        .first()
    )
    if seal is None:
        return None
    return seal.pk, seal_signature_valid(seal, signing_key())


def _not_sealed_yet(event: AuditEvent) -> str:
    """Recorded after the last seal, or (when seals already reach past its id) committed late or inserted."""
    last_sealed = AuditSeal.objects.using(event._state.db).order_by("-id").values_list("last_id", flat=True).first()
    if last_sealed is None or last_sealed < event.pk:
        return (
            "Recorded after the last seal: the next manage.py seal_audit run seals it. Its content matches its digest."
        )
    return (
        f"No seal holds it, though seals already reach past its id (up to event {last_sealed}): it committed after"
        " a seal had read its range and the next seal carries it, or it was inserted behind the app's back."
        f" {VERIFY_HINT}"
    )


def render_headline(state: SealState) -> SafeString:
    """The page's integrity headline: the state in a word or three, and the sentence that explains it."""
    return format_html(
        '<div class="obs-event-integrity obs-event-{}" role="status">'
        '<strong class="obs-seal-summary">{}</strong> <span class="obs-event-why">{}</span></div>',
        state.state,
        state.headline,
        state.explanation,
    )


def render_findings(state: SealState) -> SafeString:
    """The checks behind the headline, as a definition list in words."""
    if not state.findings:
        return format_html('<p class="obs-seal-none">{}</p>', state.explanation)
    rows = format_html_join(
        "",
        '<dt>{}</dt><dd class="obs-check-{}">{}</dd>',
        (
            (finding.check, {True: "ok", False: "failed", None: "info"}[finding.ok], finding.result)
            for finding in state.findings
        ),
    )
    return format_html('<dl class="obs-seal">{}</dl>', rows)
