"""The bucket metric catalog as a small API: the example project records every catalog metric through it.

Usage::

    from observability_app import bucket_metrics

    with bucket_metrics.artifact_write(bucket) as write:       # count{outcome}, duration, size
        write.size = len(content)
        ...                                                     # an exception makes the outcome "failure"
    with bucket_metrics.integrity_verify(bucket) as verify:    # count{result}, duration
        if stored_digest != client_digest:
            verify.result = "mismatch"
    bucket_metrics.digest_mismatch(bucket, stage="upload")
    bucket_metrics.version_conflict(bucket)
    with bucket_metrics.safety_scan(bucket) as scan:           # count{decision,outcome}, duration
        scan.decision = result.decision                          # an exception makes the outcome "error"
    bucket_metrics.queue_delay(bucket, seconds_waited)
    bucket_metrics.register_storage_reporter(storage_usage)    # gauges, read at scrape time

Every metric carries the bucket's hashed bin (``bin-NN``), never its name, and the standard labels. Values of the
enumerated labels outside their documented set are recorded as ``other``. With ``METRICS_ENABLED`` off every
function returns at once and the context managers do nothing.

The mapping from the design's dotted names to Prometheus names is in :mod:`observability_app.metrics.catalog`
and docs/metrics.md.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from time import perf_counter
from typing import Any

from .metrics import catalog
from .metrics.labels import OTHER, hashed_id

logger = logging.getLogger("observability_app.metrics")

_state: dict[str, Any] = {"enabled": False, "families": None}


def _enable(enabled: bool) -> None:
    """Called by ``observability_app.metrics.setup()`` and on settings changes."""
    if enabled and _state["families"] is None:
        from .metrics.families import CATALOG

        _state["families"] = CATALOG
    _state["enabled"] = enabled


def _valid(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def _label(entry: catalog.CatalogEntry, index: int, value: Any) -> str:
    allowed = entry.values[index] if index < len(entry.values) else None
    if allowed is None:
        return str(value)[:64]
    return value if value in allowed else OTHER


def count(dotted: str, bucket: Any, *labels: Any, amount: float = 1) -> None:
    """Add ``amount`` to the catalog counter ``dotted`` (``"bucket.version.conflict.count"``) for ``bucket``."""
    if not _state["enabled"] or not _valid(amount):
        return
    entry = catalog.BY_DOTTED[dotted]
    key = (hashed_id(bucket), *(_label(entry, i, value) for i, value in enumerate(labels)))
    _state["families"][dotted].child(key).inc(amount)


def observe(dotted: str, bucket: Any, value: float) -> None:
    """Observe ``value`` (seconds or bytes) in the catalog histogram ``dotted`` for ``bucket``."""
    if not _state["enabled"] or not _valid(value):
        return
    _state["families"][dotted].child((hashed_id(bucket),)).observe(value)


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
        self._record(perf_counter() - self._start, exc_type is not None)
        return False

    def _record(self, duration: float, raised: bool) -> None:
        raise NotImplementedError


class ArtifactOperation(_Timed):
    """``outcome`` starts as success; an exception or :meth:`fail` makes it failure. ``size`` in bytes."""

    __slots__ = ("_kind", "outcome", "size")

    def __init__(self, kind: str, bucket: Any) -> None:
        super().__init__(bucket)
        self._kind = kind
        self.outcome = "success"
        self.size: int | None = None

    def fail(self) -> None:
        self.outcome = "failure"

    def _record(self, duration: float, raised: bool) -> None:
        if raised:
            self.outcome = "failure"
        kind = self._kind
        count(f"bucket.artifact.{kind}.count", self.bucket, self.outcome)
        observe(f"bucket.artifact.{kind}.duration", self.bucket, duration)
        if self.outcome == "success" and self.size is not None:
            observe(f"bucket.artifact.{kind}.size", self.bucket, self.size)


class VerifyOperation(_Timed):
    """``result``: match (default), mismatch (set it), error (the block raised)."""

    __slots__ = ("result",)

    def __init__(self, bucket: Any) -> None:
        super().__init__(bucket)
        self.result = "match"

    def _record(self, duration: float, raised: bool) -> None:
        count("bucket.integrity.verify.count", self.bucket, "error" if raised else self.result)
        observe("bucket.integrity.verify.duration", self.bucket, duration)


class ScanOperation(_Timed):
    """``decision``: approved/rejected/quarantined (set it); outcome error (decision none) when the block raised."""

    __slots__ = ("decision",)

    def __init__(self, bucket: Any) -> None:
        super().__init__(bucket)
        self.decision = "none"

    def _record(self, duration: float, raised: bool) -> None:
        count(
            "bucket.safety.scan.count",
            self.bucket,
            "none" if raised else self.decision,
            "error" if raised else "success",
        )
        observe("bucket.safety.scan.duration", self.bucket, duration)


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


def artifact_write(bucket: Any) -> ArtifactOperation:
    """``bucket.artifact.write.{count,duration,size}``."""
    return ArtifactOperation("write", bucket) if _state["enabled"] else _DISABLED  # type: ignore[return-value]


def artifact_read(bucket: Any) -> ArtifactOperation:
    """``bucket.artifact.read.{count,duration,size}``."""
    return ArtifactOperation("read", bucket) if _state["enabled"] else _DISABLED  # type: ignore[return-value]


def integrity_verify(bucket: Any) -> VerifyOperation:
    """``bucket.integrity.verify.{count,duration}``: post-storage verification of the stored digest."""
    return VerifyOperation(bucket) if _state["enabled"] else _DISABLED  # type: ignore[return-value]


def safety_scan(bucket: Any) -> ScanOperation:
    """``bucket.safety.scan.{count,duration}``."""
    return ScanOperation(bucket) if _state["enabled"] else _DISABLED  # type: ignore[return-value]


def digest_mismatch(bucket: Any, stage: str) -> None:
    """``bucket.integrity.digest_mismatch.count``; stage: upload, storage, read, replication or scrub."""
    count("bucket.integrity.digest_mismatch.count", bucket, stage)


def version_conflict(bucket: Any) -> None:
    """``bucket.version.conflict.count``: a write refused because the version exists."""
    count("bucket.version.conflict.count", bucket)


def version_orphan(bucket: Any, amount: int = 1) -> None:
    """``bucket.version.orphan.count``: versions found referring to an upstream version that does not exist."""
    count("bucket.version.orphan.count", bucket, amount=amount)


def safety_rejection(bucket: Any) -> None:
    """``bucket.safety.rejection.count``."""
    count("bucket.safety.rejection.count", bucket)


def safety_false_positive(bucket: Any) -> None:
    """``bucket.safety.false_positive.count``: a rejection or quarantine overturned to approved."""
    count("bucket.safety.false_positive.count", bucket)


def queue_delay(bucket: Any, seconds: float) -> None:
    """``bucket.queue.delay.duration``: how long work waited before it started."""
    observe("bucket.queue.delay.duration", bucket, seconds)


@dataclass(frozen=True)
class StorageSample:
    """What a storage reporter returns per bucket; None leaves a gauge out."""

    bucket: str
    used_bytes: float | None = None
    capacity_bytes: float | None = None
    objects: float | None = None
    backlog: float | None = None

    def values(self) -> Iterator[tuple[str, float | None]]:
        for dotted, value in (
            ("bucket.storage.used_bytes.gauge", self.used_bytes),
            ("bucket.storage.capacity_bytes.gauge", self.capacity_bytes),
            ("bucket.storage.object_count.gauge", self.objects),
            ("bucket.storage.backlog.gauge", self.backlog),
        ):
            yield dotted, value if _valid(value) else None


StorageReporter = Callable[[], Iterable[StorageSample]]
_reporters: list[StorageReporter] = []


def register_storage_reporter(reporter: StorageReporter) -> None:
    """Register a callable returning :class:`StorageSample` per bucket; called on every scrape, keep it cheap.

    ``bucket.storage.{used_bytes,capacity_bytes,object_count,backlog}.gauge`` are read this way rather than set by
    the workers, so that every gunicorn worker (and every host) reports the same, current values.
    """
    if reporter not in _reporters:
        _reporters.append(reporter)


def unregister_storage_reporter(reporter: StorageReporter) -> None:
    if reporter in _reporters:
        _reporters.remove(reporter)


def storage_samples() -> Iterator[StorageSample]:
    """Everything the reporters return; a failing reporter is logged and skipped, never breaks /metrics."""
    if not _state["enabled"]:
        return
    for reporter in list(_reporters):
        try:
            samples = list(reporter())
        except Exception as exc:
            logger.warning("storage reporter %r failed: %s", reporter, type(exc).__name__)
            continue
        for sample in samples:
            if isinstance(sample, StorageSample):
                yield sample
