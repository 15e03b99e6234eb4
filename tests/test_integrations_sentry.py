"""Sentry: the real sentry-sdk, started by the app from a DSN, sends an unhandled error to a local receiver.

The failing request runs in a child process (the SDK's client, Django integration and logging hooks are
process-wide: they must not stay in the test process), with the example project's settings, tracing on and
``OBSERVABILITY_SENTRY_DSN`` pointing at the receiver.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from hypothesis import given
from hypothesis import strategies as st

from observability_app import context
from observability_app.integrations import sentry
from observability_app.redaction import REDACTED

from .receivers import HttpReceiver
from .servers import ROOT

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SECRETS = (
    "hunter2-form-field",
    "hunter2-local-variable",
    "cookie-secret-xyz",
    "bearer-secret-tok",
    "tok-in-message-42",
    "owner@example.org",
    "csrf-cookie-value",
)

_CHILD = textwrap.dedent(
    """
    import json, threading, urllib.error, urllib.parse, urllib.request
    from wsgiref.simple_server import WSGIRequestHandler, make_server
    import django
    django.setup()
    import sentry_sdk
    from django.conf import settings
    from django.core.wsgi import get_wsgi_application
    from django.test import override_settings

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    with override_settings(
        ROOT_URLCONF="tests.sentry_urls",
        OBSERVABILITY={**settings.OBSERVABILITY, "REDACT_FIELDS": ["owner_email"]},
    ):
        # Through a real WSGI server: Sentry reads the URL, headers and cookies from the WSGI environ.
        server = make_server("127.0.0.1", 0, get_wsgi_application(), handler_class=Quiet)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        form = {"password": "hunter2-form-field", "owner_email": "owner@example.org", "name": "weights"}
        request = urllib.request.Request(
            f"http://127.0.0.1:{server.server_address[1]}/boom/?api_token=tok-in-message-42",
            data=urllib.parse.urlencode(form).encode(),
            headers={
                "Cookie": "sessionid=cookie-secret-xyz; csrftoken=csrf-cookie-value",
                "Authorization": "Bearer bearer-secret-tok",
                "X-Correlation-Id": "sentry-e2e-1",
                "traceparent": "00-TRACE_ID-00f067aa0ba902b7-01",
            },
        )
        try:
            urllib.request.urlopen(request, timeout=30)
        except urllib.error.HTTPError as error:
            status, request_id = error.code, error.headers["X-Request-Id"]
        server.shutdown()
    sentry_sdk.flush(timeout=10)
    print(json.dumps({"status": status, "request_id": request_id}))
    """
).replace("TRACE_ID", TRACE_ID)


def _events(body: bytes) -> list[dict]:
    """The ``event`` items of a Sentry envelope (header line, then item header / payload line pairs)."""
    lines = body.split(b"\n")
    events = []
    index = 1
    while index + 1 < len(lines):
        header = json.loads(lines[index])
        payload = lines[index + 1]
        if header.get("length") is not None:  # a payload may hold newlines: it then has its length
            rest = b"\n".join(lines[index + 1 :])
            payload = rest[: header["length"]]
            lines = [*lines[: index + 1], *rest[header["length"] + 1 :].split(b"\n")]
        if header.get("type") == "event":
            events.append(json.loads(payload))
        index += 2
    return events


def _run_child(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", _CHILD],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "example_project.settings", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def child_database(tmp_path):
    """A migrated SQLite file of the child's own (the failing view needs no rows, the middleware needs tables)."""
    path = tmp_path / "child.sqlite3"
    env = {"DATABASE_URL": f"sqlite:///{path}", "DJANGO_SETTINGS_MODULE": "example_project.settings"}
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env={**os.environ, **env},
        check=True,
        timeout=120,
    )
    return env["DATABASE_URL"]


def test_an_unhandled_error_arrives_tagged_and_without_secrets(child_database):
    with HttpReceiver() as receiver:
        child = _run_child(
            {
                "DATABASE_URL": child_database,
                "OBSERVABILITY_SENTRY_DSN": f"http://public-key@127.0.0.1:{receiver.port}/42",
                "OBSERVABILITY_ENVIRONMENT": "staging-e2e",
                "OBSERVABILITY_SERVICE_VERSION": "9.9.9",
                "OBSERVABILITY_TRACING_ENABLED": "1",
                "OBSERVABILITY_TRACE_EXPORTER": "none",
            }
        )
        assert child.returncode == 0, child.stderr[-3000:]
        answer = json.loads(child.stdout.strip().splitlines()[-1])
        envelopes = receiver.wait_for(lambda item: item.path == "/api/42/envelope/")
    assert answer["status"] == 500
    events = [event for item in envelopes for event in _events(item.body)]
    (event,) = [event for event in events if event.get("exception")]
    (exception,) = event["exception"]["values"]
    assert exception["type"] == "RuntimeError"
    assert event["tags"]["correlation_id"] == "sentry-e2e-1"
    assert event["tags"]["request_id"] == answer["request_id"]
    assert event["tags"]["trace_id"] == TRACE_ID
    assert event["tags"]["service"] == "artifact-bucket"
    assert (event["environment"], event["release"]) == ("staging-e2e", "9.9.9")
    # The request went out (its URL and the harmless form field), its secrets did not.
    request = event["request"]
    assert request["url"].endswith("/boom/") and request["method"] == "POST"
    assert request["headers"]["X-Correlation-Id"] == "sentry-e2e-1"
    assert request["data"]["name"] == "weights"
    assert request["data"]["owner_email"] == REDACTED  # REDACT_FIELDS: a name Sentry's own scrubber does not know
    raw = b"".join(item.body for item in receiver.received).decode()
    leaked = [secret for secret in SECRETS if secret in raw]
    assert not leaked, [raw[max(0, raw.find(s) - 200) : raw.find(s) + 50] for s in leaked]
    assert "upload failed for token=[REDACTED]" in exception["value"]


def test_without_a_dsn_nothing_is_started(child_database):
    with HttpReceiver() as receiver:
        child = _run_child({"DATABASE_URL": child_database, "OBSERVABILITY_SENTRY_DSN": ""})
        assert child.returncode == 0, child.stderr[-3000:]
    assert receiver.received == []


def test_a_missing_sentry_sdk_names_the_extra():
    script = "import sys; sys.modules['sentry_sdk'] = None\nimport observability_app.integrations.sentry"
    child = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "example_project.settings"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.returncode == 1
    assert "pip install 'observability_app[sentry]'" in child.stderr


def test_tags_come_from_the_bound_context():
    ctx = context.ObservabilityContext(
        request_id="r-1", correlation_id="c-1", source="job", route="jobs/scan", trace_id="ab" * 16, span_id="cd" * 8
    )
    with context.bound(ctx):
        event = sentry.before_send({"message": "x", "tags": {"team": "storage"}})
    assert event["tags"] == {
        "service": "artifact-bucket",
        "correlation_id": "c-1",
        "request_id": "r-1",
        "trace_id": "ab" * 16,
        "span_id": "cd" * 8,
        "source": "job",
        "route": "jobs/scan",
        "team": "storage",
    }
    assert event["environment"] and event["release"]


def test_header_pairs_and_nested_secrets_are_redacted():
    event = {
        "request": {"headers": [["Authorization", "Bearer abc"], ["Accept", "text/html"]], "cookies": {"a": "b"}},
        "extra": {"nested": [{"api_key": "k-1", "note": "password: p-1 ok"}]},
        "tags": "not a dict",
    }
    out = sentry.before_send(event)
    assert out["request"]["headers"] == [["Authorization", REDACTED], ["Accept", "text/html"]]
    assert out["request"]["cookies"] == REDACTED
    assert out["extra"]["nested"][0] == {"api_key": REDACTED, "note": f"password: {REDACTED} ok"}
    assert out["tags"]["service"] == "artifact-bucket"


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=30,
)


@given(event=st.dictionaries(st.text(max_size=12), _json, max_size=6), secret=st.text(min_size=6, max_size=20))
def test_any_event_keeps_its_shape_and_loses_secret_keyed_values(event, secret):
    marker = f"zz{secret}zz"
    event = {**event, "extra": {"deep": [{"password": marker}, {"x": {"auth_token": marker}}]}}
    out = sentry.before_send(event)
    assert marker not in json.dumps(out)
    assert set(out) >= set(event)
