"""System checks: configuration mistakes reported by ``manage.py check`` with stable ids.

Ids are part of the public interface (runbooks and CI greps name them): never reuse a retired id.

==========================  =============================================================================
``observability_app.E001``  ``OBSERVABILITY`` is not a dict, or holds a key the app does not know
``observability_app.E002``  an environment variable holds a value its setting cannot take
``observability_app.E003``  a sampling rate is outside 0..1
``observability_app.E004``  ``LOG_LEVEL`` is not a logging level name
``observability_app.E005``  a network list (``TRUSTED_PROXIES``, ...) holds something that is not a network
``observability_app.E006``  ``TRACE_EXPORTER`` is not otlp, console or none
``observability_app.E007``  ``AUDIT_RETENTION`` names an unknown type or an invalid retention
``observability_app.E008``  a size, count or timeout setting is not a positive number
``observability_app.E009``  ``AUDIT_EVENT_TYPES`` holds an entry that cannot be registered
``observability_app.E010``  a text setting (service name, environment, ...) is empty or not a string
``observability_app.E011``  a list setting is not a list of strings
``observability_app.E012``  ``LOG_FORMAT`` is not default or ecs
``observability_app.W001``  ``ObservabilityMiddleware`` is not in ``MIDDLEWARE``
``observability_app.W002``  ``ObservabilityMiddleware`` is not first in ``MIDDLEWARE``
``observability_app.W003``  no ``AUDIT_SIGNING_KEY`` outside development: seals can be recomputed by a DB admin
``observability_app.W005``  ``OBSERVABILITY`` uses a key's old name (``HEALTH_CACHE_SECONDS``, ``METRICS_ID_BUCKETS``)
``observability_app.W006``  the app's JSON logging is not configured (no ``LOGGING = logging_config()``)
``observability_app.W004``  outside development, the database role can update, delete or truncate audit tables
                            (or owns them, or is a superuser): ``manage.py audit_db_roles`` prints the fix
``observability_app.E030``  a ``HEALTH_CHECKS`` entry cannot be imported or is not a ``HealthCheck`` subclass
``observability_app.E031``  ``METRICS_TOKEN`` is set but is not a non-empty string
``observability_app.E032``  ``PROMETHEUS_MULTIPROC_DIR`` is set but is not a writable directory
``observability_app.E033``  ``HEALTH_QUEUE_URL`` is not a redis://, amqp:// or tcp:// URL with a host
``observability_app.E034``  ``CacheCheck`` is listed but ``HEALTH_CACHE_ALIAS`` names no cache in ``CACHES``
``observability_app.E035``  ``OTLP_ENDPOINT`` or ``METRICS_OTLP_ENDPOINT`` is not an http(s) URL
``observability_app.E036``  ``HEALTH_CACHE_SECONDS`` is not a number of seconds of at least 0
``observability_app.E037``  ``METRICS_ENABLED`` or ``TRACING_ENABLED`` is not True or False
``observability_app.E038``  ``QueueCheck`` is listed but ``HEALTH_QUEUE_URL`` is not set
``observability_app.W030``  /metrics is open to anyone in a production environment (no token, no allowlist)
``observability_app.W031``  ``HEALTH_CHECK_TIMEOUT`` is above 5 s: orchestrators' probes time out first
``observability_app.E040``  ``WORKER_METRICS_PORT`` is not a port number
``observability_app.E041``  ``WORKER_PUSHGATEWAY_URL`` is not an http(s) URL with a host
``observability_app.E042``  a worker interval (``WORKER_HEARTBEAT_INTERVAL``, ...) is not a number of seconds above 0
``observability_app.E043``  ``TRACE_SAMPLE_RATES`` or ``TRACE_SAMPLING_RULES`` holds an entry that is not valid
``observability_app.E044``  ``CELERY_APP`` cannot be imported, is not a Celery app, or Celery is not installed
``observability_app.E045``  ``WORKER_BACKLOG_QUEUES`` is not None or a list of queue names
``observability_app.W040``  tracing is on but an installed library (psycopg, redis, ...) has no instrumentation
``observability_app.W041``  a worker port or Pushgateway is set without ``PROMETHEUS_MULTIPROC_DIR``
``observability_app.E070``  a compliance-browser setting (``ADMIN_COUNT_LIMIT``, ...) is not a positive integer
``observability_app.W070``  ``ADMIN_COUNT_LIMIT`` is so high that every changelist view may count that many rows
``observability_app.E071``  ``ADMIN_TRACE_URL`` is not an http(s) URL template holding ``{trace_id}``
==========================  =============================================================================
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings as django_settings
from django.core.checks import Error, Tags, Warning, register

from .conf import (
    DEFAULTS,
    DEVELOPMENT_ENVIRONMENTS,
    RENAMED,
    build_settings,
    environment_value,
    is_production,
    problems,
)

MIDDLEWARE_PATH = "observability_app.middleware.ObservabilityMiddleware"
_ID = "observability_app.{}"
_DEVELOPMENT_ENVIRONMENTS = DEVELOPMENT_ENVIRONMENTS


def _debug() -> bool:
    return bool(getattr(django_settings, "DEBUG", False))


def _error(number: str, msg: str, hint: str) -> Error:
    return Error(msg, hint=hint, id=_ID.format(number))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@register(Tags.compatibility)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """Validate every key of ``OBSERVABILITY``; each problem is one message naming the key and the fix."""
    raw = getattr(django_settings, "OBSERVABILITY", {})
    if not isinstance(raw, dict):
        return [
            _error("E001", f"OBSERVABILITY must be a dict, got {type(raw).__name__}.", "Write OBSERVABILITY = {...}.")
        ]
    conf = build_settings(raw)
    values = conf.values
    errors: list[Any] = []
    for key in conf.unknown_keys:
        errors.append(
            _error("E001", f"OBSERVABILITY[{key!r}] is not a setting of observability_app.", "See docs/settings.md.")
        )
    for message in conf.env_errors:
        errors.append(_error("E002", f"Environment variable: {message}.", "Fix or unset the variable."))
    for check_id, message, hint in problems(conf):  # every key's own validator (conf.SCHEMA)
        errors.append(_error(check_id, message, hint))
    for old in conf.renamed_keys:
        errors.append(
            Warning(
                f"OBSERVABILITY[{old!r}] is the old name of {RENAMED[old]!r}; it still works.",
                hint=f"Rename it to {RENAMED[old]!r}.",
                id=_ID.format("W005"),
            )
        )
    errors.extend(_check_retention(values["AUDIT_RETENTION"]))
    errors.extend(_check_event_types(values["AUDIT_EVENT_TYPES"]))
    key = values["AUDIT_SIGNING_KEY"]
    if key is not None and not isinstance(key, str | bytes):
        errors.append(_error("E010", "OBSERVABILITY['AUDIT_SIGNING_KEY'] must be a string.", "Read it from a secret."))
    elif not key and is_production(values, conf.sources):
        errors.append(
            Warning(
                "OBSERVABILITY['AUDIT_SIGNING_KEY'] is not set: a database administrator could recompute the audit"
                " trail's seals after tampering.",
                hint="Set OBSERVABILITY_AUDIT_SIGNING_KEY from a secret store outside the database.",
                id=_ID.format("W003"),
            )
        )
    return errors


def _check_retention(retention: Any) -> list[Any]:
    from .audit import registry

    if not isinstance(retention, dict):
        return [
            _error("E007", "OBSERVABILITY['AUDIT_RETENTION'] must be a dict of type -> days.", f"Got {retention!r}.")
        ]
    errors = []
    known = {event_type.name for event_type in registry.all_types()}
    for name, value in retention.items():
        if name not in known:
            errors.append(
                _error(
                    "E007", f"AUDIT_RETENTION names unknown event type {name!r}.", "Register the type or fix the name."
                )
            )
            continue
        try:
            registry._validate_retention(name, value)
        except ValueError as exc:
            errors.append(_error("E007", f"AUDIT_RETENTION[{name!r}]: {exc}.", "Use days (int), None or 'permanent'."))
    return errors


def _check_event_types(entries: Any) -> list[Any]:
    if not isinstance(entries, list | tuple):
        return [_error("E009", "OBSERVABILITY['AUDIT_EVENT_TYPES'] must be a list of dicts.", f"Got {entries!r}.")]
    errors = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            errors.append(_error("E009", f"AUDIT_EVENT_TYPES entry {entry!r} has no 'name'.", "Give each a name."))
            continue
        unknown = set(entry) - {
            "name",
            "required",
            "retention",
            "retention_days",
            "description",
            "subject_field",
            "choices",
            "outcome",
            "forbidden",
        }
        if unknown:
            errors.append(
                _error(
                    "E009",
                    f"AUDIT_EVENT_TYPES entry {entry['name']!r} has unknown keys {sorted(unknown)}.",
                    "Allowed: name, required, retention_days, description, subject_field, choices, outcome.",
                )
            )
    return errors


@register(Tags.compatibility)
def check_logging(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """W006: the app's JSON logging is not configured, so no line is JSON and no access line is written anywhere
    a collector reads."""
    from .logging import uses_app_logging

    if uses_app_logging():
        return []
    return [
        Warning(
            "No handler of the root or the access logger formats with observability_app.logging.JsonFormatter: log"
            " lines are not JSON and access lines go nowhere a collector reads.",
            hint="In settings: from observability_app.logging import logging_config; LOGGING = logging_config().",
            id=_ID.format("W006"),
        )
    ]


@register(Tags.compatibility)
def check_middleware(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    middleware = list(getattr(django_settings, "MIDDLEWARE", None) or [])
    if MIDDLEWARE_PATH not in middleware:
        return [
            Warning(
                f"{MIDDLEWARE_PATH} is not in MIDDLEWARE: requests get no correlation ids, access log or metrics.",
                hint=f"Add {MIDDLEWARE_PATH!r} at the top of MIDDLEWARE.",
                id=_ID.format("W001"),
            )
        ]
    # Tracing inserts OpenTelemetry's middleware at the very top, on purpose: the span then covers ours.
    middleware = [entry for entry in middleware if not entry.startswith("opentelemetry.instrumentation.django")]
    if middleware[0] != MIDDLEWARE_PATH:
        return [
            Warning(
                f"{MIDDLEWARE_PATH} is not first in MIDDLEWARE: the middleware above it is not timed or seen.",
                hint="Move it to the top of MIDDLEWARE.",
                id=_ID.format("W002"),
            )
        ]
    return []


# Metrics, tracing and health (ids E030-E049, W030-W049).
_PRODUCTION_ENVIRONMENTS = ("production", "prod", "live")
_QUEUE_SCHEMES = ("redis", "amqp", "tcp")


@register(Tags.compatibility)
def check_metrics_tracing_health(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """Settings of /metrics, tracing and the health probes."""
    import os
    from urllib.parse import urlsplit

    raw = getattr(django_settings, "OBSERVABILITY", {})
    if not isinstance(raw, dict):
        return []  # E001 already says so
    conf = build_settings(raw)
    values = conf.values
    errors: list[Any] = []
    for key in ("TRACING_ENABLED",):  # METRICS_ENABLED: its schema validator (check_settings)
        if not isinstance(values[key], bool):
            errors.append(_error("E037", f"OBSERVABILITY[{key!r}] is {values[key]!r}.", "Use True or False."))
    token = values["METRICS_TOKEN"]
    if token is not None and (not isinstance(token, str) or not token.strip()):
        errors.append(
            _error(
                "E031",
                "OBSERVABILITY['METRICS_TOKEN'] must be a non-empty string or None.",
                "Read it from a secret (OBSERVABILITY_METRICS_TOKEN) or leave it unset.",
            )
        )
    multiproc = environment_value("PROMETHEUS_MULTIPROC_DIR")
    if multiproc and not (os.path.isdir(multiproc) and os.access(multiproc, os.W_OK)):
        errors.append(
            _error(
                "E032",
                f"PROMETHEUS_MULTIPROC_DIR={multiproc!r} is not a writable directory.",
                "Create it before the workers start (example_project/gunicorn.conf.py does) or unset it.",
            )
        )
    checks = values["HEALTH_CHECKS"]
    if isinstance(checks, list | tuple):
        errors.extend(_check_health_classes(checks, values))
    queue_url = values["HEALTH_QUEUE_URL"]
    if queue_url is not None:
        parts = urlsplit(queue_url) if isinstance(queue_url, str) else None
        try:
            port_ok = parts is not None and (parts.port is not None or parts.scheme.lower() != "tcp")
        except ValueError:
            port_ok = False
        if parts is None or parts.scheme.lower() not in _QUEUE_SCHEMES or not parts.hostname or not port_ok:
            errors.append(
                _error(
                    "E033",
                    "OBSERVABILITY['HEALTH_QUEUE_URL'] is not a redis://, amqp:// or tcp://host:port URL.",
                    "Example: redis://127.0.0.1:6379/0.",
                )
            )
    for key, example in (("OTLP_ENDPOINT", "http://otel-collector:4318"),
                         ("METRICS_OTLP_ENDPOINT", "http://otel-collector:4318/v1/metrics")):  # fmt: skip
        endpoint = values[key]
        if endpoint is not None and (
            not isinstance(endpoint, str)
            or urlsplit(endpoint).scheme not in ("http", "https")
            or not urlsplit(endpoint).netloc
        ):
            errors.append(
                _error("E035", f"OBSERVABILITY[{key!r}] is {endpoint!r}.", f"Use the collector's URL, e.g. {example}.")
            )
    cache_seconds = values["HEALTH_CACHE_SECONDS"]
    if not _is_number(cache_seconds) or cache_seconds < 0:
        errors.append(
            _error("E036", f"OBSERVABILITY['HEALTH_CACHE_SECONDS'] is {cache_seconds!r}.", "Use 0 or more seconds.")
        )
    timeout = values["HEALTH_CHECK_TIMEOUT"]
    if _is_number(timeout) and timeout > 5:
        errors.append(
            Warning(
                f"OBSERVABILITY['HEALTH_CHECK_TIMEOUT'] is {timeout} s: kubelet and load-balancer probes usually give"
                " up after 1-5 s and would see a timeout instead of a 503 naming the failing check.",
                hint="Use at most the probe's own timeout minus a margin (1.5 s fits a 2 s probe).",
                id=_ID.format("W031"),
            )
        )
    environment = str(values["ENVIRONMENT"]).lower()
    if (
        values["METRICS_ENABLED"] is True
        and (environment in _PRODUCTION_ENVIRONMENTS or (conf.sources["ENVIRONMENT"] == "default" and not _debug()))
        and not values["METRICS_TOKEN"]
        and not values["METRICS_ALLOWED_NETWORKS"]
    ):
        errors.append(
            Warning(
                "/metrics is served to anyone who can reach the service: it reveals routes, traffic and audit counts.",
                hint="Set OBSERVABILITY_METRICS_TOKEN (and the scraper's bearer token) or METRICS_ALLOWED_NETWORKS.",
                id=_ID.format("W030"),
            )
        )
    return errors


def _check_health_classes(paths: Any, values: dict[str, Any]) -> list[Any]:
    from django.utils.module_loading import import_string

    from .health import CacheCheck, HealthCheck, QueueCheck

    errors = []
    for path in paths:
        if not isinstance(path, str):
            continue  # E011
        try:
            cls = import_string(path)
        except ImportError as exc:
            errors.append(
                _error("E030", f"HEALTH_CHECKS entry {path!r} cannot be imported ({exc}).", "Fix the dotted path.")
            )
            continue
        if not (isinstance(cls, type) and issubclass(cls, HealthCheck)):
            errors.append(
                _error(
                    "E030",
                    f"HEALTH_CHECKS entry {path!r} is not a subclass of observability_app.health.HealthCheck.",
                    "Subclass HealthCheck, set name and implement check().",
                )
            )
            continue
        if issubclass(cls, CacheCheck):
            alias = values["HEALTH_CACHE_ALIAS"]
            if alias not in getattr(django_settings, "CACHES", {"default": {}}):
                errors.append(
                    _error(
                        "E034",
                        f"{path} checks cache {alias!r}, which is not in CACHES.",
                        "Set HEALTH_CACHE_ALIAS to a key of CACHES.",
                    )
                )
        if issubclass(cls, QueueCheck) and not values["HEALTH_QUEUE_URL"]:
            errors.append(
                _error(
                    "E038",
                    f"{path} is listed but HEALTH_QUEUE_URL is not set.",
                    "Set OBSERVABILITY['HEALTH_QUEUE_URL'] (or OBSERVABILITY_HEALTH_QUEUE_URL) to the broker's URL.",
                )
            )
    return errors


# Compliance browser (the admin): ids E070-E079 / W070-W079.
_ADMIN_INT_KEYS = ("ADMIN_COUNT_LIMIT", "ADMIN_MAX_PAGE_DEPTH", "ADMIN_EXPORT_CHUNK_SIZE")
ADMIN_COUNT_LIMIT_WARN = 1_000_000


@register(Tags.compatibility)
def check_admin_settings(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """The compliance browser's limits: each a whole number of at least 1, the count limit kept affordable."""
    raw = getattr(django_settings, "OBSERVABILITY", {})
    if not isinstance(raw, dict):
        return []  # reported as E001 by check_settings
    values = build_settings(raw).values
    messages: list[Any] = []
    for key in _ADMIN_INT_KEYS:
        value = values[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            messages.append(
                _error("E070", f"OBSERVABILITY[{key!r}] is {value!r}.", "Use a whole number of at least 1.")
            )
    limit = values["ADMIN_COUNT_LIMIT"]
    if isinstance(limit, int) and not isinstance(limit, bool) and limit > ADMIN_COUNT_LIMIT_WARN:
        messages.append(
            Warning(
                f"OBSERVABILITY['ADMIN_COUNT_LIMIT'] is {limit}: each changelist view of a large selection may count"
                f" up to that many rows before it falls back to an estimate.",
                hint=f"Keep it at {ADMIN_COUNT_LIMIT_WARN} or below (the default is {DEFAULTS['ADMIN_COUNT_LIMIT']}).",
                id=_ID.format("W070"),
            )
        )
    trace_url = values["ADMIN_TRACE_URL"]
    if trace_url is not None and not _trace_url_ok(trace_url):
        messages.append(
            _error(
                "E071",
                f"OBSERVABILITY['ADMIN_TRACE_URL'] is {str(trace_url)[:200]!r}.",
                "Use None, or an http(s) URL with {trace_id} where the trace id goes, such as"
                " 'http://jaeger:16686/trace/{trace_id}'.",
            )
        )
    return messages


def _trace_url_ok(value: Any) -> bool:
    """An http(s) URL with a host, holding ``{trace_id}`` and no other ``{...}`` field."""
    from string import Formatter
    from urllib.parse import urlsplit

    if not isinstance(value, str) or "{trace_id}" not in value or any(ch in value for ch in "\x00\r\n\t <>\"'"):
        return False
    try:
        fields = {name for _text, name, _spec, _conv in Formatter().parse(value) if name is not None}
        parts = urlsplit(value.replace("{trace_id}", "0"))
    except ValueError:
        return False
    return fields == {"trace_id"} and parts.scheme in ("http", "https") and bool(parts.netloc)


# Background work: the Celery integration, worker probes and metrics, trace sampling (ids E040-E049, W040-W049).
_WORKER_SECONDS = ("WORKER_PUSH_INTERVAL", "WORKER_HEARTBEAT_INTERVAL", "WORKER_HEARTBEAT_MAX_AGE")


@register(Tags.compatibility)
def check_background_work(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """Settings of the worker's port, Pushgateway, heartbeat, the Celery app and the sampling tables."""
    from urllib.parse import urlsplit

    from . import tracing
    from .worker import port_setting

    raw = getattr(django_settings, "OBSERVABILITY", {})
    if not isinstance(raw, dict):
        return []  # E001
    values = build_settings(raw).values
    messages: list[Any] = []
    try:
        port = port_setting(values["WORKER_METRICS_PORT"])
    except ValueError as exc:
        port = None
        messages.append(_error("E040", f"{exc}.", "Use a port such as 9100, or None for no port."))
    push = values["WORKER_PUSHGATEWAY_URL"]
    if push is not None:
        parts = urlsplit(push) if isinstance(push, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            messages.append(
                _error("E041", f"OBSERVABILITY['WORKER_PUSHGATEWAY_URL'] is {push!r}.", "Use http://host:9091.")
            )
    for key in _WORKER_SECONDS:
        value = values[key]
        try:
            number = float(value) if not isinstance(value, bool) else 0.0
        except (TypeError, ValueError):
            number = 0.0
        if not 0 < number < float("inf"):
            messages.append(_error("E042", f"OBSERVABILITY[{key!r}] is {value!r}.", "Use a number of seconds above 0."))
    rates = values["TRACE_SAMPLE_RATES"]
    if not isinstance(rates, dict) or not all(
        isinstance(name, str) and tracing._is_rate(rate) for name, rate in rates.items()
    ):
        messages.append(
            _error("E043", f"OBSERVABILITY['TRACE_SAMPLE_RATES'] is {rates!r}.", 'Use {"production": 0.05, ...}.')
        )
    rules = values["TRACE_SAMPLING_RULES"]
    if not isinstance(rules, list | tuple) or len(tracing.sampling_rules(rules)) != len(rules):
        messages.append(
            _error(
                "E043",
                f"OBSERVABILITY['TRACE_SAMPLING_RULES'] is {rules!r}.",
                'Use a list of {"path": "/prefix/", "rate": 0..1}.',
            )
        )
    queues = values["WORKER_BACKLOG_QUEUES"]
    if isinstance(queues, str):  # from the environment: comma-separated
        queues = [name.strip() for name in queues.split(",") if name.strip()]
    if queues is not None and (
        not isinstance(queues, list | tuple) or not all(isinstance(q, str) and 0 < len(q) <= 255 for q in queues)
    ):
        messages.append(
            _error("E045", f"OBSERVABILITY['WORKER_BACKLOG_QUEUES'] is {queues!r}.", "Use a list of names.")
        )
    if values["CELERY_APP"] is not None:
        messages.extend(_check_celery_app(values["CELERY_APP"]))
    if values["TRACING_ENABLED"] is True or tracing.active():
        missing = tracing.missing_instrumentations()
        if missing:
            messages.append(
                Warning(
                    f"Tracing is on but {', '.join(missing)} has no OpenTelemetry instrumentation installed: its"
                    " calls make no spans.",
                    hint="pip install 'observability_app[tracing]' (and [celery] for Celery).",
                    id=_ID.format("W040"),
                )
            )
    if (port is not None or push) and not environment_value("PROMETHEUS_MULTIPROC_DIR"):
        messages.append(
            Warning(
                "A worker metrics port or Pushgateway is set but PROMETHEUS_MULTIPROC_DIR is not: the counts of"
                " prefork pool children never reach the worker's exposition.",
                hint="Export PROMETHEUS_MULTIPROC_DIR (one empty directory per worker) before the worker starts, or"
                " run the pool with --pool=threads/solo.",
                id=_ID.format("W041"),
            )
        )
    return messages


def _check_celery_app(path: Any) -> list[Any]:
    from django.utils.module_loading import import_string

    if not isinstance(path, str) or not path:
        return [_error("E044", f"OBSERVABILITY['CELERY_APP'] is {path!r}.", "Use 'project.celery.app'.")]
    try:
        from celery import Celery
    except ImportError:
        return [
            _error("E044", "CELERY_APP is set but Celery is not installed.", "pip install 'observability_app[celery]'.")
        ]
    try:
        app = import_string(path)
    except ImportError as exc:
        return [_error("E044", f"CELERY_APP {path!r} cannot be imported ({exc}).", "Fix the dotted path.")]
    if not isinstance(app, Celery):
        return [_error("E044", f"CELERY_APP {path!r} is a {type(app).__name__}, not a Celery app.", "Name the app.")]
    return []


@register(Tags.database)
def check_audit_db_role(app_configs: Any = None, databases: Any = None, **kwargs: Any) -> list[Any]:
    """W004: the connection's role could rewrite the evidence. Runs with ``check --database`` and ``migrate``.

    A database check (it queries the catalogue), so plain ``manage.py check`` skips it, as Django does for its own.
    """
    from .audit.roles import exposure

    raw = getattr(django_settings, "OBSERVABILITY", {})
    if not isinstance(raw, dict):
        return []  # E001 already says so
    conf = build_settings(raw)
    if not is_production(conf.values, conf.sources):
        return []
    warnings: list[Any] = []
    for alias in databases or ():
        try:
            found = exposure(alias)
        except Exception as exc:  # an unreachable database is reported by the health checks, not here
            logging.getLogger(__name__).debug("W004 skipped for %s: %s", alias, exc)
            continue
        if found is None or not found.exposed:
            continue
        warnings.append(
            Warning(
                f"Database {alias!r}: the app's role can change or remove audit evidence: "
                + "; ".join(found.describe())
                + ".",
                hint=(
                    f"Run `manage.py audit_db_roles --runtime-role {found.role} --owner <another role>` as the owner"
                    " and connect the app as a role with SELECT and INSERT only (docs/deployment.md)."
                ),
                id=_ID.format("W004"),
            )
        )
    return warnings


__all__ = [
    "DEFAULTS",
    "check_admin_settings",
    "check_audit_db_role",
    "check_background_work",
    "check_logging",
    "check_metrics_tracing_health",
    "check_middleware",
    "check_settings",
]
