"""Assemble what one scrape returns, as Prometheus text format 0.0.4.

Single process: the app's registry (fast path), prometheus_client's default registry (the project's own metrics,
process and Python runtime collectors), then the scrape-time collectors. Multi-process (``PROMETHEUS_MULTIPROC_DIR``
set, gunicorn): the worker files added up, process metrics summed over the live workers, then the scrape-time
collectors.

The scrape-time collectors that read the database (audit gauges, storage reporters) are skipped when the readiness
check has just found the database failing, so that a hung database cannot hang /metrics as well.

Only the text format is offered: every Prometheus accepts it, and OpenMetrics would add nothing the app uses
(exemplars, ``_created`` series).
"""

from __future__ import annotations

from prometheus_client import REGISTRY as DEFAULT_REGISTRY

from . import multiprocess
from .audit import AuditCollector
from .collectors import BuildInfoCollector, HealthCollector, StorageCollector, ThreadsCollector
from .priming import prime_http
from .registry import metrics as app_metrics
from .render import CONTENT_TYPE, TextWriter


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


def render() -> tuple[bytes, str]:
    """(body, content type) of one scrape."""
    writer = TextWriter()
    write(writer, multiprocess.directory())
    return writer.encode(), CONTENT_TYPE
