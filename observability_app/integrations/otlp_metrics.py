"""OTLP export of the metrics, beside /metrics, for teams moving to an OpenTelemetry collector.

With ``OBSERVABILITY["METRICS_OTLP_ENDPOINT"]`` set (env ``OBSERVABILITY_METRICS_OTLP_ENDPOINT``; the collector's
OTLP/HTTP metrics URL, e.g. ``http://otel-collector:4318/v1/metrics``) every process pushes what /metrics shows
every ``METRICS_OTLP_INTERVAL`` seconds (default 60) and once more at exit. /metrics goes on as before: the two
read the same prometheus_client collectors, so they agree.

Each Prometheus family becomes one OTLP metric: counters a cumulative monotonic sum named without ``_total``
(``http_requests_total`` -> ``http_requests``, which the collector's Prometheus exporter turns back),
gauges a gauge, histograms a cumulative explicit-bucket histogram with the same bounds, summaries their ``_count``
and ``_sum`` as sums, info families a gauge of 1. Labels are the data points' attributes. The resource carries
``service.name``, ``service.version``, ``deployment.environment`` and ``service.instance.id`` (node and pid):
under gunicorn each worker pushes its own values, and the collector adds them up by instance.

The exporter is ``opentelemetry-exporter-otlp-proto-http``, a dependency of the app already (traces use it).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Iterable
from typing import Any

from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricExportResult,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

__all__ = ["OtlpMetricsPusher", "convert", "setup"]

#: A histogram point's min and max: unknown here, so left unset in the OTLP message (the SDK annotates them
#: ``float`` but accepts None).
_UNSET: Any = None


logger = logging.getLogger(__name__)

_CUMULATIVE = AggregationTemporality.CUMULATIVE
_SCOPE = InstrumentationScope("observability_app.metrics")


def _default_registries() -> list[Any]:
    from prometheus_client import REGISTRY as DEFAULT

    from ..metrics.registry import REGISTRY

    return [REGISTRY, DEFAULT]


def convert(families: Iterable[Any], start_ns: int, now_ns: int) -> list[Metric]:
    """prometheus_client metric families as OTLP metrics (see the module docstring for the mapping)."""
    metrics: list[Metric] = []
    for family in families:
        kind = family.type
        if kind == "counter":
            points = [_point(s, start_ns, now_ns) for s in family.samples if s.name == family.name + "_total"]
            data: Any = Sum(points, _CUMULATIVE, is_monotonic=True)
        elif kind in ("gauge", "unknown", "info"):
            points = [_point(s, start_ns, now_ns) for s in family.samples if not s.name.endswith("_created")]
            data = Gauge(points)
        elif kind == "histogram":
            data = Histogram(_histogram_points(family, start_ns, now_ns), _CUMULATIVE)
        elif kind == "summary":
            for suffix in ("_count", "_sum"):
                points = [_point(s, start_ns, now_ns) for s in family.samples if s.name == family.name + suffix]
                if points:
                    metrics.append(
                        Metric(family.name + suffix, family.documentation, "", Sum(points, _CUMULATIVE, True))
                    )
            continue
        else:  # stateset, gaugehistogram: not part of what the app exposes
            continue
        if data.data_points:
            metrics.append(Metric(family.name, family.documentation, family.unit or "", data))
    return metrics


def _point(sample: Any, start_ns: int, now_ns: int) -> NumberDataPoint:
    return NumberDataPoint(dict(sample.labels), start_ns, now_ns, float(sample.value))


def _histogram_points(family: Any, start_ns: int, now_ns: int) -> list[HistogramDataPoint]:
    series: dict[tuple, dict[str, Any]] = {}
    for sample in family.samples:
        labels = {key: value for key, value in sample.labels.items() if key != "le"}
        entry = series.setdefault(
            tuple(sorted(labels.items())), {"labels": labels, "buckets": [], "count": 0, "sum": 0}
        )
        if sample.name == family.name + "_bucket":
            entry["buckets"].append((float(sample.labels["le"]), sample.value))
        elif sample.name == family.name + "_count":
            entry["count"] = int(sample.value)
        elif sample.name == family.name + "_sum":
            entry["sum"] = sample.value
    points = []
    for entry in series.values():
        cumulative = sorted(entry["buckets"])
        counts, previous = [], 0.0
        for _, value in cumulative:  # Prometheus buckets are cumulative, OTLP's are per bucket
            counts.append(int(value - previous))
            previous = value
        bounds = [bound for bound, _ in cumulative if bound != float("inf")]
        points.append(
            HistogramDataPoint(
                entry["labels"], start_ns, now_ns, entry["count"], entry["sum"], counts, bounds, _UNSET, _UNSET
            )
        )
    return points


class OtlpMetricsPusher:
    """Pushes the registries' metrics to an OTLP/HTTP endpoint, on demand or from a daemon thread."""

    def __init__(
        self,
        endpoint: str,
        interval: float = 60.0,
        *,
        registries: list[Any] | None = None,
        resource: Resource | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.endpoint = endpoint
        self.interval = interval
        self.registries = registries if registries is not None else _default_registries()
        self.resource = resource if resource is not None else _resource()
        self.exporter = OTLPMetricExporter(endpoint=endpoint, timeout=timeout)
        self.start_ns = time.time_ns()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    def collect(self) -> MetricsData:
        now_ns = time.time_ns()
        families = [family for registry in self.registries for family in registry.collect()]
        scope = ScopeMetrics(_SCOPE, convert(families, self.start_ns, now_ns), "")
        return MetricsData([ResourceMetrics(self.resource, [scope], "")])

    def push(self) -> bool:
        """One export; False (and a warning) when the endpoint refused it or could not be reached."""
        try:
            result = self.exporter.export(self.collect())
        except Exception:  # a push must never take the process down
            logger.warning("OTLP metrics export to %s failed", self.endpoint, exc_info=True)
            return False
        if result is not MetricExportResult.SUCCESS:
            logger.warning("OTLP metrics export to %s was not accepted", self.endpoint)
            return False
        return True

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="observability-otlp-metrics", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.push()

    def stop(self, *, final_push: bool = True) -> None:
        """Stop the thread, push once more (unless told not to) and close the exporter; a second call does nothing."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.stop)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 1)
            self._thread = None
        if final_push:
            self.push()
        self.exporter.shutdown()


def _resource() -> Resource:
    from ..conf import settings

    return Resource.create(
        {
            "service.name": settings.SERVICE_NAME,
            "service.version": settings.SERVICE_VERSION,
            "deployment.environment": settings.ENVIRONMENT,
            "service.instance.id": f"{settings.node}:{os.getpid()}",
        }
    )


_pusher: OtlpMetricsPusher | None = None


def setup() -> OtlpMetricsPusher | None:
    """Start the pusher when ``METRICS_OTLP_ENDPOINT`` is set (``ready()`` calls it); it stops, pushing once
    more, at interpreter exit."""
    global _pusher
    from ..conf import settings

    if not settings.METRICS_OTLP_ENDPOINT or _pusher is not None:
        return _pusher
    _pusher = OtlpMetricsPusher(settings.METRICS_OTLP_ENDPOINT, float(settings.METRICS_OTLP_INTERVAL))
    _pusher.start()
    atexit.register(_pusher.stop)
    return _pusher
