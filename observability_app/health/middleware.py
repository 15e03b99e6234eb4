"""``DatabaseUnavailableMiddleware``: 503 at once while the database is known to be failing, instead of a queue.

Put it right after ``ObservabilityMiddleware`` (so that the 503 is logged and counted)::

    MIDDLEWARE = [
        "observability_app.middleware.ObservabilityMiddleware",
        "observability_app.health.middleware.DatabaseUnavailableMiddleware",
        ...
    ]

Requests under ``EXCLUDED_PATHS`` and views marked ``database_optional = True`` (the probes, /metrics) always
pass. The policy (when the breaker opens, how a
trial request closes it) is :data:`observability_app.health.database.breaker`; this class is its doorway.
"""

from __future__ import annotations

import json
from typing import Any

from django.db import InterfaceError, OperationalError
from django.http import HttpResponse

from ..conf import settings
from .database import breaker


def unavailable_response() -> HttpResponse:
    response = HttpResponse(
        json.dumps({"error": "database unavailable", "status": 503}),
        status=503,
        content_type="application/json",
    )
    response["Retry-After"] = str(breaker.retry_after())
    response._has_been_logged = True  # one access line, not a django.request error with a traceback per request
    return response


class DatabaseUnavailableMiddleware:
    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response
        self._excluded = tuple(settings.EXCLUDED_PATHS)

    def __call__(self, request: Any) -> Any:
        response = self.get_response(request)
        if getattr(request, "_observability_db_trial", False):
            breaker.finished(not getattr(request, "_observability_db_failed", False))
        return response

    def process_view(self, request: Any, view_func: Any, view_args: Any, view_kwargs: Any) -> HttpResponse | None:
        if not breaker.is_open:
            return None
        if getattr(view_func, "database_optional", False) or request.path.startswith(self._excluded):
            return None  # the probes and /metrics answer for themselves
        if not breaker.allow():
            return unavailable_response()
        request._observability_db_trial = True
        return None

    def process_exception(self, request: Any, exception: BaseException) -> HttpResponse | None:
        """A view that failed on the database (connect timeout, cut connection): 503, and the breaker opens."""
        if isinstance(exception, OperationalError | InterfaceError):
            request._observability_db_failed = True
            breaker.trip()
            return unavailable_response()
        return None
