"""JSON log lines on python-json-logger, each carrying the request or job context.

Drop-in configuration::

    from observability_app.logging import logging_config
    LOGGING = logging_config()                  # JSON lines on stdout, level from OBSERVABILITY_LOG_LEVEL
    LOGGING = logging_config(access_log="/var/log/app/access.log")   # access lines to a file instead

Every line has the SPEC field set: ``timestamp`` (UTC ISO 8601), ``level``, ``message``, ``logger``, ``service``,
``environment``, ``request_id``, ``correlation_id``, ``trace_id``, ``span_id``, ``user_id``, ``ip``, ``route``,
``method``, ``status_code``, ``duration_ms``, ``outcome``, ``source``, plus ``org_id``/``project_id`` when the context
has them, and ``error.type``/``error.message``/``error.stack`` for exceptions. Context comes from
:mod:`observability_app.context`, captured by :class:`ContextFilter` in the thread that logged, so lines from any
logger (Django's own included) written during a request or job carry its ids. Extra fields pass through
:func:`observability_app.redaction.redact`; secret-looking ``key=value`` pairs in messages are masked.

With ``OBSERVABILITY["LOG_FORMAT"] = "ecs"`` (env ``OBSERVABILITY_LOG_FORMAT``) every line, the access line
included, is the same line under Elastic Common Schema names: :func:`observability_app.ecs.to_ecs` holds the mapping.
"""

from __future__ import annotations

import logging
import sys
import time
import traceback
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter as _BaseJsonFormatter

from . import context
from .conf import environment_value, on_reload
from .ecs import to_ecs
from .redaction import redact, scrub_text
from .tracing import active as _tracing_on  # whether spans are made: then lines take their ids
from .tracing import current_trace_ids as _trace_ids

__all__ = [
    "ACCESS_LOGGER",
    "FIELDS",
    "JOB_LOGGER",
    "ContextFilter",
    "JsonFormatter",
    "RunserverRequestFilter",
    "configure_stdout",
    "ecs_format",
    "format_timestamp",
    "identity",
    "logging_config",
    "uses_app_logging",
]

ACCESS_LOGGER = "observability_app.access"
JOB_LOGGER = "observability_app.jobs"

#: Keys every line carries, in this order (None when unknown).
FIELDS = (
    "timestamp",
    "level",
    "message",
    "logger",
    "service",
    "environment",
    "request_id",
    "correlation_id",
    "trace_id",
    "span_id",
    "user_id",
    "ip",
    "route",
    "method",
    "status_code",
    "duration_ms",
    "outcome",
    "source",
)
_SKIP = frozenset(RESERVED_ATTRS) | {"obs_context", "message", "asctime", "color_message", "request", "server_time"}
_MAX_STACK = 16_000


_identity_cache: tuple[str, str] | None = None


def identity() -> tuple[str, str]:
    """Service and environment, cached until the settings change.

    Before Django's settings are loaded (early start-up logging) the environment variables answer, uncached.
    """
    global _identity_cache
    if _identity_cache is not None:
        return _identity_cache
    try:
        from .conf import settings

        _identity_cache = (settings.SERVICE_NAME, settings.ENVIRONMENT)
        return _identity_cache
    except Exception:  # settings not configured yet
        service = environment_value("OBSERVABILITY_SERVICE_NAME") or ""
        return service, environment_value("OBSERVABILITY_ENVIRONMENT") or ""


def identity_cached() -> bool:
    """Whether :func:`identity` answered from the settings (it is then cached until they change)."""
    return _identity_cache is not None


def _forget_identity() -> None:
    global _identity_cache
    _identity_cache = None


on_reload(_forget_identity)

_format_cache: list[bool] = []


def ecs_format() -> bool:
    """Whether lines are written with ECS field names (``LOG_FORMAT`` is ``"ecs"``), cached until settings change.

    Before Django's settings are loaded ``OBSERVABILITY_LOG_FORMAT`` answers, uncached.
    """
    if _format_cache:
        return _format_cache[0]
    try:
        from .conf import settings

        _format_cache.append(settings.LOG_FORMAT == "ecs")
        return _format_cache[0]
    except Exception:  # settings not configured yet
        return (environment_value("OBSERVABILITY_LOG_FORMAT") or "").strip().lower() == "ecs"


on_reload(_format_cache.clear)


class ContextFilter(logging.Filter):
    """Attach the current request/job context to every record, in the thread that logs it.

    Put it on handlers (``logging_config()`` does): a handler that formats later or elsewhere (a QueueHandler)
    still sees the context of the code that logged.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "obs_context"):
            ctx = context.current()
            if ctx is None:
                # django.request logs 4xx/5xx after the middleware chain has returned (and unbound the
                # context); the record carries the request, and the middleware left the context on it.
                ctx = getattr(record.__dict__.get("request"), "observability_context", None)
            record.obs_context = ctx
        return True


class RunserverRequestFilter(logging.Filter):
    """Drops ``runserver``'s line per request (``"GET /x HTTP/1.1" 404 12``): the access line says it, with ids.

    Everything else the development server logs (an HTTPS request to it, a broken pipe) goes on, as JSON. A
    logger without handlers would not silence it: logging's last-resort handler prints warnings raw to stderr.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.msg == '"%s" %s %s' and hasattr(record, "status_code"))


class JsonFormatter(_BaseJsonFormatter):
    """python-json-logger formatter producing the SPEC field set, for every line (access lines included).

    Steps are python-json-logger's (``add_fields`` -> ``process_log_record`` -> ``jsonify_log_record``);
    ``add_fields`` is where our fields come from, so subclasses can add more there. A subclass sees every line:
    the access log's fast path (:mod:`observability_app.access_log`) is taken only with this class itself, whose
    steps it reproduces (the tests hold the two to the same object).

    *Changed in issue 14*: access lines go through these steps too (they used to be assembled apart).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("json_ensure_ascii", False)
        super().__init__(*args, **kwargs)

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        ctx = record.__dict__.get("obs_context", None)
        if ctx is None:
            ctx = context.current() or getattr(record.__dict__.get("request"), "observability_context", None)
        service, environment = identity()
        for name in FIELDS:  # the SPEC order first, whatever is known
            log_data.setdefault(name, None)
        log_data["timestamp"] = format_timestamp(record.created)
        log_data["level"] = record.levelname
        log_data["message"] = scrub_text(record.message) if record.message else ""
        log_data["logger"] = record.name
        log_data["service"] = service
        log_data["environment"] = environment
        if ctx is not None:
            trace_id, span_id = ctx.trace_id, ctx.span_id
            if not trace_id and _tracing_on():
                trace_id, span_id = _trace_ids()
            log_data.update(
                request_id=ctx.request_id or None,
                correlation_id=ctx.correlation_id or None,
                trace_id=trace_id or None,
                span_id=span_id or None,
                user_id=ctx.user_id() or None,
                ip=ctx.ip or None,
                route=ctx.route or None,
                method=ctx.method or None,
                source=ctx.source or None,
            )
            if ctx.org_id:
                log_data["org_id"] = ctx.org_id
            if ctx.project_id:
                log_data["project_id"] = ctx.project_id
        extra = {key: value for key, value in record.__dict__.items() if key not in _SKIP and not key.startswith("_")}
        extra.update(message_dict)
        exc_text = extra.pop("exc_info", None)
        extra.pop("stack_info", None)
        if extra:
            # The access line's fields are built by the middleware from sanitized values: no redaction pass.
            log_data.update(extra if record.name == ACCESS_LOGGER else redact(extra))
        if record.exc_info and record.exc_info[0] is not None:
            exc_type, exc, _ = record.exc_info
            log_data["error.type"] = exc_type.__name__
            log_data["error.message"] = scrub_text(str(exc))[:2000]
            stack = exc_text if isinstance(exc_text, str) else "".join(traceback.format_exception(*record.exc_info))
            log_data["error.stack"] = scrub_text(stack)[-_MAX_STACK:]
            if log_data["outcome"] is None:
                log_data["outcome"] = "error"
        if ecs_format():  # the same line under ECS names (observability_app.ecs), for every logger's lines
            converted = to_ecs(log_data)
            log_data.clear()
            log_data.update(converted)


_second_cache: tuple[int, str] = (-1, "")


def format_timestamp(created: float) -> str:
    """``created`` (epoch seconds) as UTC ISO 8601 with microseconds and ``Z``; the seconds part is cached."""
    global _second_cache
    second = int(created)
    if _second_cache[0] != second:
        _second_cache = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{_second_cache[1]}.{int((created - second) * 1_000_000):06d}Z"


def logging_config(
    level: str | None = None,
    *,
    access_log: str | None = None,
    django_level: str | None = None,
    access_log_buffer: int = 256,
    access_log_flush_seconds: float = 1.0,
) -> dict[str, Any]:
    """A ``LOGGING`` dict: JSON lines on stdout (and the access log to a file when ``access_log`` is given).

    The level comes from ``level``, else ``OBSERVABILITY_LOG_LEVEL``, else INFO (read here, in settings, where
    Django's settings cannot be asked yet); ``OBSERVABILITY["LOG_LEVEL"]``, when set, is applied over it once the
    app is ready. Stdout and the access file are both written in batches (``BatchingStreamHandler`` and
    ``AccessLogHandler`` of :mod:`observability_app.access_log`): up to ``access_log_buffer`` lines, at the latest
    ``access_log_flush_seconds`` after a line, at once for warnings and errors; ``access_log_buffer=1`` writes every
    line at once.

    *Changed in issue 14*: stdout is batched as the file is.
    """
    level = (level or environment_value("OBSERVABILITY_LOG_LEVEL") or "INFO").upper()
    handlers: dict[str, Any] = {
        "json_stdout": {
            "class": "observability_app.access_log.BatchingStreamHandler",
            "stream": "ext://sys.stdout",
            "buffer_lines": access_log_buffer,
            "flush_seconds": access_log_flush_seconds,
            "formatter": "json",
            "filters": ["observability_context"],
        }
    }
    access_handler = "json_stdout"
    if access_log:
        handlers["access_file"] = {
            "class": "observability_app.access_log.AccessLogHandler",
            "filename": access_log,
            "buffer_lines": access_log_buffer,
            "flush_seconds": access_log_flush_seconds,
            "formatter": "json",
            "filters": ["observability_context"],
        }
        access_handler = "access_file"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "observability_context": {"()": "observability_app.logging.ContextFilter"},
            "runserver_requests": {"()": "observability_app.logging.RunserverRequestFilter"},
        },
        "formatters": {"json": {"()": "observability_app.logging.JsonFormatter"}},
        "handlers": handlers,
        "root": {"handlers": ["json_stdout"], "level": level},
        "loggers": {
            "django": {"handlers": ["json_stdout"], "level": django_level or level, "propagate": False},
            "django.server": {"handlers": ["json_stdout"], "filters": ["runserver_requests"], "propagate": False},
            ACCESS_LOGGER: {"handlers": [access_handler], "level": "INFO", "propagate": False},
        },
    }


def uses_app_logging() -> bool:
    """Whether the app's JSON lines are configured: some handler of the root or the access logger formats with
    :class:`JsonFormatter` (``LOGGING = logging_config()`` does). The system check ``observability_app.W006``
    warns otherwise: without it a project silently gets no JSON at all."""
    for name in ("", ACCESS_LOGGER):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler.formatter, JsonFormatter):
                return True
    return False


def configure_stdout(level: str = "INFO") -> None:
    """For scripts outside Django settings: JSON lines on stdout for the root logger."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
