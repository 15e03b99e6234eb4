"""One Django signal per built-in event type.

Send a signal with the payload fields as keyword arguments; the app's receiver stores the event in the sender's
transaction and lets validation errors propagate to the sender (``send``, not ``send_robust``), so a bad event
never disappears silently::

    from observability_app.audit import signals
    signals.artifact_created.send(
        sender=Artifact, artifact_id=..., version=..., client_digest=..., stored_digest=...,
        size_bytes=..., bucket_id=...
    )

Besides payload fields a sender may pass ``subject``, ``actor``, ``outcome`` and ``occurred_at``.
"""

from __future__ import annotations

from django.dispatch import Signal

#: Sent after an event was written (inside the caller's transaction): ``sender=AuditEvent``, ``event_type``,
#: ``count``. Metrics count events by type from it. (Defined here, beside the type signals, so that it can be
#: imported without the models; :mod:`observability_app.audit.recording` sends it.)
event_recorded = Signal()

artifact_created = Signal()
artifact_accessed = Signal()
safety_decision_recorded = Signal()
provenance_chain_verified = Signal()
artifact_deleted = Signal()
integrity_check_failed = Signal()
safety_decision_overturned = Signal()
config_changed = Signal()

#: signal -> event type; ``receivers.connect_builtin_signals`` wires each to :func:`record`.
SIGNAL_EVENT_TYPES: dict[Signal, str] = {
    artifact_created: "ARTIFACT_CREATED",
    artifact_accessed: "ARTIFACT_ACCESSED",
    safety_decision_recorded: "SAFETY_DECISION_RECORDED",
    provenance_chain_verified: "PROVENANCE_CHAIN_VERIFIED",
    artifact_deleted: "ARTIFACT_DELETED",
    integrity_check_failed: "INTEGRITY_CHECK_FAILED",
    safety_decision_overturned: "SAFETY_DECISION_OVERTURNED",
    config_changed: "CONFIG_CHANGED",
}
