"""observability_app: logs, metrics, traces, health probes and an audit trail for a Django artifact service.

Usage::

    INSTALLED_APPS = [..., "observability_app"]
    MIDDLEWARE = ["observability_app.middleware.ObservabilityMiddleware", ...]  # first
    urlpatterns = [path("", include("observability_app.urls")), ...]
    OBSERVABILITY = {"SERVICE_NAME": "artifact-service"}

Record audit events with :func:`observability_app.audit.record`. Every setting is documented in
``docs/settings.md``; ``manage.py check`` validates them.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
