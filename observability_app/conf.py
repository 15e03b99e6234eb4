"""The one settings object over the one ``OBSERVABILITY`` dict.

Every key has a default (``DEFAULTS``) and a line in ``docs/settings.md``. Values that operators change per
environment can also come from environment variables (``ENVIRONMENT_VARIABLES``); an environment variable wins over
the settings dict, so a deployment changes log level or sampling without a code edit.

The object is built lazily on first use and rebuilt when Django's ``setting_changed`` signal reports a change to
``OBSERVABILITY`` (``override_settings`` in tests). Validation lives in :mod:`observability_app.checks`, so that
``manage.py check`` reports every problem at once with a stable id instead of failing on the first request.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any

from django.conf import settings as django_settings
from django.core.signals import setting_changed
from django.dispatch import receiver

#: Every key of ``OBSERVABILITY`` with its default. ``docs/settings.md`` documents each one.
DEFAULTS: dict[str, Any] = {
    # Identity, carried on every log line, metric and audit event.
    "SERVICE_NAME": "artifact-service",
    "ENVIRONMENT": "development",
    "REGION": "local",
    "SERVICE_VERSION": "0.0.0",
    "NODE": None,  # None: the host name
    # Logging.
    "LOG_LEVEL": "INFO",
    "LOG_FORMAT": "default",  # default (docs/logging.md's field names) | ecs (Elastic Common Schema names)
    "ACCESS_LOG_ENABLED": True,
    "ACCESS_LOG_SAMPLE_RATE": 1.0,  # errors (4xx/5xx) are never sampled out
    "ACCESS_LOG_INCLUDE_QUERY": False,
    "EXCLUDED_PATHS": ["/metrics", "/health/"],  # prefixes left out of access logs, metrics and traces
    "TRUSTED_PROXIES": [],  # networks whose X-Forwarded-For is believed
    "REDACT_FIELDS": [],  # extra key names to redact, on top of the built-in secret names
    "DEBUG_LOGGING_ENABLED": False,
    "DEBUG_LOGGING_NETWORKS": [],  # networks allowed to ask for X-Debug-Logging: full (staff users always may)
    "CORRELATION_ID_MAX_LENGTH": 128,
    # Metrics.
    "METRICS_ENABLED": True,
    "METRICS_TOKEN": None,  # bearer token that /metrics demands when set
    "METRICS_ALLOWED_NETWORKS": [],  # when non-empty, only these networks may scrape
    "METRICS_MAX_SERIES_PER_METRIC": 2000,
    "METRICS_ID_BUCKETS": 64,  # bucket/user/client ids are hashed into this many bins
    "METRICS_OTLP_ENDPOINT": None,  # OTLP/HTTP metrics URL: push what /metrics shows there too (integrations)
    "METRICS_OTLP_INTERVAL": 60.0,  # seconds between OTLP pushes
    # Tracing.
    "TRACING_ENABLED": False,
    "TRACE_SAMPLE_RATE": 1.0,
    "TRACE_EXPORTER": "otlp",  # otlp | console | none
    "OTLP_ENDPOINT": None,  # None: the OTEL_EXPORTER_OTLP_* variables or the exporter's default
    # Health.
    "HEALTH_CHECKS": [
        "observability_app.health.DatabaseCheck",
        "observability_app.health.MigrationsCheck",
    ],
    "HEALTH_CHECK_TIMEOUT": 1.5,  # seconds; a hung dependency answers 503 within this bound
    "HEALTH_CACHE_SECONDS": 1.0,  # a probe flood is answered from a result at most this old
    "HEALTH_CACHE_ALIAS": "default",  # the Django cache CacheCheck writes to (when listed in HEALTH_CHECKS)
    "HEALTH_QUEUE_URL": None,  # redis://host:6379 or amqp://host:5672 that QueueCheck probes (when listed)
    # Database time (PostgreSQL; observability_app.database, docs/deployment.md).
    "DATABASE_CONNECT_TIMEOUT": 2.0,  # seconds; libpq connect_timeout of aliases whose OPTIONS set none (min 2)
    "DATABASE_STATEMENT_TIMEOUT": 5.0,  # seconds a statement of a request may take; the client gives up 1 s later
    "DATABASE_RETRY_SECONDS": 1.0,  # while the database is down: how often it is probed, the 503's Retry-After
    # Audit trail.
    "AUDIT_ENABLED": True,
    "AUDIT_RETENTION": {},  # {"ARTIFACT_ACCESSED": 730, ...}: days, or None for permanent
    "AUDIT_EVENT_TYPES": [],  # project types: [{"name": ..., "required": [...], "retention_days": ...}]
    "AUDIT_MAX_PAYLOAD_BYTES": 65536,
    "AUDIT_SIGNING_KEY": None,  # HMAC key for event digests and seals; keep it outside the database
    "AUDIT_PURGE_BATCH_SIZE": 20000,
    "AUDIT_ARTIFACT_GRACE_DAYS": 30,  # lifetime types go this long after ARTIFACT_DELETED
    "AUDIT_SEAL_MAX_EVENTS": 100000,
    "AUDIT_CHECKPOINT_FILE": None,  # file outside the database that every seal's checkpoint is appended to
    "AUDIT_CHECKPOINT_SINKS": [],  # dotted paths of extra CheckpointSink classes (object storage, ...)
    "AUDIT_CAPTURE_ADMIN_ACTIONS": True,
    "AUDIT_CAPTURE_AUTH": True,
    # Compliance browser (the audit events in the Django admin).
    "ADMIN_COUNT_LIMIT": 10000,  # rows counted exactly; past this the changelist shows an estimate
    "ADMIN_MAX_PAGE_DEPTH": 1000000,  # rows a changelist page may start past; deeper pages ask for a filter
    "ADMIN_EXPORT_CHUNK_SIZE": 2000,  # rows fetched per round trip while an export streams
    "ADMIN_TRACE_URL": None,  # tracing UI link for a trace id, e.g. "http://jaeger:16686/trace/{trace_id}"
    # Error tracking (docs/settings.md).
    "SENTRY_DSN": None,  # set: unhandled errors go to Sentry with the request's ids (extra [sentry])
    "SENTRY_SAMPLE_RATE": 1.0,  # share of error events sent
    # Background work (Celery integration, worker probes and metrics; docs/workers.md).
    "CELERY_APP": None,  # dotted path of the project's Celery app: the integration installs itself in ready()
    "TRACE_SAMPLE_RATES": {"production": 0.05, "staging": 0.25},  # by ENVIRONMENT, when TRACE_SAMPLE_RATE is unset
    "TRACE_SAMPLING_RULES": [],  # [{"path": "/api/v1/buckets/", "rate": 0.5}]: new traces, first prefix match wins
    "WORKER_METRICS_PORT": None,  # port a worker serves /metrics, /health/live, /health/ready on; None: no port
    "WORKER_METRICS_ADDRESS": "0.0.0.0",  # address that port listens on
    "WORKER_PUSHGATEWAY_URL": None,  # http(s)://pushgateway:9091: push the worker's metrics when pull is blocked
    "WORKER_PUSH_INTERVAL": 15.0,  # seconds between pushes
    "WORKER_HEARTBEAT_INTERVAL": 5.0,  # seconds between heartbeats of the worker's consumer loop
    "WORKER_HEARTBEAT_MAX_AGE": 30.0,  # liveness fails when the last heartbeat is older than this
    "WORKER_STATE_FILE": None,  # where the heartbeat is written for `manage.py worker_probe`; None: temp dir
    "WORKER_BACKLOG_QUEUES": None,  # queue names whose depth the worker reports; None: the queues it consumes
}

#: Environment variables read on top of the settings dict: variable -> (key, parser name).
ENVIRONMENT_VARIABLES: dict[str, str] = {
    "OBSERVABILITY_SERVICE_NAME": "SERVICE_NAME",
    "OTEL_SERVICE_NAME": "SERVICE_NAME",
    "OBSERVABILITY_ENVIRONMENT": "ENVIRONMENT",
    "OBSERVABILITY_REGION": "REGION",
    "OBSERVABILITY_SERVICE_VERSION": "SERVICE_VERSION",
    "OBSERVABILITY_NODE": "NODE",
    "OBSERVABILITY_LOG_LEVEL": "LOG_LEVEL",
    "OBSERVABILITY_LOG_FORMAT": "LOG_FORMAT",
    "OBSERVABILITY_ACCESS_LOG_SAMPLE_RATE": "ACCESS_LOG_SAMPLE_RATE",
    "OBSERVABILITY_METRICS_ENABLED": "METRICS_ENABLED",
    "OBSERVABILITY_METRICS_TOKEN": "METRICS_TOKEN",
    "OBSERVABILITY_METRICS_OTLP_ENDPOINT": "METRICS_OTLP_ENDPOINT",
    "OBSERVABILITY_METRICS_OTLP_INTERVAL": "METRICS_OTLP_INTERVAL",
    "OBSERVABILITY_TRACING_ENABLED": "TRACING_ENABLED",
    "OBSERVABILITY_TRACE_SAMPLE_RATE": "TRACE_SAMPLE_RATE",
    "OTEL_TRACES_SAMPLER_ARG": "TRACE_SAMPLE_RATE",
    "OBSERVABILITY_TRACE_EXPORTER": "TRACE_EXPORTER",
    "OTEL_TRACES_EXPORTER": "TRACE_EXPORTER",
    "OBSERVABILITY_HEALTH_QUEUE_URL": "HEALTH_QUEUE_URL",
    "OBSERVABILITY_DATABASE_CONNECT_TIMEOUT": "DATABASE_CONNECT_TIMEOUT",
    "OBSERVABILITY_DATABASE_STATEMENT_TIMEOUT": "DATABASE_STATEMENT_TIMEOUT",
    "OBSERVABILITY_AUDIT_SIGNING_KEY": "AUDIT_SIGNING_KEY",
    "OBSERVABILITY_AUDIT_CHECKPOINT_FILE": "AUDIT_CHECKPOINT_FILE",
    "OBSERVABILITY_SENTRY_DSN": "SENTRY_DSN",
    "SENTRY_DSN": "SENTRY_DSN",
    "OBSERVABILITY_SENTRY_SAMPLE_RATE": "SENTRY_SAMPLE_RATE",
    "OBSERVABILITY_WORKER_METRICS_PORT": "WORKER_METRICS_PORT",
    "OBSERVABILITY_WORKER_PUSHGATEWAY_URL": "WORKER_PUSHGATEWAY_URL",
    "OBSERVABILITY_WORKER_STATE_FILE": "WORKER_STATE_FILE",
    "OBSERVABILITY_WORKER_HEARTBEAT_MAX_AGE": "WORKER_HEARTBEAT_MAX_AGE",
    "OBSERVABILITY_WORKER_HEARTBEAT_INTERVAL": "WORKER_HEARTBEAT_INTERVAL",
    "OBSERVABILITY_WORKER_PUSH_INTERVAL": "WORKER_PUSH_INTERVAL",
    "OBSERVABILITY_WORKER_BACKLOG_QUEUES": "WORKER_BACKLOG_QUEUES",  # comma-separated
    "OBSERVABILITY_ADMIN_TRACE_URL": "ADMIN_TRACE_URL",
}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class EnvironmentValueError(ValueError):
    """An environment variable holds a value its key cannot take; the message names both."""


def _parse_env(variable: str, key: str, raw: str) -> Any:
    default = DEFAULTS[key]
    if isinstance(default, bool):
        lowered = raw.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise EnvironmentValueError(f"{variable}={raw!r}: expected one of 1/0, true/false, yes/no, on/off")
    if isinstance(default, float):
        try:
            return float(raw)
        except ValueError:
            raise EnvironmentValueError(f"{variable}={raw!r}: expected a number such as 0.25") from None
    return raw


@dataclass(frozen=True)
class ObservabilitySettings:
    """Resolved settings: defaults, then ``settings.OBSERVABILITY``, then environment variables.

    Attribute access by key name (``conf.settings.SERVICE_NAME``). Unknown keys in the dict are kept out of the
    object and reported by the system check ``observability_app.E001``.
    """

    values: dict[str, Any]
    unknown_keys: tuple[str, ...]
    env_errors: tuple[str, ...]
    sources: dict[str, str]

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(f"OBSERVABILITY has no setting {name!r}") from None

    @property
    def node(self) -> str:
        return self.values["NODE"] or socket.gethostname()


def build_settings(user: Any = None, environ: dict[str, str] | None = None) -> ObservabilitySettings:
    """Merge defaults, the ``OBSERVABILITY`` dict and the environment into one object."""
    if user is None:
        user = getattr(django_settings, "OBSERVABILITY", {}) or {}
    environ = os.environ if environ is None else environ
    values = dict(DEFAULTS)
    sources = dict.fromkeys(DEFAULTS, "default")
    unknown: list[str] = []
    if isinstance(user, dict):
        for key, value in user.items():
            if key in DEFAULTS:
                values[key] = value
                sources[key] = "settings"
            else:
                unknown.append(str(key))
    errors: list[str] = []
    for variable, key in ENVIRONMENT_VARIABLES.items():
        raw = environ.get(variable)
        if raw is None or (variable.startswith(("OTEL_", "SENTRY_")) and sources[key] == "env"):
            continue
        try:
            values[key] = _parse_env(variable, key, raw)
            sources[key] = "env"
        except EnvironmentValueError as exc:
            errors.append(str(exc))
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() in _TRUE:
        values["TRACING_ENABLED"] = False
        sources["TRACING_ENABLED"] = "env"
    return ObservabilitySettings(values, tuple(unknown), tuple(errors), sources)


class _LazySettings:
    """Module-level handle that builds the settings on first access and forgets them on change."""

    _wrapped: ObservabilitySettings | None = None

    def _setup(self) -> ObservabilitySettings:
        if self._wrapped is None:
            self._wrapped = build_settings()
        return self._wrapped

    def reload(self) -> None:
        self._wrapped = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._setup(), name)


settings = _LazySettings()


@receiver(setting_changed)
def _reload_on_change(*, setting: str, **kwargs: Any) -> None:
    if setting == "OBSERVABILITY":
        settings.reload()
        for callback in list(_reload_callbacks):
            callback()


_reload_callbacks: list = []


def on_reload(callback) -> None:
    """Register a callable run after the settings change (modules that cache derived values use it)."""
    if callback not in _reload_callbacks:
        _reload_callbacks.append(callback)
