"""Prometheus metrics: ``GET /metrics`` on prometheus_client.

What is exported (docs/metrics.md has every name, label and the catalog mapping):

* HTTP RED: ``http_requests_total{method,route,status}``, ``http_request_duration_seconds{method,route}``, recorded
  by the middleware through :func:`observe_request` once per request outside ``EXCLUDED_PATHS``;
* process: ``process_cpu_seconds_total``, ``process_resident_memory_bytes``, ``process_open_fds``,
  ``process_threads`` (summed over the live workers under gunicorn);
* database: ``db_queries_total{alias,vendor}``, ``db_query_duration_seconds{alias}``, ``db_errors_total{alias}``;
* health: ``health_ready``, ``health_check_ok{check}``, evaluated at scrape time;
* audit: ``audit_events_recorded_total{event_type}``, ``audit_events_purged_total{event_type}``,
  ``audit_verification_failures_total`` and the gauges of the last purge and verification, read from the database;
* the bucket catalog (:mod:`observability_app.metrics.bucket`), recorded through ``observability_app.bucket_metrics``;
* ``observability_metrics_series_dropped_total{metric}`` and ``observability_build_info``.

Set-up: ``ObservabilityConfig.ready()`` calls :func:`setup`. With ``OBSERVABILITY["METRICS_ENABLED"] = False``
nothing is created or connected, the middleware never calls :func:`observe_request`, the catalog helpers return at
once and /metrics answers 404. Under gunicorn with several workers set ``PROMETHEUS_MULTIPROC_DIR`` (the shipped
``example_project/gunicorn.conf.py`` does) so that every worker's counts add up.
"""

from __future__ import annotations

from typing import Any

_state = {"ready": False, "hooked": False}


def is_enabled() -> bool:
    from ..conf import settings

    return bool(settings.METRICS_ENABLED)


def setup() -> None:
    """Create the metrics and connect the database and audit hooks when ``METRICS_ENABLED`` (idempotent)."""
    from ..conf import on_reload

    if is_enabled():
        _prepare_multiprocess_directory()
    if not _state["hooked"]:
        on_reload(_on_settings_change)
        _state["hooked"] = True
    _apply(is_enabled())


def _prepare_multiprocess_directory() -> None:
    """Create ``PROMETHEUS_MULTIPROC_DIR`` when it is set but missing, before the first metric opens a file in it.

    prometheus_client would fail on the first metric with a bare ``FileNotFoundError`` (for example under
    ``manage.py migrate`` run with the variable exported for gunicorn). A directory that cannot be made or written
    stops start-up with a message that names the variable.
    """
    import os

    from django.core.exceptions import ImproperlyConfigured

    from .multiprocess import directory

    path = directory()
    if not path:
        return
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise ImproperlyConfigured(
            f"PROMETHEUS_MULTIPROC_DIR={path!r} does not exist and cannot be created ({exc.strerror}): point it to a "
            "writable local directory, one per gunicorn master, or unset it for single-process servers"
        ) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ImproperlyConfigured(
            f"PROMETHEUS_MULTIPROC_DIR={path!r} is not writable by this process: metrics could not be recorded"
        )


def _apply(enabled: bool) -> None:
    from .bucket import recording

    if enabled and not _state["ready"]:
        from prometheus_client import disable_created_metrics

        from . import audit, database, families, http, logs, priming  # noqa: F401  (families: creates the metrics)
        from .bucket import families as bucket_families

        # *_created series double the output of every counter and histogram; Prometheus does not need them.
        disable_created_metrics()
        priming.prime_catalog(bucket_families.CATALOG)
        database.install()
        audit.connect()
        http.connect()
        logs.connect()
        _state["ready"] = True
    elif enabled:
        from . import audit, database, http, logs

        database.install()
        audit.connect()
        http.connect()
        logs.connect()
    elif _state["ready"]:
        from . import audit, database, http, logs

        database.uninstall()
        audit.disconnect()
        http.disconnect()
        logs.disconnect()
    recording._enable(enabled)
    from ..conf import settings
    from . import exemplars

    exemplars.configure(enabled and bool(settings.TRACING_ENABLED))


def _on_settings_change() -> None:
    _apply(is_enabled())
    if _state["ready"]:
        from . import families, http, priming
        from .bucket import families as bucket_families

        families.refresh()
        bucket_families.refresh()
        http.clear_cache()
        priming.reset()
        priming.prime_catalog(bucket_families.CATALOG)


def observe_request(
    method: str, route: str, status: int, duration_s: float, response: Any = None, size: int | None = None
) -> None:
    """Count one request: :func:`observability_app.metrics.http.observe_request` (the middleware calls that one
    directly). A plain function, not a module ``__getattr__``, so that type checkers see it; the metrics are
    created on the first call, not when this package is imported."""
    from .http import observe_request as _observe

    _observe(method, route, status, duration_s, response, size)


__all__ = ["is_enabled", "observe_request", "setup"]
