"""Integrations with other libraries: one module each, on one base (:mod:`.base`).

* :mod:`observability_app.integrations.celery` (extra ``[celery]``): ids, traces, logs and metrics of Celery
  tasks and workers.
* :mod:`observability_app.integrations.sentry` (extra ``[sentry]``): errors to Sentry with the request's ids.
* :mod:`observability_app.integrations.otlp_metrics`: what /metrics shows, pushed over OTLP/HTTP too
  (``METRICS_OTLP_ENDPOINT``; the exporter is a dependency already).

This package imports no optional library: each integration module imports its own, and says which extra to
install when it is missing. ``setup()`` (called from ``ObservabilityConfig.ready()``) installs the integrations
the settings name (``CELERY_APP``, ``SENTRY_DSN``, ``METRICS_OTLP_ENDPOINT``).
"""

from __future__ import annotations

__all__ = ["setup"]


def setup() -> None:
    """Install the integrations named in the settings: ``CELERY_APP``, ``SENTRY_DSN``, ``METRICS_OTLP_ENDPOINT``.

    A missing extra stops start-up with the pip line (:class:`~.base.Integration`, and Sentry's own ImportError).
    """
    from ..conf import settings

    if settings.CELERY_APP:
        from django.utils.module_loading import import_string

        from . import celery

        try:
            app = import_string(settings.CELERY_APP)
        except ImportError:
            app = None  # reported by the system check observability_app.E044
        if app is not None:
            celery.install(app)
    if settings.SENTRY_DSN:
        from . import sentry

        sentry.setup()
    if settings.METRICS_OTLP_ENDPOINT:
        from . import otlp_metrics

        otlp_metrics.setup()
