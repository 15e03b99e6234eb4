"""The catalog's storage gauges: reporters a project registers, read and summed per bucket bin at scrape time.

``bucket.storage.{used_bytes,capacity_bytes,object_count,backlog}.gauge`` are read this way rather than set by the
workers, so that every gunicorn worker (and every host) reports the same, current values.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..labels import STANDARD_LABEL_NAMES, hashed_id, standard_labels
from . import catalog

if TYPE_CHECKING:
    from prometheus_client.core import Metric

logger = logging.getLogger("observability_app.metrics")
#: set by ``recording._enable`` (metrics on or off): with metrics off no reporter is called.
_state: dict[str, Any] = {"enabled": False}


def _valid(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


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


class StorageCollector:
    """The catalog's storage gauges, summed per bucket bin over what the registered reporters return."""

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily  # not imported at all with metrics off

        labelnames = ["bucket", *STANDARD_LABEL_NAMES]
        families = {
            entry.dotted: GaugeMetricFamily(entry.prometheus, entry.help, labels=labelnames) for entry in catalog.GAUGES
        }
        sums: dict[str, dict[str, float]] = {dotted: {} for dotted in families}
        for sample in storage_samples():
            bin_ = hashed_id(sample.bucket)
            for dotted, value in sample.values():
                if value is None:
                    continue
                sums[dotted][bin_] = sums[dotted].get(bin_, 0.0) + float(value)
        suffix = list(standard_labels())
        for dotted, family in families.items():
            for bin_, value in sorted(sums[dotted].items()):
                family.add_metric([bin_, *suffix], value)
            yield family


__all__ = [
    "StorageCollector",
    "StorageReporter",
    "StorageSample",
    "register_storage_reporter",
    "storage_samples",
    "unregister_storage_reporter",
]
