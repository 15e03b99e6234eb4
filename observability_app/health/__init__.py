"""Health probes: ``/health/live``, ``/health/ready`` and the alias ``/api/v1/health``.

Usage::

    OBSERVABILITY = {
        "HEALTH_CHECKS": [
            "observability_app.health.DatabaseCheck",    # every alias in DATABASES
            "observability_app.health.MigrationsCheck",
            "observability_app.health.CacheCheck",       # only when the service cannot work without its cache
            "observability_app.health.QueueCheck",       # only when it cannot work without its broker
        ],
        "HEALTH_CHECK_TIMEOUT": 1.5,   # a hung dependency answers 503 within this bound
        "HEALTH_CACHE_SECONDS": 1.0,   # a probe flood is answered from a result at most this old
    }

A project's own check is one small class::

    from observability_app.health import HealthCheck, HealthCheckFailed

    class SearchIndexCheck(HealthCheck):
        name = "search"

        def check(self):
            if not search.ping():
                raise HealthCheckFailed("search index not answering")

Answer (200 ready, 503 not)::

    {"status": "fail", "timestamp": "2026-01-01T12:00:00.000Z",
     "checks": {"database": {"status": "fail", "duration_ms": 1500.2, "error": "timeout"},
                "migrations": {"status": "pass", "duration_ms": 0.4}}}

See docs/health.md.
"""

from .base import FAIL, PASS, CheckResult, HealthCheck, HealthCheckFailed
from .checks import CacheCheck, DatabaseCheck, MigrationsCheck, QueueCheck
from .runner import HealthReport, Runner, liveness, load_checks, readiness

__all__ = [
    "FAIL",
    "PASS",
    "CacheCheck",
    "CheckResult",
    "DatabaseCheck",
    "HealthCheck",
    "HealthCheckFailed",
    "HealthReport",
    "MigrationsCheck",
    "QueueCheck",
    "Runner",
    "liveness",
    "load_checks",
    "readiness",
]
