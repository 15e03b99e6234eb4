"""``GET /metrics``: a doorway to :func:`observability_app.metrics.exposition.render`."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from ..compat import login_not_required
from ..conf import settings
from ..database import database_not_required
from . import access


@csrf_exempt
@login_not_required
@database_not_required
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus exposition; 404 when ``METRICS_ENABLED`` is off, 401/403 when the scraper is not allowed."""
    if not settings.METRICS_ENABLED:
        return HttpResponse("metrics are disabled\n", status=404, content_type="text/plain")
    if request.method not in ("GET", "HEAD"):
        response = HttpResponse("method not allowed\n", status=405, content_type="text/plain")
        response["Allow"] = "GET, HEAD"
        return response
    decision = access.decide(request.META.get("REMOTE_ADDR", ""), request.META.get("HTTP_AUTHORIZATION", ""))
    if decision == access.FORBIDDEN:
        return HttpResponse("forbidden\n", status=403, content_type="text/plain")
    if decision == access.UNAUTHORIZED:
        response = HttpResponse("bearer token required\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    from .exposition import render

    body, content_type = render(request.META.get("HTTP_ACCEPT", ""))
    response = HttpResponse(body, content_type=content_type)
    response["Cache-Control"] = "no-store"
    return response
