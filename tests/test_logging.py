"""JSON formatting: the SPEC field set, context on every line whichever logger wrote it, errors, redaction."""

from __future__ import annotations

import json
import logging
import logging.config
import re
from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from observability_app.context import bound
from observability_app.logging import FIELDS, JsonFormatter, format_timestamp, logging_config

from .logcapture import capture_logs


def test_every_spec_field_is_present_in_order():
    with capture_logs() as logs:
        logging.getLogger("example.any").info("hello %s", "world")
    (line,) = logs.lines()
    assert list(line)[: len(FIELDS)] == list(FIELDS)
    assert line["message"] == "hello world" and line["level"] == "INFO" and line["logger"] == "example.any"
    assert line["service"] == "artifact-bucket" and line["environment"] == "development"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", line["timestamp"])


def test_lines_carry_the_bound_context_whichever_logger_wrote_them():
    with (
        bound(
            request_id="r-1",
            correlation_id="c-1",
            source="job",
            route="jobs/x",
            method="POST",
            ip="10.1.1.1",
            org_id="org-7",
            project_id="p-9",
        ),
        capture_logs() as logs,
    ):
        logging.getLogger("django.db.backends").warning("from django")
        logging.getLogger("some.library").error("from a library")
    for line in logs.lines():
        assert (line["request_id"], line["correlation_id"], line["source"]) == ("r-1", "c-1", "job")
        assert (line["route"], line["method"], line["ip"]) == ("jobs/x", "POST", "10.1.1.1")
        assert (line["org_id"], line["project_id"]) == ("org-7", "p-9")


def test_exceptions_add_error_fields():
    with capture_logs() as logs:
        try:
            raise ValueError("bad digest for token=abc123")
        except ValueError:
            logging.getLogger("example").exception("upload failed")
    (line,) = logs.lines()
    assert line["error.type"] == "ValueError"
    assert line["error.message"] == "bad digest for token=[REDACTED]"
    assert "Traceback" in line["error.stack"] and "abc123" not in line["error.stack"]
    assert line["outcome"] == "error"


def test_secrets_in_extra_and_messages_never_reach_the_output():
    with capture_logs() as logs:
        logging.getLogger("example").info(
            "login password=hunter2 Authorization: Bearer s3cr3t",
            extra={"token": "t0k3n", "nested": {"api_key": "k3y", "ok": 1}, "headers": [{"Cookie": "c00kie"}]},
        )
    text = logs.text
    for secret in ("hunter2", "s3cr3t", "t0k3n", "k3y", "c00kie"):
        assert secret not in text
    (line,) = logs.lines()
    assert line["token"] == "[REDACTED]" and line["nested"] == {"api_key": "[REDACTED]", "ok": 1}


@given(message=st.text(max_size=300), extra_value=st.text(max_size=100))
def test_any_message_is_one_line_of_valid_json(message, extra_value):
    formatter = JsonFormatter()
    record = logging.LogRecord("x", logging.INFO, __file__, 1, message, None, None)
    record.__dict__["detail"] = extra_value
    text = formatter.format(record)
    assert "\n" not in text
    assert json.loads(text)["detail"] == extra_value


def test_non_json_extras_are_stringified_not_fatal():
    with capture_logs() as logs:
        logging.getLogger("example").info("odd", extra={"when": datetime(2026, 1, 1), "obj": object(), "b": b"\xff"})
    (line,) = logs.lines()
    assert line["when"].startswith("2026-01-01")


def test_format_timestamp_is_utc_iso8601_with_microseconds():
    assert format_timestamp(0.5) == "1970-01-01T00:00:00.500000Z"
    assert format_timestamp(1_700_000_000.25) == "2023-11-14T22:13:20.250000Z"


def test_logging_config_reads_the_level_from_the_environment(monkeypatch):
    monkeypatch.setenv("OBSERVABILITY_LOG_LEVEL", "warning")
    config = logging_config()
    assert config["root"]["level"] == "WARNING"
    assert logging_config("debug")["root"]["level"] == "DEBUG"
    with_file = logging_config(access_log="/tmp/access.log")
    assert with_file["loggers"]["observability_app.access"]["handlers"] == ["access_file"]


def test_runserver_prints_json_only_and_not_its_request_lines(capsys):
    """``make run`` serves with runserver: its per-request lines (the access line says them) are dropped, anything
    else it logs is a JSON line; nothing reaches logging's raw last-resort handler."""
    from django.conf import settings

    server = logging.getLogger("django.server")
    logging.config.dictConfig(logging_config())
    try:
        extra = {"request": object(), "server_time": "02/Dec/2026 06:30:00"}
        server.warning('"%s" %s %s', "PUT /api/v1/x HTTP/1.1", "400", "63", extra={**extra, "status_code": 400})
        server.info('"%s" %s %s', "GET /health/live HTTP/1.1", "200", "2", extra={**extra, "status_code": 200})
        server.error("You're accessing the development server over HTTPS", extra={**extra, "status_code": 500})
        out, err = capsys.readouterr()
    finally:
        logging.config.dictConfig(settings.LOGGING)
    assert err == ""
    (line,) = [json.loads(text) for text in out.splitlines()]
    assert (line["logger"], line["level"]) == ("django.server", "ERROR")
    assert "HTTPS" in line["message"] and "PUT /api/v1/x" not in out


@pytest.mark.django_db
def test_django_request_errors_are_json_with_context(client):
    with capture_logs() as logs:
        response = client.get("/api/v1/buckets/b/artifacts/n/1", HTTP_X_CORRELATION_ID="err-1")
    assert response.status_code == 404
    lines = logs.lines()
    assert lines and all(line["correlation_id"] == "err-1" for line in lines)
