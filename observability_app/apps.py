"""App configuration: wiring done once, in ``ready()``, never at import time."""

from __future__ import annotations

import contextlib

from django.apps import AppConfig

__all__ = ["ObservabilityConfig"]


class ObservabilityConfig(AppConfig):
    name = "observability_app"
    verbose_name = "Observability and audit"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        from . import checks  # noqa: F401  (registers the system checks)
        from .audit import receivers, registry
        from .audit.db import install_sqlite_function
        from .conf import settings, validate_hot_path

        validate_hot_path()  # gunicorn and runserver never run the checks: a wrong hot-path key stops start-up
        _apply_log_level()
        connection_created.connect(install_sqlite_function, dispatch_uid="observability_app.sqlite_gate")
        from . import database

        database.install()  # bounded connect and statement time; ImproperlyConfigured names a bad value
        # A bad entry is reported by the system check observability_app.E009; it must not stop start-up.
        with contextlib.suppress(TypeError, ValueError, KeyError):
            registry.register_from_settings()
        if settings.AUDIT_ENABLED:  # read at start-up: the receivers are connected once
            receivers.connect_builtin_signals()
            if settings.AUDIT_CAPTURE_AUTH:
                receivers.connect_auth_signals()
            if settings.AUDIT_CAPTURE_ADMIN_ACTIONS:
                receivers.connect_admin_log()
        self._connect_optional()

    def _connect_optional(self) -> None:
        """Metrics, tracing and the integrations the settings name (Celery, Sentry) set themselves up when enabled.

        Tracing first: the Celery integration orders its handlers around the Celery instrumentation's.
        """
        from . import integrations, metrics, tracing

        metrics.setup()
        tracing.setup()
        integrations.setup()


def _apply_log_level() -> None:
    """``LOG_LEVEL`` from ``OBSERVABILITY`` or ``OBSERVABILITY_LOG_LEVEL`` on the loggers ``logging_config()`` set.

    ``logging_config()`` runs in the settings module, before this dict can be read; the level it chose from the
    environment is replaced here by the resolved setting, when one was given (a default leaves LOGGING alone).
    """
    import logging

    from .conf import settings
    from .logging import uses_app_logging

    resolved = settings._setup()
    if resolved.sources.get("LOG_LEVEL") == "default" or not uses_app_logging():
        return
    level = str(resolved.values["LOG_LEVEL"]).upper()
    logging.getLogger().setLevel(level)
    logging.getLogger("django").setLevel(level)
