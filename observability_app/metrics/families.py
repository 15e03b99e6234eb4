"""Every metric the app records into, created once on import (``metrics.setup()`` imports it when enabled).

The bucket catalog's metrics are in :mod:`observability_app.metrics.bucket.families`.

Scrape-time values (health, audit gauges read from the database, storage gauges, process metrics, build info) are
not here: :mod:`observability_app.metrics.collectors` computes them when /metrics is served.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from .bounded import Family
from .registry import REGISTRY

HTTP_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Bytes: 100 B (an error document) .. 1 GiB (the largest artifact), with the catalog's 100 MB bound.
RESPONSE_SIZE_BUCKETS = (100, 1000, 10_000, 100_000, 1_000_000, 10_000_000, 104_857_600, 1_073_741_824)
DB_DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

HTTP_REQUESTS = Family(
    Counter(
        "http_requests_total",
        "HTTP requests, by method (allowlist, else OTHER), route template (<unmatched> when none) and status.",
        ["method", "route", "status"],
        registry=REGISTRY,
    ),
    "http_requests_total",
)
HTTP_DURATION = Family(
    Histogram(
        "http_request_duration_seconds",
        "HTTP request duration in seconds, by method and route template.",
        ["method", "route"],
        buckets=HTTP_DURATION_BUCKETS,
        registry=REGISTRY,
    ),
    "http_request_duration_seconds",
)
HTTP_RESPONSE_SIZE = Family(
    Histogram(
        "http_response_size_bytes",
        "Size of HTTP response bodies in bytes (streaming responses are not counted), by method and route template.",
        ["method", "route"],
        buckets=RESPONSE_SIZE_BUCKETS,
        registry=REGISTRY,
    ),
    "http_response_size_bytes",
)
#: Summed over the live processes under gunicorn (a dead worker's requests are no longer in flight).
HTTP_IN_FLIGHT = Gauge(
    "http_requests_in_flight",
    "HTTP requests being handled right now (every path, /metrics and probes included).",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)

DB_QUERIES = Family(
    Counter(
        "db_queries_total",
        "Database queries executed, by connection alias and vendor.",
        ["alias", "vendor"],
        registry=REGISTRY,
    ),
    "db_queries_total",
)
DB_DURATION = Family(
    Histogram(
        "db_query_duration_seconds",
        "Database query duration in seconds, by connection alias.",
        ["alias"],
        buckets=DB_DURATION_BUCKETS,
        registry=REGISTRY,
    ),
    "db_query_duration_seconds",
)
DB_ERRORS = Family(
    Counter(
        "db_errors_total",
        "Database queries that raised a database error, by connection alias.",
        ["alias"],
        registry=REGISTRY,
    ),
    "db_errors_total",
)

DB_SLOW_QUERIES = Family(
    Counter(
        "db_slow_queries_total",
        "Database queries slower than SLOW_QUERY_SECONDS (0.5 s), by connection alias.",
        ["alias"],
        registry=REGISTRY,
    ),
    "db_slow_queries_total",
)
DB_ROLLBACKS = Family(
    Counter(
        "db_rollbacks_total",
        "Transactions and savepoints rolled back, by connection alias and kind (transaction/savepoint).",
        ["alias", "kind"],
        registry=REGISTRY,
    ),
    "db_rollbacks_total",
)
DB_CONNECTIONS_OPENED = Family(
    Counter(
        "db_connections_opened_total",
        "Database connections opened, by connection alias (a rate near the request rate: no connection reuse).",
        ["alias"],
        registry=REGISTRY,
    ),
    "db_connections_opened_total",
)
DB_CONNECTIONS_IN_USE = Gauge(
    "db_connections_in_use",
    "Database connections open right now, by connection alias (summed over the live processes).",
    ["alias"],
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
DB_FAMILIES = (DB_QUERIES, DB_DURATION, DB_ERRORS, DB_SLOW_QUERIES, DB_ROLLBACKS, DB_CONNECTIONS_OPENED)

AUDIT_RECORDED = Family(
    Counter(
        "audit_events_recorded_total",
        "Audit events committed to the trail, by event type.",
        ["event_type"],
        registry=REGISTRY,
    ),
    "audit_events_recorded_total",
)
AUDIT_VERIFICATION_FAILURES = Counter(
    "audit_verification_failures_total",
    "Audit trail verifications run in this service's processes that found problems; cron runs of verify_audit are"
    " reported through audit_verification_last_problems.",
    registry=REGISTRY,
)
DEBUG_LOGGING_REFUSED = Counter(
    "observability_debug_logging_refused_total",
    "Requests that asked for X-Debug-Logging: full and were not allowed (disabled, or caller not staff/allowed).",
    registry=REGISTRY,
)


def refresh() -> None:
    """After a settings change: the series cap again (the catalog's families: ``bucket.families.refresh``)."""
    for family in (HTTP_REQUESTS, HTTP_DURATION, HTTP_RESPONSE_SIZE, *DB_FAMILIES, AUDIT_RECORDED):
        family.reset()
