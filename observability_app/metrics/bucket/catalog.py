"""The bucket metric catalog: design names (``bucket.{component}.{operation}.{kind}``) and their Prometheus names.

This table is the single source of truth: :mod:`observability_app.metrics.families` builds the Prometheus metrics
from it, :mod:`observability_app.bucket_metrics` records into them, and ``docs/metrics.md`` prints the mapping.
Prometheus naming rules: base units in the name (``_seconds``, ``_bytes``), counters end in ``_total``, the
component/operation become the name and the variable parts (outcome, stage, ...) become labels.

Every catalog metric carries ``bucket`` (the hashed bin of the bucket id, never the raw id) and the standard labels
``environment``, ``region``, ``service_version`` and ``node``, plus the labels listed per entry.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Seconds; the design's duration buckets (10 ms .. 5 s).
DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
#: Bytes; the design's size buckets (1 KiB .. 1 GiB), with its 100 MB (104857600) bound for large artifacts.
SIZE_BUCKETS = (1024, 16384, 262144, 1048576, 16777216, 104857600, 268435456, 1073741824)

#: Queue delay: the design's duration buckets extended to an hour, because a queued scan waits minutes, not
#: milliseconds (with the design's buckets alone every delay would land in +Inf).
QUEUE_DELAY_BUCKETS = (*DURATION_BUCKETS, 15.0, 60.0, 300.0, 900.0, 3600.0)

OUTCOMES = frozenset({"success", "failure"})
VERIFY_RESULTS = frozenset({"match", "mismatch", "error"})
SCAN_DECISIONS = frozenset({"approved", "rejected", "quarantined", "none"})
SCAN_OUTCOMES = frozenset({"success", "error"})
MISMATCH_STAGES = frozenset({"upload", "storage", "read", "replication", "scrub"})
#: HTTP statuses a write or read answers with (anything else is "other").
WRITE_STATUSES = frozenset({"201", "400", "409", "413", "500"})
READ_STATUSES = frozenset({"200", "404", "500"})
#: Bucket types of the design; a project maps its buckets onto them (anything else is "other").
BUCKET_TYPES = frozenset({"model", "dataset", "generic"})
CACHE_RESULTS = frozenset({"hit", "miss", "none"})
#: A conflicting write: refused (different bytes) or identical (the same digest again: safe for a client to ignore).
CONFLICT_RESOLUTIONS = frozenset({"rejected", "identical"})
#: Why a reviewer overturned a rejection or quarantine (free text stays in the audit event, never in a label).
OVERTURN_REASONS = frozenset({"manual_review", "scanner_bug", "policy_change", "allowlisted"})
PROVENANCE_RESULTS = frozenset({"verified", "failed", "error"})
#: An open label (scanner version, rejection reason) keeps its first values, then records "other".
OPEN_LABEL_VALUES = 16


@dataclass(frozen=True)
class CatalogEntry:
    dotted: str
    prometheus: str
    kind: str  # counter | histogram | gauge
    labels: tuple[str, ...]
    help: str
    buckets: tuple[float, ...] = ()
    #: allowed values per label, in label order (anything else is recorded as "other"); labels after these are
    #: open: their first OPEN_LABEL_VALUES values are kept, and values declared up front are primed
    values: tuple[frozenset[str], ...] = ()
    #: the tuples of the enumerated labels created at zero for every bin (None: every combination of ``values``)
    primed: tuple[tuple[str, ...], ...] | None = None
    #: False for the few entries that are not per bucket (uploads by client bin)
    per_bucket: bool = True
    #: labels whose values are ids, recorded as their hashed bin (bin-NN) and primed for every bin
    binned: tuple[str, ...] = ()


CATALOG: tuple[CatalogEntry, ...] = (
    CatalogEntry(
        "bucket.artifact.write.count",
        "bucket_artifact_write_total",
        "counter",
        ("outcome", "status", "bucket_type"),
        "Artifact writes, by outcome (success/failure), HTTP status (201/400/409/413/500) and bucket type.",
        values=(OUTCOMES, WRITE_STATUSES, BUCKET_TYPES),
        primed=tuple(
            (outcome, status, kind)
            for outcome, status in (("success", "201"), ("failure", "400"), ("failure", "409"), ("failure", "500"))
            for kind in sorted(BUCKET_TYPES)
        ),
    ),
    CatalogEntry(
        "bucket.artifact.write.duration",
        "bucket_artifact_write_duration_seconds",
        "histogram",
        (),
        "Time to store an artifact version, in seconds.",
        DURATION_BUCKETS,
    ),
    CatalogEntry(
        "bucket.artifact.write.size",
        "bucket_artifact_write_size_bytes",
        "histogram",
        (),
        "Size of artifact versions written, in bytes.",
        SIZE_BUCKETS,
    ),
    CatalogEntry(
        "bucket.artifact.read.count",
        "bucket_artifact_read_total",
        "counter",
        ("outcome", "cache", "status"),
        "Artifact reads, by outcome (success/failure), cache (hit/miss/none) and HTTP status (200/404/500).",
        values=(OUTCOMES, CACHE_RESULTS, READ_STATUSES),
        primed=(
            ("success", "hit", "200"),
            ("success", "miss", "200"),
            ("success", "none", "200"),
            ("failure", "miss", "404"),
            ("failure", "none", "404"),
            ("failure", "none", "500"),
        ),
    ),
    CatalogEntry(
        "bucket.artifact.read.duration",
        "bucket_artifact_read_duration_seconds",
        "histogram",
        (),
        "Time to read an artifact version, in seconds.",
        DURATION_BUCKETS,
    ),
    CatalogEntry(
        "bucket.artifact.read.size",
        "bucket_artifact_read_size_bytes",
        "histogram",
        (),
        "Size of artifact versions read, in bytes.",
        SIZE_BUCKETS,
    ),
    CatalogEntry(
        "bucket.integrity.digest_mismatch.count",
        "bucket_integrity_digest_mismatch_total",
        "counter",
        ("stage",),
        "Digest mismatches between the client's digest and the stored content, by stage.",
        values=(MISMATCH_STAGES,),
    ),
    CatalogEntry(
        "bucket.integrity.verify.count",
        "bucket_integrity_verify_total",
        "counter",
        ("result",),
        "Post-storage digest verifications, by result (match/mismatch/error).",
        values=(VERIFY_RESULTS,),
    ),
    CatalogEntry(
        "bucket.integrity.verify.duration",
        "bucket_integrity_verify_duration_seconds",
        "histogram",
        (),
        "Time of one post-storage digest verification, in seconds.",
        DURATION_BUCKETS,
    ),
    CatalogEntry(
        "bucket.version.conflict.count",
        "bucket_version_conflict_total",
        "counter",
        ("resolution",),
        "Writes refused because the version already exists (versions are immutable), by resolution: rejected"
        " (different bytes) or identical (the same digest again).",
        values=(CONFLICT_RESOLUTIONS,),
    ),
    CatalogEntry(
        "bucket.version.orphan.count",
        "bucket_version_orphan_total",
        "counter",
        (),
        "Versions found referring to an upstream version that does not exist.",
    ),
    CatalogEntry(
        "bucket.safety.scan.count",
        "bucket_safety_scan_total",
        "counter",
        ("decision", "outcome", "scanner_version"),
        "Safety scans, by decision, outcome (outcome=error: the scan itself failed) and scanner version.",
        values=(SCAN_DECISIONS, SCAN_OUTCOMES),
        primed=(("approved", "success"), ("rejected", "success"), ("quarantined", "success"), ("none", "error")),
    ),
    CatalogEntry(
        "bucket.safety.scan.duration",
        "bucket_safety_scan_duration_seconds",
        "histogram",
        (),
        "Time of one safety scan, in seconds.",
        DURATION_BUCKETS,
    ),
    CatalogEntry(
        "bucket.safety.rejection.count",
        "bucket_safety_rejection_total",
        "counter",
        ("reason", "scanner"),
        "Artifacts a safety scan rejected, by the scanner's reason and the scanner that rejected them.",
    ),
    CatalogEntry(
        "bucket.safety.false_positive.count",
        "bucket_safety_false_positive_total",
        "counter",
        ("reason",),
        "Rejections or quarantines later overturned to approved, by overturn reason (manual_review, scanner_bug,"
        " policy_change, allowlisted).",
        values=(OVERTURN_REASONS,),
    ),
    CatalogEntry(
        "bucket.metadata.read.count",
        "bucket_metadata_read_total",
        "counter",
        ("outcome",),
        "Metadata reads (digest, size, decision without the bytes: HEAD), by outcome.",
        values=(OUTCOMES,),
    ),
    CatalogEntry(
        "bucket.metadata.read.duration",
        "bucket_metadata_read_duration_seconds",
        "histogram",
        (),
        "Time of one metadata read, in seconds.",
        DURATION_BUCKETS,
    ),
    CatalogEntry(
        "bucket.provenance.verify.count",
        "bucket_provenance_verify_total",
        "counter",
        ("result",),
        "Provenance checks of a version's upstream references, by result (verified/failed/error).",
        values=(PROVENANCE_RESULTS,),
    ),
    CatalogEntry(
        "bucket.provenance.verify.duration",
        "bucket_provenance_verify_duration_seconds",
        "histogram",
        (),
        "Time of one provenance check, in seconds.",
        DURATION_BUCKETS,
    ),
    CatalogEntry(
        "bucket.client.write.count",
        "bucket_client_writes_total",
        "counter",
        ("client",),
        "Artifact writes by client bin (the hashed client id, bin-NN, never the raw id): the top uploaders.",
        per_bucket=False,
        binned=("client",),
    ),
    CatalogEntry(
        "bucket.storage.used_bytes.gauge",
        "bucket_storage_used_bytes",
        "gauge",
        (),
        "Bytes stored, read from the storage reporters at scrape time.",
    ),
    CatalogEntry(
        "bucket.storage.capacity_bytes.gauge",
        "bucket_storage_capacity_bytes",
        "gauge",
        (),
        "Bytes the storage may hold, read from the storage reporters at scrape time.",
    ),
    CatalogEntry(
        "bucket.storage.object_count.gauge",
        "bucket_storage_objects",
        "gauge",
        (),
        "Artifact versions stored, read from the storage reporters at scrape time.",
    ),
    CatalogEntry(
        "bucket.storage.backlog.gauge",
        "bucket_storage_backlog",
        "gauge",
        (),
        "Artifact versions waiting for processing (e.g. a safety scan), read at scrape time.",
    ),
    CatalogEntry(
        "bucket.queue.delay.duration",
        "bucket_queue_delay_seconds",
        "histogram",
        (),
        "Time work waited in the queue before it started, in seconds.",
        QUEUE_DELAY_BUCKETS,
    ),
)

BY_DOTTED: dict[str, CatalogEntry] = {entry.dotted: entry for entry in CATALOG}
GAUGES: tuple[CatalogEntry, ...] = tuple(entry for entry in CATALOG if entry.kind == "gauge")

#: label name -> values a project declared up front for an open label (primed at zero, always kept).
_declared: dict[str, list[str]] = {}


def declare(label: str, values: list[str]) -> None:
    """Add declared values of an open label (``bucket_metrics.declare_label_values`` is the public doorway)."""
    known = _declared.setdefault(label, [])
    for value in values:
        if value not in known:
            known.append(value)


def declared_values(label: str) -> list[str]:
    return list(_declared.get(label, ()))
