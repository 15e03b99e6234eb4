"""Values computed when /metrics is served: health, build info, process threads (storage: ``bucket.storage``).

They are read fresh in whichever process serves the scrape, so they are right under gunicorn without shared
state: health answers come from the (cached) readiness runner, storage gauges from the reporters a project
registers with :func:`observability_app.bucket_metrics.register_storage_reporter`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric

from ..conf import settings
from .labels import standard_labels
from .multiprocess import threads_of_this_process

logger = logging.getLogger("observability_app.metrics")


class HealthCollector:
    """``health_ready`` and ``health_check_ok{check}`` from the readiness checks (cached like the probes)."""

    def __init__(self) -> None:
        self.database_ok = True

    def collect(self) -> Iterator[Metric]:
        from ..health.runner import readiness

        report = readiness()
        self.database_ok = all(result.ok for result in report.checks if result.name.startswith("database"))
        yield GaugeMetricFamily("health_ready", "1 when every readiness check passes, else 0.", 1.0 if report.ok else 0)
        per_check = GaugeMetricFamily("health_check_ok", "1 when the readiness check passes, else 0.", labels=["check"])
        for result in report.checks:
            per_check.add_metric([result.name], 1.0 if result.ok else 0.0)
        yield per_check


class BuildInfoCollector:
    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "observability_build_info",
            "Always 1; the labels say which service, environment, region, version and node answered.",
            labels=["service", "environment", "region", "service_version", "node"],
        )
        info.add_metric([str(settings.SERVICE_NAME), *standard_labels()], 1.0)
        yield info


class ThreadsCollector:
    """``process_threads`` for single-process mode (prometheus_client's process collector has no thread count)."""

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("process_threads", "Number of OS threads in the process.", threads_of_this_process())
