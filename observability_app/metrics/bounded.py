"""Labelled metrics behind a child cache and a hard cap on series.

``prometheus_client`` resolves ``metric.labels(...)`` on every call: it validates and joins the values and takes a
lock. :class:`Family` keeps the children in a dict keyed by the tuple of label values, so the hot path is one dict
look-up, and it refuses a new series once the metric holds ``METRICS_MAX_SERIES_PER_METRIC`` of them: the refused
observation is counted in ``observability_metrics_series_dropped_total{metric}`` instead of growing Prometheus's
memory without bound.

Under gunicorn each worker enforces the cap for itself, so the union across ``N`` workers stays below ``N`` times
the cap (in practice the workers see the same label sets and the union is the cap).
"""

from __future__ import annotations

import threading
from typing import Any

from prometheus_client import Counter

from ..conf import settings
from .registry import REGISTRY

SERIES_DROPPED = Counter(
    "observability_metrics_series_dropped_total",
    "Observations refused because their metric reached METRICS_MAX_SERIES_PER_METRIC series.",
    ["metric"],
    registry=REGISTRY,
)


class _Dropped:
    """Stands in for a child that would exceed the cap: every use counts one dropped observation."""

    __slots__ = ("_counter",)

    def __init__(self, metric_name: str) -> None:
        self._counter = SERIES_DROPPED.labels(metric_name)

    def _drop(self, *args: Any, **kwargs: Any) -> None:
        self._counter.inc()

    inc = observe = set = _drop


class Family:
    """One prometheus_client metric with cached children and a series cap.

    ``suffix`` holds label values appended to every key (the catalog's standard labels), so that callers pass only
    the labels that vary.
    """

    __slots__ = ("_lock", "children", "dropped", "metric", "name", "suffix")

    #: every family, so that a settings change can refresh their standard labels.
    instances: list[Family] = []

    def __init__(self, metric: Any, name: str, suffix: tuple[str, ...] = ()) -> None:
        self.metric = metric
        self.name = name
        self.suffix = suffix
        self.children: dict[tuple[str, ...], Any] = {}
        self.dropped = _Dropped(name)
        self._lock = threading.Lock()
        Family.instances.append(self)

    def child(self, key: tuple[str, ...]) -> Any:
        """The child for ``key`` (label values without the suffix), or a counter of drops when over the cap."""
        child = self.children.get(key)
        if child is None:
            child = self._add(key)
        return child

    def _add(self, key: tuple[str, ...]) -> Any:
        from . import seeding

        seeding.ensure()  # the first new series of the process brings the zero-valued ones with it
        with self._lock:
            child = self.children.get(key)
            if child is not None:
                return child
            if len(self.children) >= settings.METRICS_MAX_SERIES_PER_METRIC:
                return self.dropped
            child = self.metric.labels(*key, *self.suffix)
            self.children[key] = child
            return child

    def series(self) -> int:
        return len(self.children)

    def reset(self, suffix: tuple[str, ...] | None = None) -> None:
        """Forget the cached children (after a settings change); series already exported stay exported."""
        with self._lock:
            self.children = {}
            if suffix is not None:
                self.suffix = suffix
