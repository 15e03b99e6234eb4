"""HTTP doorways to :mod:`services`: parse the request, call one function, shape the answer."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from . import jobs, services

MAX_JSON_BODY = 64 * 1024


def _error(exc: services.BucketError) -> JsonResponse:
    return JsonResponse({"error": str(exc)}, status=exc.status)


def _json_body(request: HttpRequest) -> dict[str, Any]:
    if len(request.body) > MAX_JSON_BODY:
        raise services.BadRequest(f"JSON body over {MAX_JSON_BODY} bytes")
    try:
        data = json.loads(request.body or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise services.BadRequest("body must be a JSON object") from None
    if not isinstance(data, dict):
        raise services.BadRequest("body must be a JSON object")
    return data


def _header(request: HttpRequest, name: str, default: str) -> str:
    value = request.headers.get(name, default).strip()[:255]
    return value or default


@csrf_exempt
@require_http_methods(["GET", "HEAD", "PUT", "DELETE"])
def artifact(request: HttpRequest, bucket: str, name: str, version: str) -> HttpResponse:
    _simulate_error(request)
    try:
        if request.method == "PUT":
            length = int(request.META.get("CONTENT_LENGTH") or 0)
            if length > settings.ARTIFACT_MAX_BYTES:
                return JsonResponse({"error": f"artifact over {settings.ARTIFACT_MAX_BYTES} bytes"}, status=413)
            client_digest = services.parse_client_digest(request.headers.get("X-Content-Digest"))
            client = _header(request, "X-Client-Id", request.META.get("REMOTE_ADDR", "") or "anonymous")
            stored = services.store_artifact(bucket, name, version, request.body, client_digest, client=client)
            if settings.BUCKET_SCAN_ON_UPLOAD:
                _scan_later(request, bucket, name, version)
            return JsonResponse(
                {"artifact_id": stored.artifact_id, "digest": stored.digest, "size_bytes": stored.size_bytes},
                status=201,
            )
        if request.method == "DELETE":
            services.delete_artifact(bucket, name, version, reason=_header(request, "X-Reason", "deleted via API"))
            return HttpResponse(status=204)
        if request.method == "HEAD":  # metadata only: the bytes are not read
            meta = services.read_metadata(bucket, name, version)
            response = HttpResponse(content_type="application/octet-stream")
            response["Content-Length"] = str(meta.size_bytes)
            response["X-Content-Digest"] = meta.digest
            return response
        reader = _header(
            request, "X-Reader", request.user.get_username() if request.user.is_authenticated else "anonymous"
        )
        found = services.read_artifact(
            bucket, name, version, reader=reader, purpose=_header(request, "X-Purpose", "unspecified")
        )
        response = HttpResponse(bytes(found.content), content_type="application/octet-stream")
        response["X-Content-Digest"] = found.digest
        return response
    except services.BucketError as exc:
        return _error(exc)


def _simulate_error(request: HttpRequest) -> None:
    """``X-Simulate-Error: 1`` raises (Django answers 500), honoured only with ``BUCKET_FAULT_INJECTION`` on.

    The way tests and docs/traffic.md produce a burst of server errors for the 5xx alert and panels.
    """
    if settings.BUCKET_FAULT_INJECTION and request.headers.get("X-Simulate-Error") == "1":
        raise RuntimeError("simulated server error (X-Simulate-Error: 1, EXAMPLE_FAULT_INJECTION=1)")


def _transient_failures(request: HttpRequest) -> int:
    """``X-Simulate-Transient-Failures: N`` (0..10), honoured only with ``BUCKET_FAULT_INJECTION`` on."""
    raw = request.headers.get("X-Simulate-Transient-Failures", "0")
    if not settings.BUCKET_FAULT_INJECTION or not raw.isdigit() or len(raw) > 2:
        return 0
    return min(int(raw), 10)


def _scan_later(request: HttpRequest, bucket: str, name: str, version: str) -> None:
    """Publish the scan task once the caller's transaction commits (the worker must see the row)."""
    from .tasks import enqueue_scan

    fail_times = _transient_failures(request)
    # robust: a broker that is down is logged (django.db.backends.base), the committed upload still answers 201
    transaction.on_commit(lambda: enqueue_scan(bucket, name, version, fail_times=fail_times), robust=True)


@csrf_exempt
@require_POST
def scan_artifact(request: HttpRequest, bucket: str, name: str, version: str) -> JsonResponse:
    """The scan now (200 and the decision), or queued: ``?async=1`` a Celery task, ``?async=thread`` a thread."""
    try:
        mode = request.GET.get("async")
        if mode in ("1", "thread"):
            services.get_artifact(bucket, name, version)  # 404 now rather than in the background
            if mode == "thread":
                jobs.scan_in_background(bucket, name, version)
            else:
                _scan_later(request, bucket, name, version)
            return JsonResponse({"status": "scheduled"}, status=202)
        return JsonResponse(services.scan_artifact(bucket, name, version))
    except services.BucketError as exc:
        return _error(exc)


@csrf_exempt
@require_POST
def overturn_decision(request: HttpRequest, bucket: str, name: str, version: str) -> JsonResponse:
    try:
        data = _json_body(request)
        return JsonResponse(
            services.overturn_decision(
                bucket,
                name,
                version,
                str(data.get("decision", "")),
                str(data.get("reason", ""))[:2000],
                reason_code=str(data.get("reason_code", "manual_review"))[:64],
            )
        )
    except services.BucketError as exc:
        return _error(exc)


@csrf_exempt
@require_POST
def verify_provenance(request: HttpRequest, bucket: str, name: str, version: str) -> JsonResponse:
    try:
        data = _json_body(request)
        return JsonResponse(services.verify_provenance(bucket, name, version, data.get("upstream_refs")))
    except services.BucketError as exc:
        return _error(exc)
