"""Tamper evidence: seals over the events, chained and keyed, and the verification that reads them back.

In the spirit of CloudTrail's log file integrity validation:

- :func:`seal` (``manage.py seal_audit``, and the purge before it deletes) writes :class:`AuditSeal` rows, each
  covering the events written since the previous one: their ids and stored digests (so verification can name an
  event), chained to the previous seal's digest, and HMAC'd with ``AUDIT_SIGNING_KEY`` when one is set. Writers never
  wait on it: it reads committed rows and takes only a sealer lock (one sealer at a time, never the writers).
- Events that commit after a seal has read their id range ("late" events: a long transaction got its id first)
  are picked up by the next seal after their commit, however many seals passed: each seal call lists the
  transactions holding the writers' lock (``watch``), and the next call re-reads the ranges those may still
  commit into (:func:`_rescan_start`, docs/audit-integrity.md "Late commits").
- Each seal's digest is also written to the ``observability_app.audit.integrity`` logger, so the log pipeline
  keeps a copy outside the database.
- :func:`verify` streams through the events in id order and through the seals, and reports by event id every event
  changed (its content no longer gives its digest, or its digest is not the sealed one), removed (sealed, gone, not
  purged), or inserted (in a sealed range but in no seal), and every seal or purge record whose digest does not
  verify (forged without the key) or whose chain is broken. Purges record what they removed per seal
  (:class:`AuditPurgeRecord`, keyed too), so legitimate purges keep verification passing.

This module is the doorway: the work lives in :mod:`.sealing`, :mod:`.verification`, :mod:`.digests` and
:mod:`.problems`.
"""

from __future__ import annotations

from .digests import (
    LEAF,
    PurgeContext,
    iter_leaves,
    leaf_ids,
    pack_leaves,
    purge_digest,
    seal_digest,
    seal_signature_valid,
    verification_digest,
)
from .problems import Problem
from .sealing import (
    SEAL_LOCK,
    SealResult,
    UnanchoredChain,
    event_seal_status,
    seal,
    seal_for,
)
from .verification import (
    DEFAULT_SAMPLE_SEALS,
    Report,
    connection_vendor,
    content_mismatches,
    hold_problems,
    last_verification,
    verify,
)

__all__ = [
    "DEFAULT_SAMPLE_SEALS",
    "LEAF",
    "SEAL_LOCK",
    "Problem",
    "PurgeContext",
    "Report",
    "SealResult",
    "UnanchoredChain",
    "connection_vendor",
    "content_mismatches",
    "event_seal_status",
    "hold_problems",
    "iter_leaves",
    "last_verification",
    "leaf_ids",
    "pack_leaves",
    "purge_digest",
    "seal",
    "seal_digest",
    "seal_for",
    "seal_signature_valid",
    "verification_digest",
    "verify",
]
