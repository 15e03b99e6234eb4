"""``ObservabilityMiddleware``: first in ``MIDDLEWARE``; binds the request context, writes the access line.

Per request it: validates or creates the correlation id (``X-Correlation-Id`` in, echoed out) and a request id
(``X-Request-Id`` out), finds the client ip (``X-Forwarded-For`` only from ``TRUSTED_PROXIES``), binds the context
that log lines and audit events read, and afterwards counts the request in the metrics and writes one access line
(5xx error, 4xx warning, else info; successes sampled by ``ACCESS_LOG_SAMPLE_RATE``, errors never). Paths under
``EXCLUDED_PATHS`` keep their ids but get no access line and no metrics. While the default database is known not to
answer, views not marked ``database_not_required`` get a 503 at once, and a view's database timeout becomes a 503
(:mod:`observability_app.database`).

Settings are read once, when Django builds the middleware chain. ``X-Debug-Logging: full`` adds sanitized headers
and a timing breakdown to the access line when ``DEBUG_LOGGING_ENABLED`` and the caller is staff or comes from
``DEBUG_LOGGING_NETWORKS``; otherwise the header is ignored and counted.
"""

from __future__ import annotations

import ipaddress
import logging
import random
from time import perf_counter
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction

from . import context, database
from .access_log import AccessLog
from .conf import settings
from .ids import new_id, safe_id
from .logging import ACCESS_LOGGER
from .redaction import redact_headers
from .tracing import active as tracing_active
from .tracing import current_trace_ids

__all__ = ["UNMATCHED_ROUTE", "ObservabilityMiddleware", "safe_id"]

UNMATCHED_ROUTE = "<unmatched>"
_LEVELS = (logging.INFO, logging.WARNING, logging.ERROR)


def _networks(values: Any) -> tuple[Any, ...]:
    return tuple(ipaddress.ip_network(value, strict=False) for value in values or ())


def _in(ip: str, networks: tuple[Any, ...]) -> bool:
    if not networks or not ip:
        return False
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address in network for network in networks)


def _set_id_headers(response: Any, request_id: str, correlation_id: str) -> None:
    """``X-Request-Id`` and ``X-Correlation-Id`` on the response.

    The one private use of Django on the hot path: ``ResponseHeaders._store`` (lower-cased name -> (name, value)),
    written directly. Through ``response.headers[...] = ...`` the two headers cost about 14,000 instructions a
    request (four charset and newline conversions), against about 1,000 here, and the issue's target is 60,000 for
    the whole middleware (benchmarks.middleware --instructions, docs/performance.md). Both values are ours or
    passed :func:`safe_id` (ASCII letters, digits, ``._:-``), so those checks cannot refuse them. Any other kind of
    headers object gets the public API. Guarded by
    tests/test_middleware.py::test_guard_django_response_headers_store_shape, which fails when Django changes it.
    """
    store = getattr(response.headers, "_store", None)
    if type(store) is dict:
        store["x-request-id"] = ("X-Request-Id", request_id)
        store["x-correlation-id"] = ("X-Correlation-Id", correlation_id)
    else:
        response.headers["X-Request-Id"] = request_id
        response.headers["X-Correlation-Id"] = correlation_id


class _DebugTimer:
    """Database time and query count of one request (installed only for X-Debug-Logging: full)."""

    def __init__(self) -> None:
        self.db_seconds = 0.0
        self.queries = 0

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context_: Any) -> Any:
        started = perf_counter()
        try:
            return execute(sql, params, many, context_)
        finally:
            self.db_seconds += perf_counter() - started
            self.queries += 1


class ObservabilityMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)
        conf = settings._setup().values
        self._excluded = tuple(conf["EXCLUDED_PATHS"])
        self._max_id = conf["CORRELATION_ID_MAX_LENGTH"]
        self._trusted = _networks(conf["TRUSTED_PROXIES"])
        self._sample = float(conf["ACCESS_LOG_SAMPLE_RATE"])
        self._access = (
            AccessLog(logging.getLogger(ACCESS_LOGGER), include_query=conf["ACCESS_LOG_INCLUDE_QUERY"])
            if conf["ACCESS_LOG_ENABLED"]
            else None
        )
        self._debug_enabled = conf["DEBUG_LOGGING_ENABLED"]
        self._debug_networks = _networks(conf["DEBUG_LOGGING_NETWORKS"])
        self._observe = None  # with METRICS_ENABLED off, metrics cost nothing here
        self._debug_refused = None
        if conf["METRICS_ENABLED"]:
            from .metrics import families
            from .metrics.http import observe_request

            self._observe = observe_request
            self._debug_refused = families.DEBUG_LOGGING_REFUSED

    # -- the hot path ------------------------------------------------------------------------------------------
    def __call__(self, request: Any) -> Any:
        if self.is_async:
            return self.__acall__(request)
        ctx, started = self._begin(request)
        token = context.bind(ctx)
        try:
            response = self.get_response(request)
            return self._finish(ctx, request, response, started)
        finally:
            if ctx.extra:
                self._end_debug(ctx)
            context.unbind(token)

    async def __acall__(self, request: Any) -> Any:
        ctx, started = self._begin(request)
        token = context.bind(ctx)
        try:
            response = await self.get_response(request)
            return self._finish(ctx, request, response, started)
        finally:
            if ctx.extra:
                self._end_debug(ctx)
            context.unbind(token)

    def process_view(self, request: Any, view_func: Any, view_args: Any, view_kwargs: Any) -> Any:
        ctx = context.current()
        if ctx is None:
            return None
        match = request.resolver_match
        if match is not None:
            ctx.route = match.route or UNMATCHED_ROUTE
            if match.app_name == "admin":
                ctx.source = "admin"
        ctx.user = getattr(request, "user", None)
        if "debug" in ctx.extra:
            ctx.extra["view_started"] = perf_counter()
        if database.DEFAULT.open:  # the database is known not to answer: 503 now rather than queue (database.py)
            return database.shed(view_func)
        return None

    def process_exception(self, request: Any, exception: Exception) -> Any:
        """503 for a database that did not answer (timeout, lost connection); anything else goes on to Django."""
        return database.response_for_exception(exception)

    def _begin(self, request: Any) -> tuple[context.ObservabilityContext, float]:
        started = perf_counter()
        meta = request.META
        request_id = new_id()
        incoming = meta.get("HTTP_X_CORRELATION_ID")
        correlation_id = safe_id(incoming, self._max_id) if incoming else None
        ctx = context.ObservabilityContext(
            request_id=request_id,
            correlation_id=correlation_id or request_id,
            source="api",
            method=request.method or "",
            ip=self._client_ip(meta),
            user_agent=meta.get("HTTP_USER_AGENT", "")[:512],
        )
        request.observability_context = ctx  # for log lines Django writes after the chain returns
        if incoming and correlation_id is None:
            ctx.extra["correlation_id_rejected"] = len(incoming)  # the length only: the value is never logged
        if meta.get("HTTP_X_DEBUG_LOGGING") == "full":
            timer = ctx.extra["debug"] = _DebugTimer()
            from django.db import connection

            ctx.extra["debug_wrapper"] = connection.execute_wrapper(timer)
            ctx.extra["debug_wrapper"].__enter__()
        return ctx, started

    def _client_ip(self, meta: dict[str, Any]) -> str:
        remote = meta.get("REMOTE_ADDR", "") or ""
        if not self._trusted or not _in(remote, self._trusted):
            return remote[:45]
        # Walk X-Forwarded-For from the right: the first address not of a trusted proxy is the client.
        for candidate in reversed(meta.get("HTTP_X_FORWARDED_FOR", "").split(",")):
            candidate = candidate.strip()
            try:
                ipaddress.ip_address(candidate)
            except ValueError:
                break
            if not _in(candidate, self._trusted):
                return candidate
        return remote[:45]

    def _finish(self, ctx: context.ObservabilityContext, request: Any, response: Any, started: float) -> Any:
        if not ctx.trace_id and tracing_active():
            # Kept on the context: Django logs 4xx/5xx after the chain (and the span) have ended.
            ctx.trace_id, ctx.span_id = current_trace_ids()
        _set_id_headers(response, ctx.request_id, ctx.correlation_id)
        path = request.path
        if path.startswith(self._excluded):
            return response
        duration = perf_counter() - started
        status = response.status_code
        route = ctx.route or UNMATCHED_ROUTE
        if self._observe is not None:
            self._observe(request.method, route, status, duration, response)
        access = self._access
        if access is not None and (
            status >= 400 or self._sample >= 1.0 or "debug" in ctx.extra or random.random() < self._sample
        ):
            level = _LEVELS[(status >= 400) + (status >= 500)]
            if access.logger.isEnabledFor(level):
                extra = self._extra_fields(ctx, request, response, duration) if ctx.extra else None
                access.write(level, ctx, request, response, route, status, duration, extra)
        return response

    def _extra_fields(self, ctx: Any, request: Any, response: Any, duration: float) -> dict[str, Any] | None:
        """Fields beyond the access line's own: a rejected correlation id's length, debug logging."""
        fields: dict[str, Any] = {}
        if "correlation_id_rejected" in ctx.extra:
            fields["correlation_id_rejected_length"] = ctx.extra["correlation_id_rejected"]
        if "debug" in ctx.extra:
            fields.update(self._debug_fields(ctx, request, response, started_at=perf_counter() - duration))
        return fields or None

    def _debug_fields(self, ctx: Any, request: Any, response: Any, started_at: float) -> dict[str, Any]:
        timer = self._end_debug(ctx)
        user = getattr(request, "user", None)
        allowed = self._debug_enabled and (bool(getattr(user, "is_staff", False)) or _in(ctx.ip, self._debug_networks))
        if not allowed:
            if self._debug_refused is not None:
                self._debug_refused.inc()
            return {"debug_logging": "refused"}
        now = perf_counter()
        view_started = ctx.extra.get("view_started", now)
        return {
            "debug_logging": "full",
            "request_headers": redact_headers(dict(request.headers)),
            "response_headers": redact_headers(dict(response.headers)),
            "timing": {
                "before_view_ms": round((view_started - started_at) * 1000, 3),
                "view_ms": round((now - view_started) * 1000, 3),
                "db_ms": round(timer.db_seconds * 1000, 3) if timer else None,
                "db_queries": timer.queries if timer else None,
            },
        }

    @staticmethod
    def _end_debug(ctx: Any) -> Any:
        wrapper = ctx.extra.pop("debug_wrapper", None)
        if wrapper is not None:
            wrapper.__exit__(None, None, None)
        return ctx.extra.get("debug")
