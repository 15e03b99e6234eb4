"""The one settings object over the one ``OBSERVABILITY`` dict, driven by one schema.

:data:`SCHEMA` holds every key: its default, the environment variables that override it, its validator (and the
system check id that reports it), whether the hot path reads it, and its line in ``docs/settings.md``. From it
come :data:`DEFAULTS`, :data:`ENVIRONMENT_VARIABLES`, :func:`build_settings`, the value checks of ``manage.py
check`` (:func:`problems`), the start-up validation of the hot-path keys (:func:`validate_hot_path`, run in
``AppConfig.ready()``: a wrong value stops ``gunicorn`` and ``runserver`` with ``ImproperlyConfigured`` naming the key)
and the table of docs/settings.md (``python -m observability_app.conf`` prints it; a test holds the page to the
schema). Adding a key is one :class:`Setting` row (plus its test).

An environment variable wins over the settings dict, so a deployment changes log level or sampling without a code
edit; every environment read of the app goes through :func:`environment_value` here. Renamed keys keep working
under their old name (:data:`RENAMED`), reported by ``observability_app.W005``.

The object is built lazily on first use and rebuilt when Django's ``setting_changed`` signal reports a change to
``OBSERVABILITY`` (``override_settings`` in tests).

*Changed in issue 14*: one schema instead of a defaults dict, an environment table and checks kept apart.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

__all__ = [
    "DEFAULTS",
    "ENVIRONMENT_VARIABLES",
    "RENAMED",
    "SCHEMA",
    "EnvironmentValueError",
    "ObservabilitySettings",
    "Setting",
    "build_settings",
    "environment_value",
    "is_production",
    "on_reload",
    "problems",
    "settings",
    "settings_table",
    "validate_hot_path",
]

#: Environments that count as development: no production warnings there.
DEVELOPMENT_ENVIRONMENTS = ("development", "dev", "local", "test")


# -- validators: each returns None when the value is good, else what to use instead (the check's hint) ------------
def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def rate(value: Any) -> str | None:
    return None if _is_number(value) and 0.0 <= value <= 1.0 else "Use a number from 0 to 1."


def positive_int(value: Any) -> str | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
    return None if ok else "Use a whole number of at least 1."


def positive_number(value: Any) -> str | None:
    return None if _is_number(value) and value > 0 else "Use a number above 0 (seconds)."


def seconds_or_none(value: Any) -> str | None:
    ok = value is None or (_is_number(value) and 0 < value < float("inf"))
    return None if ok else "Use a number of seconds above 0, or None for no bound."


def text(value: Any) -> str | None:
    return None if isinstance(value, str) and value.strip() else "Use a non-empty string."


def boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else "Use True or False."


def string_list(value: Any) -> str | None:
    ok = isinstance(value, list | tuple) and all(isinstance(item, str) for item in value)
    return None if ok else "Use a list of strings."


def networks(value: Any) -> str | tuple[str, str] | None:
    if (hint := string_list(value)) is not None:
        return "E011", hint  # not a list of strings at all: the list check's id
    for item in value:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            return f"{item!r} is not an IP network: use addresses or CIDR networks such as '10.0.0.0/8'."
    return None


def log_level(value: Any) -> str | None:
    ok = isinstance(value, str) and isinstance(logging.getLevelName(value.upper()), int)
    return None if ok else "Use DEBUG, INFO, WARNING, ERROR or CRITICAL."


def one_of(*choices: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if value in choices else "Use " + " or ".join(repr(choice) for choice in choices) + "."

    return check


@dataclass(frozen=True)
class Setting:
    """One key of ``OBSERVABILITY``.

    ``env``: variables that override it (the first one set wins); ``validate``: None or a function returning the
    fix for a bad value, reported as ``check`` (an ``observability_app.E0xx`` id) by ``manage.py check``;
    ``hot``: read by the middleware on every request, so validated in ``ready()`` as well (start-up stops with
    ``ImproperlyConfigured`` naming the key); ``doc``: its line in docs/settings.md.
    """

    name: str
    default: Any
    section: str
    doc: str
    env: tuple[str, ...] = ()
    validate: Callable[[Any], Any] | None = None
    check: str = ""
    hot: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


_S = Setting
IDENTITY, LOGS, METRICS, TRACING, HEALTH, DATABASE, AUDIT, ADMIN, ERRORS, WORK = (
    "Identity",
    "Logging",
    "Metrics",
    "Tracing",
    "Health",
    "Database time (PostgreSQL; docs/deployment.md)",
    "Audit trail",
    "Compliance browser (the admin)",
    "Error tracking (extra [sentry])",
    "Background work",
)
_HEALTH_DEFAULT_CHECKS = ["observability_app.health.DatabaseCheck", "observability_app.health.MigrationsCheck"]

#: Every key, in the order of docs/settings.md.
SCHEMA: tuple[Setting, ...] = (
    _S("SERVICE_NAME", "artifact-service", IDENTITY, "`service` on every log line, metric and audit event",
       ("OBSERVABILITY_SERVICE_NAME", "OTEL_SERVICE_NAME"), text, "E010"),
    _S("ENVIRONMENT", "development", IDENTITY, "`environment` on the same; development names: development, dev, "
       "local, test (unset: production when `DEBUG = False`)", ("OBSERVABILITY_ENVIRONMENT",), text, "E010"),
    _S("REGION", "local", IDENTITY, "standard metric label `region`", ("OBSERVABILITY_REGION",)),
    _S("SERVICE_VERSION", "0.0.0", IDENTITY, "standard metric label `service_version`",
       ("OBSERVABILITY_SERVICE_VERSION",)),
    _S("NODE", None, IDENTITY, "standard metric label `node` (`None`: the host name)", ("OBSERVABILITY_NODE",)),
    _S("LOG_LEVEL", "INFO", LOGS, "level of the root and `django` loggers that `logging_config()` configures, "
       "applied at start-up", ("OBSERVABILITY_LOG_LEVEL",), log_level, "E004", hot=True),
    _S("LOG_FORMAT", "default", LOGS, '`"default"` (docs/logging.md\'s field names) or `"ecs"` (Elastic Common '
       "Schema names) for every line", ("OBSERVABILITY_LOG_FORMAT",), one_of("default", "ecs"), "E012", hot=True),
    _S("ACCESS_LOG_ENABLED", True, LOGS, "one access line per request", (), boolean, "E037", hot=True),
    _S("ACCESS_LOG_SAMPLE_RATE", 1.0, LOGS, "share of successful requests logged; 4xx/5xx are never sampled out",
       ("OBSERVABILITY_ACCESS_LOG_SAMPLE_RATE",), rate, "E003", hot=True),
    _S("ACCESS_LOG_INCLUDE_QUERY", False, LOGS, "`path` with its query string", (), boolean, "E037", hot=True),
    _S("EXCLUDED_PATHS", ["/metrics", "/health/"], LOGS, "path prefixes left out of access logs, metrics and "
       "traces", (), string_list, "E011", hot=True),
    _S("TRUSTED_PROXIES", [], LOGS, "networks whose `X-Forwarded-For` is believed", (), networks, "E005", hot=True),
    _S("REDACT_FIELDS", [], LOGS, "extra key names to redact, on top of the built-in secret names", (),
       string_list, "E011"),
    _S("DEBUG_LOGGING_ENABLED", False, LOGS, "`X-Debug-Logging: full` adds sanitized headers and timings", (),
       boolean, "E037", hot=True),
    _S("DEBUG_LOGGING_NETWORKS", [], LOGS, "networks allowed to ask for it (staff users always may)", (),
       networks, "E005", hot=True),
    _S("CORRELATION_ID_MAX_LENGTH", 128, LOGS, "longest incoming `X-Correlation-Id` kept (longer: replaced)", (),
       positive_int, "E008", hot=True),
    _S("METRICS_ENABLED", True, METRICS, "record metrics and serve /metrics (docs/metrics.md)",
       ("OBSERVABILITY_METRICS_ENABLED",), boolean, "E037", hot=True),
    _S("METRICS_TOKEN", None, METRICS, "bearer token that /metrics demands when set",
       ("OBSERVABILITY_METRICS_TOKEN",)),
    _S("METRICS_ALLOWED_NETWORKS", [], METRICS, "when non-empty, only these networks may scrape", (), networks,
       "E005"),
    _S("METRICS_MAX_SERIES_PER_METRIC", 2000, METRICS, "series cap per metric; past it new label values are "
       "dropped and counted", (), positive_int, "E008"),
    _S("METRICS_ID_HASH_BINS", 64, METRICS, "bucket, user and client ids are hashed into this many bins "
       "(formerly `METRICS_ID_BUCKETS`)", (), positive_int, "E008"),
    _S("METRICS_OTLP_ENDPOINT", None, METRICS, "OTLP/HTTP metrics URL: push what /metrics shows there too",
       ("OBSERVABILITY_METRICS_OTLP_ENDPOINT",)),
    _S("METRICS_OTLP_INTERVAL", 60.0, METRICS, "seconds between OTLP pushes", ("OBSERVABILITY_METRICS_OTLP_INTERVAL",),
       positive_number, "E008"),
    _S("TRACING_ENABLED", False, TRACING, "OpenTelemetry tracing (`OTEL_TRACES_EXPORTER=otlp/console` turns it on, "
       "`OTEL_SDK_DISABLED=true` off; docs/tracing.md)", ("OBSERVABILITY_TRACING_ENABLED",)),
    _S("TRACE_SAMPLE_RATE", 1.0, TRACING, "share of new traces sampled", ("OBSERVABILITY_TRACE_SAMPLE_RATE",
       "OTEL_TRACES_SAMPLER_ARG"), rate, "E003"),
    _S("TRACE_EXPORTER", "otlp", TRACING, "`otlp`, `console` or `none`", ("OBSERVABILITY_TRACE_EXPORTER",
       "OTEL_TRACES_EXPORTER"), one_of("otlp", "console", "none"), "E006"),
    _S("OTLP_ENDPOINT", None, TRACING, "`None`: the `OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT` variables or the "
       "exporter's default"),
    _S("TRACE_SAMPLE_RATES", {"production": 0.05, "staging": 0.25}, TRACING, "default ratio by `ENVIRONMENT` "
       "(others 1.0) while `TRACE_SAMPLE_RATE` is not set"),
    _S("TRACE_SAMPLING_RULES", [], TRACING, '`[{"path": "/api/v1/buckets/", "rate": 0.5}]`: ratio of new traces by '
       "path prefix, first match wins"),
    _S("HEALTH_CHECKS", _HEALTH_DEFAULT_CHECKS, HEALTH, "dotted paths of the readiness checks (docs/health.md)", (),
       string_list, "E011"),
    _S("HEALTH_CHECK_TIMEOUT", 1.5, HEALTH, "seconds; a hung dependency answers 503 within this bound", (),
       positive_number, "E008"),
    _S("HEALTH_RESULT_MAX_AGE", 1.0, HEALTH, "seconds: a probe flood is answered from a result at most this old "
       "(formerly `HEALTH_CACHE_SECONDS`)"),
    _S("HEALTH_CACHE_ALIAS", "default", HEALTH, "the Django cache `CacheCheck` writes to (when listed)"),
    _S("HEALTH_QUEUE_URL", None, HEALTH, "redis:// or amqp:// URL that `QueueCheck` probes (when listed)",
       ("OBSERVABILITY_HEALTH_QUEUE_URL",)),
    _S("DATABASE_CONNECT_TIMEOUT", 2.0, DATABASE, "seconds; libpq `connect_timeout` of the aliases whose OPTIONS "
       "set none (libpq's minimum is 2)", ("OBSERVABILITY_DATABASE_CONNECT_TIMEOUT",), seconds_or_none, "E008",
       hot=True),
    _S("DATABASE_STATEMENT_TIMEOUT", 5.0, DATABASE, "seconds a statement of a request may take (server-side "
       "`statement_timeout`); the client gives up 1 s later", ("OBSERVABILITY_DATABASE_STATEMENT_TIMEOUT",),
       seconds_or_none, "E008", hot=True),
    _S("DATABASE_RETRY_SECONDS", 1.0, DATABASE, "while the database is down: how often one background probe tries "
       "it, and the 503's `Retry-After`", (), positive_number, "E008", hot=True),
    _S("AUDIT_ENABLED", True, AUDIT, "connect the signal receivers at start-up; `record()` always works"),
    _S("AUDIT_RETENTION", {}, AUDIT, 'per-type retention override: days, or `None`/`"permanent"`'),
    _S("AUDIT_EVENT_TYPES", [], AUDIT, 'project types: `{"name", "required", "retention_days", ...}`'),
    _S("AUDIT_MAX_PAYLOAD_BYTES", 65536, AUDIT, "largest payload, as UTF-8 JSON", (), positive_int, "E008"),
    _S("AUDIT_SIGNING_KEY", None, AUDIT, "HMAC key for event digests and seals; keep it outside the database",
       ("OBSERVABILITY_AUDIT_SIGNING_KEY",)),
    _S("AUDIT_PURGE_BATCH_SIZE", 20000, AUDIT, "rows per purge transaction", (), positive_int, "E008"),
    _S("AUDIT_ARTIFACT_GRACE_DAYS", 30, AUDIT, "artifact-lifetime types are purged this long after "
       "ARTIFACT_DELETED", (), positive_int, "E008"),
    _S("AUDIT_SEAL_MAX_EVENTS", 100000, AUDIT, "most events one seal covers", (), positive_int, "E008"),
    _S("AUDIT_CHECKPOINT_FILE", None, AUDIT, "file outside the database to which every seal's checkpoint is "
       "appended (docs/audit-integrity.md)", ("OBSERVABILITY_AUDIT_CHECKPOINT_FILE",)),
    _S("AUDIT_CHECKPOINT_SINKS", [], AUDIT, "dotted paths of further `CheckpointSink` classes"),
    _S("AUDIT_CAPTURE_ADMIN_ACTIONS", True, AUDIT, "ADMIN_ACTION from the admin's log"),
    _S("AUDIT_CAPTURE_AUTH", True, AUDIT, "AUTH_* from Django's auth signals"),
    _S("ADMIN_COUNT_LIMIT", 10000, ADMIN, "rows counted exactly; past this the changelist shows an estimate"),
    _S("ADMIN_MAX_PAGE_DEPTH", 1000000, ADMIN, "rows a changelist page may start past; deeper pages ask for a "
       "filter"),
    _S("ADMIN_EXPORT_CHUNK_SIZE", 2000, ADMIN, "rows fetched per round trip while an export streams"),
    _S("ADMIN_TRACE_URL", None, ADMIN, 'tracing UI link for a trace id, e.g. `"http://jaeger:16686/trace/'
       '{trace_id}"`', ("OBSERVABILITY_ADMIN_TRACE_URL",)),
    _S("SENTRY_DSN", None, ERRORS, "when set, unhandled errors go to Sentry with the request's ids",
       ("OBSERVABILITY_SENTRY_DSN", "SENTRY_DSN")),
    _S("SENTRY_SAMPLE_RATE", 1.0, ERRORS, "share of error events sent", ("OBSERVABILITY_SENTRY_SAMPLE_RATE",)),
    _S("CELERY_APP", None, WORK, "dotted path of the project's Celery app: the integration installs itself in "
       "`ready()` (docs/workers.md)"),
    _S("WORKER_METRICS_PORT", None, WORK, "port a worker serves /metrics, /health/live, /health/ready on",
       ("OBSERVABILITY_WORKER_METRICS_PORT",)),
    _S("WORKER_METRICS_ADDRESS", "0.0.0.0", WORK, "address that port listens on"),
    _S("WORKER_PUSHGATEWAY_URL", None, WORK, "push the worker's metrics there when pull is blocked",
       ("OBSERVABILITY_WORKER_PUSHGATEWAY_URL",)),
    _S("WORKER_PUSH_INTERVAL", 15.0, WORK, "seconds between pushes", ("OBSERVABILITY_WORKER_PUSH_INTERVAL",)),
    _S("WORKER_HEARTBEAT_INTERVAL", 5.0, WORK, "seconds between heartbeats of the consumer loop",
       ("OBSERVABILITY_WORKER_HEARTBEAT_INTERVAL",)),
    _S("WORKER_HEARTBEAT_MAX_AGE", 30.0, WORK, "liveness fails when the last heartbeat is older than this",
       ("OBSERVABILITY_WORKER_HEARTBEAT_MAX_AGE",)),
    _S("WORKER_STATE_FILE", None, WORK, "heartbeat file read by `manage.py worker_probe` (`None`: temp dir)",
       ("OBSERVABILITY_WORKER_STATE_FILE",)),
    _S("WORKER_BACKLOG_QUEUES", None, WORK, "queues whose depth the worker reports (env: comma-separated); `None`: "
       "those it consumes", ("OBSERVABILITY_WORKER_BACKLOG_QUEUES",)),
)  # fmt: skip

#: Old name -> new name. The old name still works (in the dict, and as an attribute) and is reported by W005.
RENAMED: dict[str, str] = {
    "HEALTH_CACHE_SECONDS": "HEALTH_RESULT_MAX_AGE",  # beside HEALTH_CACHE_ALIAS it read as the cache's setting
    "METRICS_ID_BUCKETS": "METRICS_ID_HASH_BINS",  # hash bins, not histogram buckets nor artifact buckets
}

_BY_NAME: dict[str, Setting] = {entry.name: entry for entry in SCHEMA}
#: Every key of ``OBSERVABILITY`` with its default (renamed keys under both names).
DEFAULTS: dict[str, Any] = {entry.name: entry.default for entry in SCHEMA}
DEFAULTS.update({old: DEFAULTS[new] for old, new in RENAMED.items()})
#: Environment variables read on top of the settings dict: variable -> key.
ENVIRONMENT_VARIABLES: dict[str, str] = {variable: entry.name for entry in SCHEMA for variable in entry.env}
#: Variables read directly, not as a key's value (each through :func:`environment_value`).
OTHER_VARIABLES = ("OTEL_SDK_DISABLED", "OTEL_TRACES_SAMPLER", "PROMETHEUS_MULTIPROC_DIR")


def environment_value(variable: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The environment variable ``variable`` (one of :data:`ENVIRONMENT_VARIABLES` or :data:`OTHER_VARIABLES`).

    Every environment read of the app goes through here, so that this module lists them all.
    """
    if variable not in ENVIRONMENT_VARIABLES and variable not in OTHER_VARIABLES:
        raise KeyError(f"{variable} is not an environment variable of observability_app (conf.SCHEMA)")
    return (os.environ if environ is None else environ).get(variable)


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

    Attribute access by key name (``conf.settings.SERVICE_NAME``); a renamed key answers under its old name too.
    Unknown keys in the dict are kept out of the object and reported by the system check ``observability_app.E001``;
    old names used in the dict are listed in ``renamed_keys`` (``observability_app.W005``).
    """

    values: dict[str, Any]
    unknown_keys: tuple[str, ...]
    env_errors: tuple[str, ...]
    sources: dict[str, str]
    renamed_keys: tuple[str, ...] = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(f"OBSERVABILITY has no setting {name!r}") from None

    @property
    def node(self) -> str:
        return self.values["NODE"] or socket.gethostname()


def build_settings(user: Any = None, environ: Mapping[str, str] | None = None) -> ObservabilitySettings:
    """Merge defaults, the ``OBSERVABILITY`` dict and the environment into one object, as :data:`SCHEMA` says."""
    if user is None:
        user = getattr(django_settings, "OBSERVABILITY", {}) or {}
    environ = os.environ if environ is None else environ
    values = {entry.name: entry.default for entry in SCHEMA}
    sources = dict.fromkeys(values, "default")
    unknown: list[str] = []
    renamed: list[str] = []
    if isinstance(user, dict):
        for key, value in user.items():
            if key in RENAMED:
                renamed.append(key)
                if RENAMED[key] in user:  # both names given: the new one wins
                    continue
                key = RENAMED[key]
            if key in values:
                values[key] = value
                sources[key] = "settings"
            else:
                unknown.append(str(key))
    errors: list[str] = []
    for entry in SCHEMA:
        for variable in entry.env:
            raw = environ.get(variable)
            if raw is None:
                continue
            try:
                values[entry.name] = _parse_env(variable, entry.name, raw)
                sources[entry.name] = "env"
                break  # the first variable set wins (ours before the OTEL_/SENTRY_ standard ones)
            except EnvironmentValueError as exc:
                errors.append(str(exc))
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() in _TRUE:
        values["TRACING_ENABLED"] = False
        sources["TRACING_ENABLED"] = "env"
    for old, new in RENAMED.items():  # code that still reads the old name gets the value
        values[old] = values[new]
        sources[old] = sources[new]
    return ObservabilitySettings(values, tuple(unknown), tuple(errors), sources, tuple(renamed))


def problems(conf: ObservabilitySettings, *, hot_only: bool = False) -> list[tuple[str, str, str]]:
    """``(check id, message, hint)`` for each key whose value its validator refuses (every key, or the hot ones)."""
    found = []
    for entry in SCHEMA:
        if entry.validate is None or (hot_only and not entry.hot):
            continue
        value = conf.values[entry.name]
        hint = entry.validate(value)
        if hint is not None:
            check, hint = hint if isinstance(hint, tuple) else (entry.check, hint)
            source = conf.sources.get(entry.name)
            where = f" (from {'/'.join(entry.env)})" if source == "env" else ""
            found.append((check, f"OBSERVABILITY[{entry.name!r}] is {value!r}{where}.", hint))
    return found


def validate_hot_path(conf: ObservabilitySettings | None = None) -> None:
    """Raise ``ImproperlyConfigured`` naming the key when a setting the middleware reads is wrong.

    Called from ``AppConfig.ready()``: ``gunicorn`` and ``runserver`` never run the system checks, and a bad
    ``TRUSTED_PROXIES`` would otherwise raise on the first request. An environment variable of a hot key that does
    not parse stops start-up too.
    """
    conf = conf or settings._setup()
    hot_variables = {variable for entry in SCHEMA if entry.hot for variable in entry.env}
    for message in conf.env_errors:
        if message.split("=", 1)[0] in hot_variables:
            raise ImproperlyConfigured(f"{message} (observability_app.E002)")
    found = problems(conf, hot_only=True)
    if found:
        check, message, hint = found[0]
        raise ImproperlyConfigured(f"{message} {hint} (observability_app.{check}; docs/settings.md)")


def is_production(values: Mapping[str, Any], sources: Mapping[str, str] | None = None) -> bool:
    """Whether to warn as for production: ``ENVIRONMENT`` names no development environment, or, when it was never
    set, Django's ``DEBUG`` is False."""
    environment = str(values.get("ENVIRONMENT", "")).lower()
    if sources is not None and sources.get("ENVIRONMENT") == "default":
        return not bool(getattr(django_settings, "DEBUG", False))
    return environment not in DEVELOPMENT_ENVIRONMENTS


def _shown(value: Any) -> str:
    if value is None:
        return "`None`"
    if isinstance(value, list) and len(value) > 2:
        return f"{len(value)} entries (see below)"
    return f"`{value!r}`".replace('"', "'") if not isinstance(value, str) else f'`"{value}"`'


def settings_table() -> str:
    """The Markdown table of every key (docs/settings.md holds it between its ``settings-table`` markers)."""
    lines = ["| key | default | environment | section | meaning |", "| --- | --- | --- | --- | --- |"]
    for entry in SCHEMA:
        env = ", ".join(f"`{variable}`" for variable in entry.env)
        hot = " Checked at start-up." if entry.hot else ""
        check = f" (`{entry.check}`)" if entry.check else ""
        lines.append(
            f"| `{entry.name}` | {_shown(entry.default)} | {env} | {entry.section} | {entry.doc}{check}.{hot} |"
        )
    return "\n".join(lines)


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


_reload_callbacks: list[Callable[[], Any]] = []


def on_reload(callback: Callable[[], Any]) -> None:
    """Register a callable run after the settings change (modules that cache derived values use it)."""
    if callback not in _reload_callbacks:
        _reload_callbacks.append(callback)


if __name__ == "__main__":  # python -m observability_app.conf: the table for docs/settings.md
    print(settings_table())
