"""Assemble what one scrape returns, as Prometheus text format 0.0.4.

Single process: the app's registry (fast path), prometheus_client's default registry (the project's own metrics,
process and Python runtime collectors), then the scrape-time collectors. Multi-process (``PROMETHEUS_MULTIPROC_DIR``
set, gunicorn): the worker files added up, process metrics summed over the live workers, then the scrape-time
collectors.

The scrape-time collectors that read the database (audit gauges, storage reporters) are skipped when the readiness
check has just found the database failing, so that a hung database cannot hang /metrics as well.

Text format 0.0.4 by default. With tracing on, a scraper that asks for OpenMetrics (Prometheus does) gets it, with
the trace ids of recent requests as exemplars on ``http_request_duration_seconds`` buckets
(:mod:`observability_app.metrics.exemplars`); with tracing off OpenMetrics would add nothing, and the text format is
served whatever the scraper asks.
"""

from __future__ import annotations

from prometheus_client import REGISTRY as DEFAULT_REGISTRY
from prometheus_client.utils import floatToGoString

from . import exemplars, multiprocess
from .audit import AuditCollector
from .bucket.storage import StorageCollector
from .collectors import BuildInfoCollector, HealthCollector, ThreadsCollector
from .families import HTTP_DURATION
from .priming import prime_http
from .registry import metrics as app_metrics
from .render import CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE, TextWriter


def write(writer: TextWriter, path: str | None) -> None:
    prime_http()  # a scrape before the first request already shows the HTTP series at zero
    if path:
        multiprocess.reader(path).write(writer)
        writer.collector(multiprocess.ProcessMetricsCollector(path))
    else:
        for metric in app_metrics():
            writer.wrapper(metric)
        writer.collector(DEFAULT_REGISTRY)
        writer.collector(ThreadsCollector())
    health = HealthCollector()
    writer.collector(health)
    writer.collector(BuildInfoCollector())
    if health.database_ok:
        writer.collector(AuditCollector())
        writer.collector(StorageCollector())
    if writer.openmetrics and exemplars.enabled():
        bounds = [floatToGoString(bound) for bound in HTTP_DURATION.metric._upper_bounds]
        exemplars.annotate(writer.out, writer.prefix, "http_request_duration_seconds", bounds)


def wants_openmetrics(accept: str) -> bool:
    """True when OpenMetrics is worth serving: tracing on (exemplars) and the scraper accepts it."""
    return exemplars.enabled() and "application/openmetrics-text" in (accept or "")


def render(accept: str = "") -> tuple[bytes, str]:
    """(body, content type) of one scrape; ``accept`` is the scraper's Accept header."""
    openmetrics = wants_openmetrics(accept)
    writer = TextWriter(openmetrics=openmetrics)
    write(writer, multiprocess.directory())
    return writer.encode(), OPENMETRICS_CONTENT_TYPE if openmetrics else CONTENT_TYPE
