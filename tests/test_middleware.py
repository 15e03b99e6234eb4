"""ObservabilityMiddleware through the example project: ids, access line, client ip, debug logging, exclusions."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.test import Client, RequestFactory, override_settings
from hypothesis import given
from hypothesis import strategies as st

from observability_app.audit.models import AuditEvent
from observability_app.middleware import ObservabilityMiddleware, safe_id

from .logcapture import capture_logs
from .test_example_api import URL, put

pytestmark = pytest.mark.django_db


def test_correlation_id_is_echoed_and_stitches_access_line_other_lines_and_audit_events(client):
    with capture_logs() as logs:
        response = put(client, HTTP_X_CORRELATION_ID="abc-123")
        client.get(URL, HTTP_X_CORRELATION_ID="abc-123")
    assert response.status_code == 201
    assert response["X-Correlation-Id"] == "abc-123"
    request_id = response["X-Request-Id"]
    assert len(request_id) == 32
    lines = logs.lines()
    assert len(logs.access()) == 2
    assert all(line["correlation_id"] == "abc-123" for line in lines)
    put_lines = [line for line in lines if line["request_id"] == request_id]
    assert put_lines, "the PUT wrote log lines"
    events = AuditEvent.objects.filter(correlation_id="abc-123")
    assert {e.event_type for e in events} == {"ARTIFACT_CREATED", "ARTIFACT_ACCESSED"}
    assert events.get(event_type="ARTIFACT_CREATED").request_id == request_id


def test_access_line_fields_and_levels_by_status(client):
    put(client)
    with capture_logs() as logs:
        client.get(URL + "?secret=1")
        client.get(URL.replace("1.0.0", "9.9.9"))
        client.get("/no/such/route")
    ok, missing, unmatched = logs.access()
    assert ok["level"] == "INFO" and ok["status_code"] == 200 and ok["outcome"] == "success"
    assert ok["route"] == "api/v1/buckets/<name:bucket>/artifacts/<name:name>/<name:version>"
    assert ok["path"] == "/api/v1/buckets/models/artifacts/classifier/1.0.0"  # no query string by default
    assert ok["method"] == "GET" and ok["bytes"] == len(b"weights") and ok["duration_ms"] > 0
    assert missing["level"] == "WARNING" and missing["status_code"] == 404 and missing["outcome"] == "error"
    assert unmatched["route"] == "<unmatched>"


def test_server_errors_are_logged_at_error_with_the_stack(client, monkeypatch):
    from example_project.bucket import services

    def boom(*args, **kwargs):
        raise RuntimeError("storage exploded")

    monkeypatch.setattr(services, "read_artifact", boom)
    put(client)
    raising = Client(raise_request_exception=False)
    with capture_logs() as logs:
        response = raising.get(URL, HTTP_X_CORRELATION_ID="boom-1")
    assert response.status_code == 500
    (access,) = logs.access()
    assert access["level"] == "ERROR" and access["status_code"] == 500
    errors = [line for line in logs.lines() if line.get("error.type") == "RuntimeError"]
    assert errors and errors[0]["correlation_id"] == "boom-1" and "storage exploded" in errors[0]["error.stack"]


@pytest.mark.parametrize(
    "bad", ["x" * 4096, "abc\n123", "abc\r\nX-Injected: 1", "a b", "<script>", "ü-nicode", "a" * 129, ""]
)
def test_unsafe_correlation_ids_are_replaced_and_never_logged_raw(client, bad):
    with capture_logs() as logs:
        response = client.get(URL, HTTP_X_CORRELATION_ID=bad)
    echoed = response["X-Correlation-Id"]
    assert echoed != bad and safe_id(echoed) == echoed
    if bad:
        assert bad not in logs.text
        (access,) = logs.access()
        assert access["correlation_id"] == echoed
        assert access["correlation_id_rejected_length"] == len(bad)


@given(value=st.text(max_size=300))
def test_safe_id_accepts_only_short_plain_ids(value):
    result = safe_id(value)
    assert result is None or (result == value and len(value) <= 128 and "\n" not in value and " " not in value)


def test_a_password_in_a_form_post_and_an_authorization_header_never_reach_the_output(client):
    User.objects.create_user("alice", password="correct-horse-battery")
    with capture_logs() as logs:
        client.post(
            "/admin/login/",
            {"username": "alice", "password": "hunter2-wrong"},
            HTTP_AUTHORIZATION="Bearer top-secret-token",
        )
        client.get(URL, HTTP_AUTHORIZATION="Basic dXNlcjpwYXNz", HTTP_COOKIE="sessionid=cookie-value")
    assert logs.lines()
    for secret in ("hunter2-wrong", "top-secret-token", "dXNlcjpwYXNz", "cookie-value"):
        assert secret not in logs.text


@override_settings(OBSERVABILITY={"TRUSTED_PROXIES": ["10.0.0.0/8"]})
def test_client_ip_honours_trusted_proxies_only():
    client = Client()
    with capture_logs() as logs:
        client.get(URL, REMOTE_ADDR="10.1.2.3", HTTP_X_FORWARDED_FOR="203.0.113.9, 10.0.0.5")
        client.get(URL, REMOTE_ADDR="198.51.100.7", HTTP_X_FORWARDED_FOR="203.0.113.9")
        client.get(URL, REMOTE_ADDR="10.1.2.3", HTTP_X_FORWARDED_FOR="not-an-ip")
    via_proxy, direct, garbage = logs.access()
    assert via_proxy["ip"] == "203.0.113.9"
    assert direct["ip"] == "198.51.100.7"  # an untrusted peer cannot claim another address
    assert garbage["ip"] == "10.1.2.3"


def test_excluded_paths_get_ids_but_no_access_line(client):
    with capture_logs() as logs:
        response = client.get("/health/live")
    assert response["X-Request-Id"]
    assert logs.access() == []


@override_settings(OBSERVABILITY={"ACCESS_LOG_SAMPLE_RATE": 0.0})
def test_sampling_drops_successes_but_never_errors():
    client = Client()
    with capture_logs() as logs:
        for _ in range(5):
            client.get(URL)  # 404: an error, always logged
    assert len(logs.access()) == 5
    put(client)
    with capture_logs() as logs:
        client.get(URL)
    assert logs.access() == []


def test_debug_logging_for_staff_only_and_sanitized(client):
    put(client)
    with capture_logs() as logs:
        client.get(URL, HTTP_X_DEBUG_LOGGING="full", HTTP_AUTHORIZATION="Bearer nope-token")
    (refused,) = logs.access()
    assert refused["debug_logging"] == "refused" and "request_headers" not in refused
    User.objects.create_user("ops", password="pw-123456789", is_staff=True)
    client.login(username="ops", password="pw-123456789")
    with capture_logs() as logs:
        client.get(URL, HTTP_X_DEBUG_LOGGING="full", HTTP_AUTHORIZATION="Bearer nope-token")
    (full,) = logs.access()
    assert full["debug_logging"] == "full"
    assert full["request_headers"]["Authorization"] == "[REDACTED]"
    assert full["request_headers"]["Cookie"] == "[REDACTED]"
    assert "nope-token" not in logs.text
    timing = full["timing"]
    assert timing["db_queries"] >= 1 and timing["db_ms"] >= 0 and timing["view_ms"] >= 0


@override_settings(OBSERVABILITY={"DEBUG_LOGGING_ENABLED": False})
def test_debug_logging_disabled_ignores_the_header_even_for_staff():
    User.objects.create_user("ops", password="pw-123456789", is_staff=True)
    client = Client()
    client.login(username="ops", password="pw-123456789")
    with capture_logs() as logs:
        client.get(URL, HTTP_X_DEBUG_LOGGING="full")
    (line,) = logs.access()
    assert line["debug_logging"] == "refused" and "request_headers" not in line


def test_odd_methods_and_huge_headers_do_not_break_the_middleware(client):
    response = client.generic("BREW", URL, HTTP_USER_AGENT="x" * 100_000)
    assert response.status_code == 405
    assert response["X-Request-Id"]


def test_async_requests_get_context_too():
    from asgiref.sync import async_to_sync
    from django.test import AsyncClient

    with capture_logs() as logs:
        response = async_to_sync(AsyncClient().get)("/health/live", headers={"X-Correlation-Id": "async-1"})
        missing = async_to_sync(AsyncClient().get)("/no/such/route", headers={"X-Correlation-Id": "async-2"})
    assert response["X-Correlation-Id"] == "async-1" and missing.status_code == 404
    (access,) = logs.access()
    assert access["correlation_id"] == "async-2" and access["route"] == "<unmatched>"


@pytest.mark.parametrize(
    "make",
    [
        lambda: HttpResponse(b"x"),
        lambda: StreamingHttpResponse(iter([b"a", b"b"])),
        lambda: JsonResponse({"a": 1}),
    ],
)
def test_id_headers_replace_any_the_view_set_and_reach_the_wire(make):
    def view(request):
        response = make()
        response["x-request-id"] = "from-the-view"  # any spelling: header names are case-insensitive
        return response

    response = ObservabilityMiddleware(view)(RequestFactory().get("/x", HTTP_X_CORRELATION_ID="abc-123"))
    wire = [(name.lower(), value) for name, value in response.items()]
    assert [value for name, value in wire if name == "x-correlation-id"] == ["abc-123"]
    (request_id,) = [value for name, value in wire if name == "x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)
    assert ("X-Request-Id", request_id) in list(response.items())


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: HttpResponse(b"x" * 1000), 1000),  # no Content-Length set by anyone: measured
        (lambda: _with_length(HttpResponse(b""), "1000"), 1000),  # what the header says goes on the wire
        (lambda: _with_length(HttpResponse(b"abc"), "not-a-number"), 3),  # a hostile header is not believed
        (lambda: StreamingHttpResponse(iter([b"a"])), None),
    ],
)
def test_access_line_bytes(make, expected):
    with capture_logs() as logs:
        ObservabilityMiddleware(lambda request: make())(RequestFactory().get("/x"))
    (line,) = logs.access()
    assert line["bytes"] == expected


def _with_length(response, value):
    response["Content-Length"] = value
    return response


def test_guard_django_response_headers_store_shape():
    """middleware._set_id_headers writes ``ResponseHeaders._store`` directly (its figure is in its docstring): the
    store must still be a dict of lower-cased name -> (name, value) that the response sends as it is."""
    from django.http import HttpResponse, StreamingHttpResponse
    from django.http.response import ResponseHeaders

    from observability_app.middleware import _set_id_headers

    for response in (HttpResponse(b"x"), StreamingHttpResponse(iter([b"x"]))):
        assert type(response.headers) is ResponseHeaders and type(response.headers._store) is dict
        response["Content-Language"] = "en"
        assert response.headers._store["content-language"] == ("Content-Language", "en")
        _set_id_headers(response, "r" * 32, "c-1")
        assert response["x-request-id"] == "r" * 32 and response.has_header("X-Correlation-Id")
        assert ("X-Correlation-Id", "c-1") in list(response.items())
