"""App configuration: wiring done once, in ``ready()``, never at import time."""

from __future__ import annotations

import contextlib

from django.apps import AppConfig


class ObservabilityConfig(AppConfig):
    name = "observability_app"
    verbose_name = "Observability and audit"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        from . import checks  # noqa: F401  (registers the system checks)
        from .audit import receivers, registry
        from .audit.db import install_sqlite_function
        from .conf import settings

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
