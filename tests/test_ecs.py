"""ECS output (``LOG_FORMAT = "ecs"``): every line of a request, an error and a job is valid ECS for its fields.

"Valid" is checked against the ECS 8.11 field definitions shipped in tests/fixtures/ecs_fields.json (name, type,
allowed values): every field a line carries is an ECS field of the right type, a ``labels`` keyword, or under
the custom ``observability`` namespace that no ECS field set uses. The line's shape is held to what the
``ecs-logging`` library itself writes for the same record (first keys, ``log.level`` casing, ``ecs.version``).
"""

from __future__ import annotations

import io
import ipaddress
import json
import logging
from datetime import datetime
from pathlib import Path
from typing import Any

import ecs_logging
import pytest
from django.test import Client, override_settings

from observability_app import checks, jobs
from observability_app.access_log import AccessLogHandler
from observability_app.conf import build_settings
from observability_app.logging import ContextFilter, JsonFormatter

from .logcapture import capture_logs
from .test_access_log import _ctx, _values
from .test_example_api import URL, put

SCHEMA = json.loads((Path(__file__).parent / "fixtures" / "ecs_fields.json").read_text())
FIELDS: dict[str, dict[str, Any]] = SCHEMA["fields"]
ECS = {"LOG_FORMAT": "ecs"}
_TEXT_TYPES = {"keyword", "wildcard", "match_only_text", "text", "constant_keyword"}


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and name != "labels":
            flat.update(flatten(value, f"{name}."))
        elif name == "labels":
            flat.update({f"labels.{label}": item for label, item in value.items()})
        else:
            flat[name] = value
    return flat


def assert_valid_ecs(line: dict[str, Any]) -> dict[str, Any]:
    """The line's fields, flattened, once each is checked against the ECS definitions; fails naming the field."""
    assert list(line)[:4] == ["@timestamp", "log.level", "message", "ecs.version"], list(line)
    assert line["ecs.version"] == SCHEMA["ecs_version"]
    assert SCHEMA["fields"]["labels"]["type"] == "object" and "observability" not in SCHEMA["field_sets"]
    flat = flatten(line)
    assert len(flat) == len({key.lower() for key in flat}), "a field is written twice (dotted and nested)"
    for name, value in flat.items():
        assert value is not None, f"{name} is null: ECS lines leave unknown fields out"
        if name.startswith("labels."):
            assert isinstance(value, str) and "." not in name[len("labels.") :], (name, value)
            continue
        if name.startswith("observability."):
            continue
        assert name in FIELDS, f"{name} is not an ECS field (nor a label, nor under observability.)"
        kind = FIELDS[name]["type"]
        if kind in _TEXT_TYPES:
            assert isinstance(value, str), (name, value)
        elif kind == "long":
            assert isinstance(value, int) and not isinstance(value, bool), (name, value)
        elif kind == "date":
            assert isinstance(value, str) and value.endswith("Z"), (name, value)
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        elif kind == "ip":
            ipaddress.ip_address(value)
        else:
            pytest.fail(f"{name}: type {kind} not checked here")
        if "allowed_values" in FIELDS[name]:
            assert value in FIELDS[name]["allowed_values"], (name, value)
    return flat


def ecs_logging_line(record: logging.LogRecord) -> dict[str, Any]:
    return json.loads(ecs_logging.StdlibFormatter().format(record))


@pytest.fixture
def ecs():
    with override_settings(OBSERVABILITY=ECS):
        yield


@pytest.mark.django_db
def test_every_line_of_a_request_is_valid_ecs(client, ecs):
    put(client)
    with capture_logs() as logs:
        response = client.get(URL, HTTP_X_CORRELATION_ID="ecs-1", HTTP_USER_AGENT="curl/8")
    assert response.status_code == 200
    lines = logs.lines()
    assert lines
    flats = [assert_valid_ecs(line) for line in lines]
    (access,) = [flat for flat in flats if flat["log.logger"] == "observability_app.access"]
    assert access["http.request.method"] == "GET" and access["http.response.status_code"] == 200
    assert access["url.path"] == URL and access["http.response.body.bytes"] == len(b"weights")
    assert access["labels.correlation_id"] == "ecs-1" == response["X-Correlation-Id"]
    assert access["http.request.id"] == response["X-Request-Id"]
    assert access["event.outcome"] == "success" and access["log.level"] == "info"
    assert access["user_agent.original"] == "curl/8" and access["service.name"]
    assert isinstance(access["event.duration"], int) and access["event.duration"] > 0  # nanoseconds
    assert access["client.ip"] == "127.0.0.1" and access["labels.route"].startswith("api/v1/buckets/")


@pytest.mark.django_db
def test_an_error_is_valid_ecs_with_its_stack(client, ecs, monkeypatch):
    from example_project.bucket import services

    def boom(*args, **kwargs):
        raise RuntimeError("storage exploded password=hunter2")

    monkeypatch.setattr(services, "read_artifact", boom)
    put(client)
    with capture_logs() as logs:
        response = Client(raise_request_exception=False).get(URL, HTTP_X_CORRELATION_ID="ecs-err")
    assert response.status_code == 500
    flats = [assert_valid_ecs(line) for line in logs.lines()]
    errors = [flat for flat in flats if flat.get("error.type") == "RuntimeError"]
    assert errors, flats
    error = errors[0]
    assert error["log.level"] == "error" and error["labels.correlation_id"] == "ecs-err"
    assert "storage exploded" in error["error.message"] and "storage exploded" in error["error.stack_trace"]
    assert "hunter2" not in json.dumps(flats)  # the redaction applies in ECS mode too
    (access,) = [flat for flat in flats if flat["log.logger"] == "observability_app.access"]
    assert access["http.response.status_code"] == 500 and access["event.outcome"] == "failure"


def test_job_lines_are_valid_ecs(ecs):
    calls = []

    def flaky(payload):
        calls.append(1)
        if len(calls) < 2:
            raise TimeoutError("busy")
        return "done"

    def broken(payload):
        raise KeyError("missing")

    with capture_logs() as logs:
        assert jobs.run("flaky", flaky, {}, retry_on=(TimeoutError,), max_attempts=3) == "done"
        with pytest.raises(KeyError):
            jobs.run("broken", broken, {})
    flats = [assert_valid_ecs(line) for line in logs.lines()]
    job_lines = [flat for flat in flats if flat["log.logger"] == "observability_app.jobs"]
    assert [(flat["labels.job"], flat["event.outcome"]) for flat in job_lines] == [
        ("flaky", "unknown"),
        ("flaky", "success"),
        ("broken", "failure"),
    ]
    assert [flat["labels.outcome"] for flat in job_lines] == ["retry", "success", "error"]
    assert [flat["observability.job_attempt"] for flat in job_lines] == [1, 2, 1]
    assert all(flat["labels.source"] == "job" and isinstance(flat["event.duration"], int) for flat in job_lines)
    assert job_lines[-1]["error.type"] == "KeyError" and job_lines[-1]["log.level"] == "error"


def test_the_batched_access_file_writes_ecs_too(tmp_path, ecs):
    handler = AccessLogHandler(str(tmp_path / "access.log"), buffer_lines=10, flush_seconds=60)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    try:
        handler.write_values(_values(logging.INFO), logging.INFO)
        handler.write_values(_values(logging.WARNING, ctx=_ctx(org_id="acme"), status_code=404), logging.WARNING)
        handler.flush()
    finally:
        handler.close()
    lines = [json.loads(line) for line in (tmp_path / "access.log").read_text().splitlines()]
    flats = [assert_valid_ecs(line) for line in lines]
    assert [flat["http.response.status_code"] for flat in flats] == [200, 404]
    assert flats[0]["event.duration"] == 1_250_000 and flats[1]["labels.org_id"] == "acme"


def test_the_shape_is_what_ecs_logging_writes_for_the_same_record(ecs):
    record = logging.LogRecord("app.module", logging.WARNING, __file__, 1, "disk %s", ("low",), None)
    ours = json.loads(_format(record))
    theirs = ecs_logging_line(record)
    assert list(ours)[:3] == list(theirs)[:3] == ["@timestamp", "log.level", "message"]
    assert ours["log.level"] == theirs["log.level"] == "warning" and ours["message"] == theirs["message"]
    assert ours["log"]["logger"] == theirs["log"]["logger"] == "app.module"
    assert "ecs.version" in ours and "ecs.version" in theirs  # dotted at the top, as ecs-logging writes it
    assert_valid_ecs(ours)
    # The same instant: ecs-logging writes milliseconds, we write microseconds (ECS dates take either).
    assert ours["@timestamp"][:23] == theirs["@timestamp"][:23] and ours["@timestamp"].endswith("Z")


def _format(record: logging.LogRecord) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    handler.handle(record)
    return stream.getvalue()


def test_the_default_format_is_unchanged_and_ecs_comes_from_the_environment_too():
    record = logging.LogRecord("app", logging.INFO, __file__, 1, "hello", (), None)
    assert json.loads(_format(record))["level"] == "INFO"  # default: docs/logging.md's names
    assert build_settings({}, environ={"OBSERVABILITY_LOG_FORMAT": "ecs"}).LOG_FORMAT == "ecs"
    assert build_settings({}, environ={}).LOG_FORMAT == "default"


@pytest.mark.parametrize("bad", ["json", "ECS ", 1, None])
def test_an_unknown_log_format_is_reported(bad):
    with override_settings(OBSERVABILITY={"LOG_FORMAT": bad}):
        assert "observability_app.E012" in [error.id for error in checks.check_settings()]
