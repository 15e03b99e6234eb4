"""The bucket metric catalog as a small API: the example project records every catalog metric through it.

Usage::

    from observability_app import bucket_metrics

    with bucket_metrics.artifact_write(bucket, bucket_type="model", client=user_id) as write:
        write.size = len(content)                               # count{outcome,status,bucket_type}, duration, size
        ...                                                     # an exception: outcome failure, its status (or 500)
    with bucket_metrics.artifact_read(bucket) as read:
        read.cache = "hit"                                      # count{outcome,cache,status}
    with bucket_metrics.integrity_verify(bucket) as verify:    # count{result}, duration
        if stored_digest != client_digest:
            verify.result = "mismatch"
    bucket_metrics.digest_mismatch(bucket, stage="upload")
    bucket_metrics.version_conflict(bucket, resolution="identical")
    with bucket_metrics.safety_scan(bucket, scanner_version="1.2") as scan:  # count{decision,outcome,scanner_version}
        scan.decision = result.decision                          # an exception makes the outcome "error"
    bucket_metrics.safety_rejection(bucket, reason=result.reason, scanner="clamav")
    bucket_metrics.safety_false_positive(bucket, reason="manual_review")
    with bucket_metrics.metadata_read(bucket): ...              # HEAD-style reads without the bytes
    with bucket_metrics.provenance_verify(bucket) as check:    # count{result}, duration
        check.result = "failed"
    bucket_metrics.declare_label_values("scanner_version", ["1.2"])  # open labels primed at zero
    bucket_metrics.queue_delay(bucket, seconds_waited)
    bucket_metrics.register_storage_reporter(storage_usage)    # gauges, read at scrape time

Every metric carries the bucket's hashed bin (``bin-NN``), never its name, and the standard labels. Values of the
enumerated labels outside their documented set are recorded as ``other``; open labels (scanner version, rejection
reason, scanner) keep their declared values and their first 16 others, then record ``other``. With
``METRICS_ENABLED`` off every function returns at once and the context managers do nothing.

The mapping from the design's dotted names to Prometheus names is in :mod:`observability_app.metrics.bucket.catalog`
and docs/metrics.md. Public as ``observability_app.bucket_metrics``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from time import perf_counter
from typing import Any

from ..labels import OTHER, hashed_id
from . import catalog, storage
from .storage import (
    StorageReporter,
    StorageSample,
    _valid,
    register_storage_reporter,
    storage_samples,
    unregister_storage_reporter,
)

logger = logging.getLogger("observability_app.metrics")

_state: dict[str, Any] = {"enabled": False, "families": None}


def _enable(enabled: bool) -> None:
    """Called by ``observability_app.metrics.setup()`` and on settings changes."""
    if enabled and _state["families"] is None:
        from .families import CATALOG

        _state["families"] = CATALOG
    _state["enabled"] = enabled
    storage._state["enabled"] = enabled


#: (dotted, label index) -> values an open label has kept so far (at most catalog.OPEN_LABEL_VALUES).
_open_values: dict[tuple[str, int], set[str]] = {}


def declare_label_values(label: str, values: Iterable[str]) -> None:
    """Declare the values an open label will take (``"scanner_version"``, ``"scanner"``, ``"reason"``).

    Declared values are created at zero from start-up, like the enumerated ones, so that the first scan of a new
    scanner version or the first rejection for a reason is seen by ``increase()``. Call it from ``AppConfig.ready()``.
    """
    catalog.declare(label, [str(value)[:64] for value in values if value not in (None, "")])
    if _state["enabled"]:
        from .. import priming

        priming.prime_catalog(_state["families"])


def declared_values(label: str) -> list[str]:
    return catalog.declared_values(label)


def _label(entry: catalog.CatalogEntry, index: int, value: Any) -> str:
    name = entry.labels[index]
    if name in entry.binned:
        return hashed_id(value)
    allowed = entry.values[index] if index < len(entry.values) else None
    if allowed is not None:
        return value if value in allowed else OTHER
    # An open label: bounded to its declared values plus the first OPEN_LABEL_VALUES others.
    text = str(value)[:64] if value not in (None, "") else "none"
    if text in catalog._declared.get(name, ()):
        return text
    seen = _open_values.setdefault((entry.dotted, index), set())
    if text in seen:
        return text
    if len(seen) >= catalog.OPEN_LABEL_VALUES:
        return OTHER
    seen.add(text)
    return text


def count(dotted: str, bucket: Any, *labels: Any, amount: float = 1) -> None:
    """Add ``amount`` to the catalog counter ``dotted`` (``"bucket.version.conflict.count"``) for ``bucket``."""
    if not _state["enabled"] or not _valid(amount):
        return
    entry = catalog.BY_DOTTED[dotted]
    if len(labels) != len(entry.labels):
        raise TypeError(f"{dotted} takes the labels {entry.labels}, got {len(labels)} value(s)")
    values = tuple(_label(entry, i, value) for i, value in enumerate(labels))
    key = (hashed_id(bucket), *values) if entry.per_bucket else values
    _state["families"][dotted].child(key).inc(amount)


def observe(dotted: str, bucket: Any, value: float) -> None:
    """Observe ``value`` (seconds or bytes) in the catalog histogram ``dotted`` for ``bucket``."""
    if not _state["enabled"] or not _valid(value):
        return
    _state["families"][dotted].child((hashed_id(bucket),)).observe(value)


def _status_of(exc: BaseException | None, default: int) -> str:
    """The HTTP status an exception stands for (its ``status`` attribute, as the example's errors have), else 500."""
    if exc is None:
        return str(default)
    status = getattr(exc, "status", None)
    return str(status) if isinstance(status, int) and not isinstance(status, bool) else "500"


class _Timed:
    """Base of the context managers: times the block, records when it ends (also when it raises)."""

    __slots__ = ("_start", "bucket")

    def __init__(self, bucket: Any) -> None:
        self.bucket = bucket
        self._start = 0.0

    def __enter__(self) -> Any:
        self._start = perf_counter()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        self._record(perf_counter() - self._start, exc if exc_type is not None else None)
        return False

    def _record(self, duration: float, exc: BaseException | None) -> None:
        raise NotImplementedError


class ArtifactOperation(_Timed):
    """``outcome`` starts as success; an exception or :meth:`fail` makes it failure. ``size`` in bytes.

    ``status`` is the HTTP status the operation answers with: 201/200 by default, the exception's ``status``
    attribute (or 500) when the block raised; set it to record another. Reads also say ``cache`` (hit/miss).
    """

    __slots__ = ("_kind", "bucket_type", "cache", "client", "outcome", "size", "status")

    def __init__(self, kind: str, bucket: Any, bucket_type: str = "generic", client: Any = None) -> None:
        super().__init__(bucket)
        self._kind = kind
        self.outcome = "success"
        self.size: int | None = None
        self.status: int | str | None = None
        self.bucket_type = bucket_type
        self.cache = "none"
        self.client = client

    def fail(self) -> None:
        self.outcome = "failure"

    def _record(self, duration: float, exc: BaseException | None) -> None:
        if exc is not None:
            self.outcome = "failure"
        kind = self._kind
        status = str(self.status) if self.status is not None else _status_of(exc, 201 if kind == "write" else 200)
        if kind == "write":
            count("bucket.artifact.write.count", self.bucket, self.outcome, status, self.bucket_type)
            if self.client is not None:
                count("bucket.client.write.count", None, self.client)
        else:
            count("bucket.artifact.read.count", self.bucket, self.outcome, self.cache, status)
        observe(f"bucket.artifact.{kind}.duration", self.bucket, duration)
        if self.outcome == "success" and self.size is not None:
            observe(f"bucket.artifact.{kind}.size", self.bucket, self.size)


class VerifyOperation(_Timed):
    """``result``: match (default), mismatch (set it), error (the block raised)."""

    __slots__ = ("result",)

    def __init__(self, bucket: Any) -> None:
        super().__init__(bucket)
        self.result = "match"

    def _record(self, duration: float, exc: BaseException | None) -> None:
        count("bucket.integrity.verify.count", self.bucket, "error" if exc is not None else self.result)
        observe("bucket.integrity.verify.duration", self.bucket, duration)


class ScanOperation(_Timed):
    """``decision``: approved/rejected/quarantined (set it); outcome error (decision none) when the block raised."""

    __slots__ = ("decision", "scanner_version")

    def __init__(self, bucket: Any, scanner_version: str = "") -> None:
        super().__init__(bucket)
        self.decision = "none"
        self.scanner_version = scanner_version

    def _record(self, duration: float, exc: BaseException | None) -> None:
        raised = exc is not None
        count(
            "bucket.safety.scan.count",
            self.bucket,
            "none" if raised else self.decision,
            "error" if raised else "success",
            self.scanner_version,
        )
        observe("bucket.safety.scan.duration", self.bucket, duration)


class MetadataOperation(_Timed):
    """A metadata read (no bytes): outcome success unless the block raised or :meth:`fail` was called."""

    __slots__ = ("outcome",)

    def __init__(self, bucket: Any) -> None:
        super().__init__(bucket)
        self.outcome = "success"

    def fail(self) -> None:
        self.outcome = "failure"

    def _record(self, duration: float, exc: BaseException | None) -> None:
        count("bucket.metadata.read.count", self.bucket, "failure" if exc is not None else self.outcome)
        observe("bucket.metadata.read.duration", self.bucket, duration)


class ProvenanceOperation(_Timed):
    """``result``: verified (default) or failed (set it); error when the block raised."""

    __slots__ = ("result",)

    def __init__(self, bucket: Any) -> None:
        super().__init__(bucket)
        self.result = "verified"

    def _record(self, duration: float, exc: BaseException | None) -> None:
        count("bucket.provenance.verify.count", self.bucket, "error" if exc is not None else self.result)
        observe("bucket.provenance.verify.duration", self.bucket, duration)


class _Disabled:
    """What the context managers return with metrics off: accepts the same attributes, records nothing."""

    __slots__ = ()

    def __enter__(self) -> _Disabled:
        return self

    def __exit__(self, *exc: Any) -> bool:
        return False

    def __setattr__(self, name: str, value: Any) -> None:
        pass

    def fail(self) -> None:
        pass


_DISABLED = _Disabled()


def artifact_write(bucket: Any, bucket_type: str = "generic", client: Any = None) -> ArtifactOperation:
    """``bucket.artifact.write.{count,duration,size}`` (count by outcome, status, bucket type) and, with ``client``
    (any id: it is binned), ``bucket.client.write.count``."""
    if not _state["enabled"]:
        return _DISABLED  # type: ignore[return-value]
    return ArtifactOperation("write", bucket, bucket_type, client)


def artifact_read(bucket: Any) -> ArtifactOperation:
    """``bucket.artifact.read.{count,duration,size}``; set ``read.cache`` to hit or miss when a cache answered."""
    return ArtifactOperation("read", bucket) if _state["enabled"] else _DISABLED  # type: ignore[return-value]


def integrity_verify(bucket: Any) -> VerifyOperation:
    """``bucket.integrity.verify.{count,duration}``: post-storage verification of the stored digest."""
    return VerifyOperation(bucket) if _state["enabled"] else _DISABLED  # type: ignore[return-value]


def safety_scan(bucket: Any, scanner_version: str = "") -> ScanOperation:
    """``bucket.safety.scan.{count,duration}`` by decision, outcome and scanner version."""
    return ScanOperation(bucket, scanner_version) if _state["enabled"] else _DISABLED  # type: ignore[return-value]


def metadata_read(bucket: Any) -> MetadataOperation:
    """``bucket.metadata.read.{count,duration}``: digest, size and decision read without the bytes."""
    return MetadataOperation(bucket) if _state["enabled"] else _DISABLED  # type: ignore[return-value]


def provenance_verify(bucket: Any) -> ProvenanceOperation:
    """``bucket.provenance.verify.{count,duration}``: a version's upstream references checked."""
    return ProvenanceOperation(bucket) if _state["enabled"] else _DISABLED  # type: ignore[return-value]


def digest_mismatch(bucket: Any, stage: str) -> None:
    """``bucket.integrity.digest_mismatch.count``; stage: upload, storage, read, replication or scrub."""
    count("bucket.integrity.digest_mismatch.count", bucket, stage)


def version_conflict(bucket: Any, resolution: str = "rejected") -> None:
    """``bucket.version.conflict.count``: a write refused because the version exists; resolution rejected (other
    bytes) or identical (the same digest again)."""
    count("bucket.version.conflict.count", bucket, resolution)


def version_orphan(bucket: Any, amount: int = 1) -> None:
    """``bucket.version.orphan.count``: versions found referring to an upstream version that does not exist."""
    count("bucket.version.orphan.count", bucket, amount=amount)


def safety_rejection(bucket: Any, reason: str = "", scanner: str = "") -> None:
    """``bucket.safety.rejection.count`` by the scanner's reason and the scanner (open labels: declare them)."""
    count("bucket.safety.rejection.count", bucket, reason, scanner)


def safety_false_positive(bucket: Any, reason: str = "manual_review") -> None:
    """``bucket.safety.false_positive.count``: a rejection or quarantine overturned to approved, by overturn reason
    (manual_review, scanner_bug, policy_change, allowlisted; anything else is "other")."""
    count("bucket.safety.false_positive.count", bucket, reason)


def queue_delay(bucket: Any, seconds: float) -> None:
    """``bucket.queue.delay.duration``: how long work waited before it started."""
    observe("bucket.queue.delay.duration", bucket, seconds)


__all__ = [
    "ArtifactOperation",
    "MetadataOperation",
    "ProvenanceOperation",
    "ScanOperation",
    "StorageReporter",
    "StorageSample",
    "VerifyOperation",
    "artifact_read",
    "artifact_write",
    "count",
    "declare_label_values",
    "declared_values",
    "digest_mismatch",
    "integrity_verify",
    "metadata_read",
    "observe",
    "provenance_verify",
    "queue_delay",
    "register_storage_reporter",
    "safety_false_positive",
    "safety_rejection",
    "safety_scan",
    "storage_samples",
    "unregister_storage_reporter",
    "version_conflict",
    "version_orphan",
]
