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

import json
import logging
import os
import sys
import time
import traceback
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter as _BaseJsonFormatter

from . import context
from .conf import on_reload
from .ecs import to_ecs
from .redaction import redact, scrub_text
from .tracing import active as _tracing_on  # whether spans are made: then lines take their ids
from .tracing import current_trace_ids as _trace_ids

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


def _identity() -> tuple[str, str]:
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
        return os.environ.get("OBSERVABILITY_SERVICE_NAME", ""), os.environ.get("OBSERVABILITY_ENVIRONMENT", "")


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
        return os.environ.get("OBSERVABILITY_LOG_FORMAT", "").strip().lower() == "ecs"


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
    """python-json-logger formatter producing the SPEC field set.

    Steps are python-json-logger's (``add_fields`` -> ``process_log_record`` -> ``jsonify_log_record``);
    ``add_fields`` is where our fields come from, so subclasses can add more there.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("json_ensure_ascii", False)
        super().__init__(*args, **kwargs)

    def format(self, record: logging.LogRecord) -> str:
        if record.name == ACCESS_LOGGER and not record.exc_info:
            return self.format_access(record)
        return super().format(record)

    def format_access(self, record: logging.LogRecord) -> str:
        """The access line: the same fields as :meth:`add_fields` gives, built directly (it is on every request).

        A record made by :func:`observability_app.access_log.access_record` with nothing added by filters goes
        through :meth:`access_line`; any other record through :meth:`access_fields` and the JSON encoder. Both give
        the same object (the tests hold them to it).
        """
        fields = record.__dict__
        ctx = fields.get("obs_context")
        # ``_obs_access`` holds the attribute count access_record() gave the record: more means a filter added some.
        if ctx is None or fields.get("_obs_access") != len(fields) or ecs_format():
            data = self.access_fields(record.created, record.levelname, record.msg, ctx, fields)
            return _access_dumps(to_ecs(data) if ecs_format() else data)
        return self.access_line(record.created, record.levelname, record.msg, ctx, fields)

    def access_line(
        self, created: float, levelname: str, message: str, ctx: Any, fields: dict[str, Any], *, live: bool = True
    ) -> str:
        """The access line of ``fields`` (exactly :data:`ACCESS_FIELDS`), assembled as a string.

        ``live=False`` (a line whose request may not be the current one) takes the trace ids from the context
        alone, never from the span that is current. The line is :func:`access_values` then
        :func:`access_text`; the batching file handler keeps the values and makes the text with its batch.
        """
        values = access_values(created, levelname, message, ctx, *map(fields.__getitem__, ACCESS_FIELDS), live=live)
        return access_text(values)

    def access_fields(
        self, created: float, levelname: str, message: str, ctx: Any, fields: dict[str, Any], *, live: bool = True
    ) -> dict[str, Any]:
        """The access line as a dict; ``fields`` is the record's ``__dict__`` or the middleware's fields.

        Any of them may be missing (a record someone else logged to the access logger): they are null, and
        fields beyond the access line's own pass through.
        """
        given = {**_NO_FIELDS, **fields}
        values = access_values(
            created,
            levelname,
            message,
            _NO_CONTEXT if ctx is None else ctx,
            *map(given.__getitem__, ACCESS_FIELDS),
            live=live and ctx is not None,
        )
        data = _access_dict(values)
        for key in fields.keys() - _ACCESS_KNOWN:
            if not key.startswith("_"):
                data[key] = fields[key]
        return data

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        ctx = record.__dict__.get("obs_context", None)
        if ctx is None:
            ctx = context.current() or getattr(record.__dict__.get("request"), "observability_context", None)
        service, environment = _identity()
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
        for name in FIELDS:
            log_data.setdefault(name, None)
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


_ACCESS_KNOWN = _SKIP | {"route", "method", "status_code", "duration_ms", "outcome"}
_access_dumps = json.JSONEncoder(ensure_ascii=False, default=str).encode
#: What :meth:`JsonFormatter.access_fields` reads when a record has no context or lacks a field.
_NO_CONTEXT = context.ObservabilityContext(source="")
_encode_str = json.encoder.encode_basestring  # json's own (C) string encoder, as used with ensure_ascii=False

#: The fields the middleware gives every access line, beyond the ``obs_context``:
#: :meth:`JsonFormatter.access_line` assembles exactly these.
ACCESS_FIELDS = ("route", "method", "path", "status_code", "duration_ms", "bytes", "outcome", "user_agent")
_NO_FIELDS = dict.fromkeys(ACCESS_FIELDS)


def _js(value: Any) -> str:
    """A JSON string, ``null`` for None or ''; anything that is not a str goes through the full encoder."""
    if type(value) is str:
        return _encode_str(value) if value else "null"
    return "null" if value is None else _access_dumps(value)


def _jn(value: Any) -> str:
    """A JSON number (ints and finite floats print as Python prints them), ``null`` for None."""
    kind = type(value)
    if kind is int or (kind is float and value - value == 0.0):
        return repr(value)
    return "null" if value is None else _access_dumps(value)


def access_values(
    created: float,
    levelname: str,
    message: str,
    ctx: Any,
    route: Any,
    method: Any,
    path: Any,
    status_code: Any,
    duration_ms: Any,
    size: Any,
    outcome: Any,
    user_agent: Any,
    *,
    live: bool = True,
) -> tuple[Any, ...]:
    """What an access line says, read from the context now, with the request's :data:`ACCESS_FIELDS` (in that
    order; ``size`` is ``bytes``), as a flat tuple.

    A tuple of strings and numbers holds neither the context nor the request (``ctx.user`` is the lazy
    ``request.user``, whose closure is the request), so lines can wait for their batch without keeping requests
    alive; :func:`access_text` makes the line of it.
    """
    trace_id, span_id = ctx.trace_id, ctx.span_id
    if not trace_id and live and _tracing_on():
        trace_id, span_id = _trace_ids()
    return (
        created,
        levelname,
        message,
        ctx.request_id,
        ctx.correlation_id,
        trace_id,
        span_id,
        ctx.user_id(),
        ctx.ip,
        route,
        method,
        status_code,
        duration_ms,
        outcome,
        ctx.source,
        ctx.org_id,
        ctx.project_id,
        path,
        size,
        user_agent,
    )


def access_text(values: tuple[Any, ...]) -> str:
    """The JSON line of :func:`access_values`, assembled as a string.

    Every string value goes through json's own C string encoder and the constant part (logger, service,
    environment) is cached: about half the cost of a dict through the encoder, on every request. The middleware
    passes sanitized values only, so no redaction pass is needed here. A value of another type than the
    middleware gives sends the line through the encoder instead (the same object, the tests hold them to it).
    """
    (created, levelname, message, request_id, correlation_id, trace_id, span_id, user_id, ip, route, method, status,
     duration_ms, outcome, source, org_id, project_id, path, size, agent) = values  # fmt: skip
    if ecs_format():
        return _access_dumps(to_ecs({**_access_dict(values), "path": path, "bytes": size, "user_agent": agent}))
    enc = _encode_str
    try:  # every value here is a str or empty; anything else takes the dict path below
        line = (
            f'{{"timestamp": "{format_timestamp(created)}", "level": {enc(levelname)}, '
            f'"message": {enc(message)}, {_access_head()}, '
            f'"request_id": {enc(request_id) if request_id else "null"}, '
            f'"correlation_id": {enc(correlation_id) if correlation_id else "null"}, '
            f'"trace_id": {enc(trace_id) if trace_id else "null"}, '
            f'"span_id": {enc(span_id) if span_id else "null"}, '
            f'"user_id": {_js(user_id)}, "ip": {enc(ip) if ip else "null"}, '
            f'"route": {enc(route)}, "method": {enc(method)}, '
            f'"status_code": {_jn(status)}, "duration_ms": {_jn(duration_ms)}, '
            f'"outcome": {enc(outcome)}, "source": {enc(source) if source else "null"}'
        )
        if org_id:
            line += f', "org_id": {_js(org_id)}'
        if project_id:
            line += f', "project_id": {_js(project_id)}'
        return (
            f'{line}, "path": {enc(path)}, "bytes": {_jn(size)}, '
            f'"user_agent": {"null" if agent is None else enc(agent)}}}'
        )
    except TypeError:
        return _access_dumps({**_access_dict(values), "path": path, "bytes": size, "user_agent": agent})


def _access_dict(values: tuple[Any, ...]) -> dict[str, Any]:
    """:func:`access_values` as a dict, up to ``source`` (and ``org_id``/``project_id``): the SPEC fields."""
    service, environment = _identity()
    (created, levelname, message, request_id, correlation_id, trace_id, span_id, user_id, ip, route, method, status,
     duration_ms, outcome, source, org_id, project_id) = values[:17]  # fmt: skip
    data = {
        "timestamp": format_timestamp(created),
        "level": levelname,
        "message": message,
        "logger": ACCESS_LOGGER,
        "service": service,
        "environment": environment,
        "request_id": request_id or None,
        "correlation_id": correlation_id or None,
        "trace_id": trace_id or None,
        "span_id": span_id or None,
        "user_id": user_id or None,
        "ip": ip or None,
        "route": route,
        "method": method,
        "status_code": status,
        "duration_ms": duration_ms,
        "outcome": outcome,
        "source": source or None,
    }
    if org_id:
        data["org_id"] = org_id
    if project_id:
        data["project_id"] = project_id
    return data


def _access_head_text() -> str:
    service, environment = _identity()
    dumps = _access_dumps  # as the dict path writes them ('' stays '')
    return f'"logger": {dumps(ACCESS_LOGGER)}, "service": {dumps(service)}, "environment": {dumps(environment)}'


_head_cache: list[str] = []


def _access_head() -> str:
    """``"logger": ..., "service": ..., "environment": ...``, cached once the settings answered."""
    if _head_cache:
        return _head_cache[0]
    text = _access_head_text()
    if _identity_cache is not None:  # settings not loaded yet: the environment's fallback is not cached
        _head_cache.append(text)
    return text


on_reload(_head_cache.clear)

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

    The level comes from ``level``, else ``OBSERVABILITY_LOG_LEVEL``, else INFO: it is read here, in settings,
    where Django's settings cannot be asked yet. The access file is written in batches of up to
    ``access_log_buffer`` lines, at the latest ``access_log_flush_seconds`` after a line, at once for 4xx/5xx
    (:class:`observability_app.access_log.AccessLogHandler`); ``access_log_buffer=1`` writes every line at once.
    """
    level = (level or os.environ.get("OBSERVABILITY_LOG_LEVEL") or "INFO").upper()
    handlers: dict[str, Any] = {
        "json_stdout": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
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


def configure_stdout(level: str = "INFO") -> None:
    """For scripts outside Django settings: JSON lines on stdout for the root logger."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
