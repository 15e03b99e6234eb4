"""The bucket catalog's Prometheus metrics, built from the table in :mod:`.catalog` (created on import)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from ..bounded import Family
from ..labels import STANDARD_LABEL_NAMES, standard_labels
from ..registry import REGISTRY
from . import catalog


def _catalog_family(entry: catalog.CatalogEntry) -> Family:
    labelnames = [*(("bucket",) if entry.per_bucket else ()), *entry.labels, *STANDARD_LABEL_NAMES]
    if entry.kind == "counter":
        metric = Counter(entry.prometheus, entry.help, labelnames, registry=REGISTRY)
    else:
        metric = Histogram(entry.prometheus, entry.help, labelnames, buckets=entry.buckets, registry=REGISTRY)
    return Family(metric, entry.prometheus, standard_labels())


#: dotted design name -> Family, for the recorded (non-gauge) catalog entries.
CATALOG: dict[str, Family] = {
    entry.dotted: _catalog_family(entry) for entry in catalog.CATALOG if entry.kind != "gauge"
}


def refresh() -> None:
    """After a settings change: new standard label values and series cap."""
    suffix = standard_labels()
    for family in CATALOG.values():
        family.reset(suffix)


__all__ = ["CATALOG", "refresh"]
