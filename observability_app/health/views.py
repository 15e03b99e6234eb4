"""Health endpoints: doorways to :mod:`observability_app.health.runner`.

Unauthenticated by design (a kubelet has no session), exempt from ``LoginRequiredMiddleware``, never cached by a
proxy (``Cache-Control: no-store``), JSON only, GET and HEAD only.
"""

from __future__ import annotations

import json

from django.http import HttpRequest, HttpResponse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.csrf import csrf_exempt

from ..compat import login_not_required
from ..database import database_not_required
from .runner import HealthReport, liveness, readiness

_ALLOWED = ("GET", "HEAD")


def _respond(request: HttpRequest, report: HealthReport | None) -> HttpResponse:
    if request.method not in _ALLOWED:
        response = HttpResponse(
            json.dumps({"status": "fail", "error": "method not allowed"}),
            status=405,
            content_type="application/json",
        )
        response["Allow"] = ", ".join(_ALLOWED)
    else:
        assert report is not None
        response = HttpResponse(
            json.dumps(report.as_dict(), separators=(",", ":")),
            status=200 if report.ok else 503,
            content_type="application/json",
        )
    # A failing probe is answered many times a second; django.request would log each 503 as an error. The state
    # is in the JSON and in the health_ready metric; the access log still has one line per probe.
    response._has_been_logged = True
    add_never_cache_headers(response)
    response["Cache-Control"] = "no-store, no-cache, must-revalidate, max-age=0"
    return response


@csrf_exempt
@login_not_required
@database_not_required
def live(request: HttpRequest) -> HttpResponse:
    """Liveness: the process answers; no dependency is consulted (restarting it would not fix one)."""
    return _respond(request, liveness() if request.method in _ALLOWED else None)


@csrf_exempt
@login_not_required
@database_not_required
def ready(request: HttpRequest) -> HttpResponse:
    """Readiness: 200 when every configured check passes, 503 naming the failing checks otherwise."""
    return _respond(request, readiness() if request.method in _ALLOWED else None)
