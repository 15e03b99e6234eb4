"""The access line (observability_app.access_log): its two paths agree, formatter subclasses see it, batches."""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import time
import weakref

import pytest
from django.utils.functional import SimpleLazyObject
from hypothesis import given, settings
from hypothesis import strategies as st

from observability_app.access_log import (
    ACCESS_FIELDS,
    AccessLog,
    AccessLogHandler,
    access_dict,
    access_text,
    access_values,
    direct_writer,
)
from observability_app.context import ObservabilityContext
from observability_app.logging import ACCESS_LOGGER, FIELDS, ContextFilter, JsonFormatter

text = st.text(max_size=60)  # any code point: quotes, backslashes, newlines, control characters, surrogates
maybe_text = st.none() | text


def _fields(**overrides):
    fields = {
        "route": "api/v1/buckets/<name:bucket>",
        "method": "GET",
        "path": "/api/v1/buckets/b1",
        "status_code": 200,
        "duration_ms": 1.25,
        "bytes": 17,
        "outcome": "success",
        "user_agent": "curl/8",
    }
    fields.update(overrides)
    return fields


def _ctx(**overrides):
    values = {"request_id": "r" * 32, "correlation_id": "c-1", "source": "api", "method": "GET", "ip": "10.0.0.1"}
    values.update(overrides)
    return ObservabilityContext(**values)


def _values(level=logging.INFO, ctx=None, created=1764633600.5, **overrides):
    """The values of a line (what the middleware hands a batching handler)."""
    f = _fields(**overrides)
    return access_values(
        created, level, ctx or _ctx(), f["route"], f["method"], f["path"], f["status_code"], f["duration_ms"],
        f["bytes"], f["user_agent"],
    )  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(
    route=text,
    method=text,
    path=text,
    agent=maybe_text,
    status=st.integers(100, 599),
    duration=st.floats(0, 1e6, allow_nan=False),
    size=st.none() | st.integers(0, 2**40),
    correlation=text,
    ip=text,
    org=text,
)
def test_the_assembled_line_is_the_same_object_as_the_encoded_dict(
    route, method, path, agent, status, duration, size, correlation, ip, org
):
    ctx = _ctx(correlation_id=correlation, ip=ip, org_id=org)
    values = _values(
        ctx=ctx, route=route, method=method, path=path, user_agent=agent, status_code=status, duration_ms=duration,
        bytes=size,
    )  # fmt: skip
    from observability_app.access_log import _stdlib_batch

    line = access_text(values)  # orjson (the [fast] extra, in [dev]) or, for what it refuses, the stdlib encoder
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed == access_dict(values) == json.loads(_stdlib_batch([values]))
    assert list(parsed)[: len(FIELDS)] == list(FIELDS)


def test_values_that_are_not_strings_take_the_dict_path_and_stay_valid_json():
    ctx = _ctx(org_id=123)  # a project that binds a number
    parsed = json.loads(access_text(_values(ctx=ctx, route=["not", "a", "str"])))
    assert parsed["route"] == ["not", "a", "str"] and parsed["org_id"] == 123


def test_every_line_field_is_written_and_the_request_fields_are_the_lines():
    """The SPEC fields in order, org/project only when set, then the request's own (ACCESS_FIELDS are all there)."""
    parsed = json.loads(access_text(_values(ctx=_ctx(org_id="o", project_id="p"))))
    assert list(parsed) == [*FIELDS, "org_id", "project_id", "path", "bytes", "user_agent"]
    assert set(ACCESS_FIELDS) <= set(parsed)
    assert "org_id" not in json.loads(access_text(_values()))


def _record_line(level, ctx, request, response, *, formatter=None, extra=None, route="r/<x>", status=200):
    """The line the record path writes for this request (a plain StreamHandler: no direct path)."""
    import io

    stream = io.StringIO()
    logger = logging.getLogger("observability_app.tests.record_path")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter or JsonFormatter())
    handler.addFilter(ContextFilter())
    logger.handlers, logger.propagate = [handler], False
    try:
        AccessLog(logger).write(level, ctx, request, response, route, status, 0.00125, extra)
    finally:
        logger.handlers = []
    return json.loads(stream.getvalue())


def _request_response(path="/r/1"):
    from django.http import HttpResponse
    from django.test import RequestFactory

    request = RequestFactory().get(path, HTTP_USER_AGENT="curl/8")
    response = HttpResponse(b"x" * 17)
    return request, response


@pytest.mark.parametrize("status", [200, 404, 503])
def test_the_record_path_writes_the_same_line_as_the_direct_path(tmp_path, status):
    """A record through any handler and the direct path's batched text: the same object (timestamps aside)."""
    level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    ctx = _ctx(org_id="acme", user_agent="curl/8")
    request, response = _request_response()
    from_record = _record_line(level, ctx, request, response, status=status)
    logger = logging.getLogger("observability_app.tests.direct_path")
    handler = _handler(tmp_path, buffer_lines=10, flush_seconds=60)
    logger.handlers, logger.propagate = [handler], False
    try:
        assert direct_writer(logger, level) is handler
        AccessLog(logger).write(level, ctx, request, response, "r/<x>", status, 0.00125)
    finally:
        handler.close()
        logger.handlers = []
    [direct] = _lines(tmp_path)
    for line in (from_record, direct):
        assert line.pop("timestamp")
    assert from_record == direct
    assert direct["bytes"] == 17 and direct["duration_ms"] == 1.25 and direct["user_agent"] == "curl/8"


class TenantFormatter(JsonFormatter):
    """What a project writes: a field of its own in add_fields, a rename in process_log_record."""

    def add_fields(self, log_data, record, message_dict):
        super().add_fields(log_data, record, message_dict)
        log_data["tenant"] = "acme"

    def process_log_record(self, log_data):
        log_data["svc"] = log_data.pop("service")
        return super().process_log_record(log_data)


def test_a_formatter_subclass_sees_access_lines_and_every_other_line(tmp_path, client, db):
    """End to end through the middleware: a subclass's steps run on the access line and on any other logger's."""
    handler = _handler(tmp_path, buffer_lines=50, flush_seconds=60)
    handler.setFormatter(TenantFormatter())
    access, other = logging.getLogger(ACCESS_LOGGER), logging.getLogger("observability_app.tests.other")
    saved = access.handlers
    access.handlers, other.handlers, other.propagate = [handler], [handler], False
    try:
        assert direct_writer(access, logging.INFO) is None  # a subclass: records, never the direct path
        client.get("/api/v1/buckets/b1/artifacts/missing/1", headers={"X-Correlation-Id": "sub-1"})
        other.info("hello")
        handler.flush()
    finally:
        access.handlers, other.handlers = saved, []
        handler.close()
    request_line, hello = _lines(tmp_path)
    assert request_line["logger"] == ACCESS_LOGGER and request_line["correlation_id"] == "sub-1"
    for line in (request_line, hello):
        assert line["tenant"] == "acme" and "svc" in line and "service" not in line
    assert request_line["path"] == "/api/v1/buckets/b1/artifacts/missing/1" and request_line["status_code"] == 404


def test_a_record_a_filter_added_to_is_formatted_with_that_attribute():
    class Tenant(logging.Filter):
        def filter(self, record):
            record.tenant = "acme"
            return True

    import io

    stream = io.StringIO()
    logger = logging.getLogger("observability_app.tests.filtered")
    handler = _handler_stream(stream)
    handler.addFilter(Tenant())
    logger.handlers, logger.propagate = [handler], False
    try:
        assert direct_writer(logger, logging.INFO) is None
        request, response = _request_response()
        AccessLog(logger).write(logging.INFO, _ctx(), request, response, "r/<x>", 200, 0.001)
        handler.flush()
    finally:
        logger.handlers = []
        handler.close()
    parsed = json.loads(stream.getvalue())
    assert parsed["tenant"] == "acme" and parsed["correlation_id"] == "c-1" and parsed["path"] == "/r/1"


def test_access_records_carry_every_attribute_a_plain_formatter_reads():
    import io

    stream = io.StringIO()
    logger = logging.getLogger("observability_app.tests.plain")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s %(process)d %(thread)d %(threadName)s %(module)s %(funcName)s "
            "%(lineno)d %(msecs)d %(relativeCreated)d %(message)s %(status_code)s"
        )
    )
    logger.handlers, logger.propagate = [handler], False
    try:
        request, response = _request_response()
        AccessLog(logger).write(logging.WARNING, _ctx(), request, response, "x", 404, 0.001)
    finally:
        logger.handlers = []
    out = stream.getvalue().strip()
    assert " WARNING observability_app.access " in out and out.endswith("GET x 404 404")


def _named(route, level=logging.INFO, ctx=None, **overrides):
    """A line's values told apart by its route (its message is ``GET <route> <status>``)."""
    return _values(level=level, ctx=ctx, route=route, **overrides)


def _handler_stream(stream):
    from observability_app.access_log import BatchingStreamHandler

    handler = BatchingStreamHandler(stream, buffer_lines=10, flush_seconds=60)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    return handler


def _handler(tmp_path, **kwargs) -> AccessLogHandler:
    handler = AccessLogHandler(str(tmp_path / "access.log"), **kwargs)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    return handler


def _lines(tmp_path) -> list[dict]:
    path = tmp_path / "access.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_lines_wait_for_a_full_batch_and_keep_their_order(tmp_path):
    handler = _handler(tmp_path, buffer_lines=3, flush_seconds=60)
    try:
        handler.write_values(_named("first"), logging.INFO)
        handler.handle(logging.makeLogRecord({"name": "other", "msg": "second", "levelno": logging.INFO}))
        assert _lines(tmp_path) == []
        handler.write_values(_named("third"), logging.INFO)
        assert [line["route"] or line["message"] for line in _lines(tmp_path)] == ["first", "second", "third"]
    finally:
        handler.close()


@pytest.mark.parametrize(
    "extra", [{"debug_logging": "full", "timing": {"view_ms": 1.5}}, {"correlation_id_rejected_length": 4096}]
)
def test_fields_beyond_the_access_lines_own_are_written(extra):
    """Debug logging and a rejected id's length ride on the record: a plain handler's line must keep them."""
    request, response = _request_response()
    line = _record_line(logging.INFO, _ctx(), request, response, extra=extra, route="r")
    assert {key: line[key] for key in extra} == extra
    assert line["route"] == "r" and line["correlation_id"] == "c-1"


def test_a_waiting_line_holds_its_text_not_the_request(tmp_path):
    """A batch must not keep requests alive: ``ctx.user`` is the lazy ``request.user``, whose closure is the request.

    Held until the batch is written, 256 request graphs would reach the collector's oldest generation and cost
    a full collection when let go (what once doubled the middleware's cost).
    """

    class Request:
        pass

    def lazy_user(request):
        return SimpleLazyObject(lambda: request)

    request = Request()
    ctx = _ctx()
    ctx.user = lazy_user(request)
    request.observability_context = ctx  # the cycle the middleware makes
    gone = weakref.ref(request)
    handler = _handler(tmp_path, buffer_lines=100, flush_seconds=60)
    try:
        handler.write_values(_named("held", ctx=ctx), logging.INFO)
        ctx.correlation_id = "changed-after-the-request"
        del request, ctx
        gc.collect()
        assert gone() is None
    finally:
        handler.close()
    [line] = _lines(tmp_path)
    assert (line["route"], line["correlation_id"]) == ("held", "c-1")


def test_warnings_and_errors_are_written_at_once_with_what_waited(tmp_path):
    handler = _handler(tmp_path, buffer_lines=100, flush_seconds=60)
    try:
        handler.write_values(_named("a"), logging.INFO)
        handler.write_values(_named("b", logging.WARNING, status_code=404), logging.WARNING)
        lines = _lines(tmp_path)
        assert [(line["message"], line["level"]) for line in lines] == [("GET a 200", "INFO"), ("GET b 404", "WARNING")]
    finally:
        handler.close()


def test_an_idle_batch_is_written_by_the_timer(tmp_path):
    handler = _handler(tmp_path, buffer_lines=100, flush_seconds=0.05)
    try:
        handler.write_values(_named("lonely"), logging.INFO)
        deadline = time.monotonic() + 10
        while not _lines(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [line["route"] for line in _lines(tmp_path)] == ["lonely"]
    finally:
        handler.close()


def test_close_and_logging_shutdown_write_what_is_pending(tmp_path):
    handler = _handler(tmp_path, buffer_lines=100, flush_seconds=60)
    handler.write_values(_named("at exit"), logging.INFO)
    logging.shutdown([lambda: handler])  # what atexit does for every handler
    assert [line["route"] for line in _lines(tmp_path)] == ["at exit"]


def test_one_line_batches_write_every_line_at_once(tmp_path):
    handler = _handler(tmp_path, buffer_lines=1)
    try:
        handler.write_values(_named("x"), logging.INFO)
        assert [line["message"] for line in _lines(tmp_path)] == ["GET x 200"]
    finally:
        handler.close()


@pytest.mark.parametrize(
    "kwargs", [{"buffer_lines": 0}, {"buffer_lines": -5}, {"flush_seconds": 0}, {"flush_seconds": -1}]
)
def test_bad_batch_settings_are_refused_with_the_value_named(tmp_path, kwargs):
    with pytest.raises(ValueError, match=str(next(iter(kwargs.values())))):
        AccessLogHandler(str(tmp_path / "x.log"), **kwargs)


def test_a_forked_child_writes_its_own_lines_not_the_parents(tmp_path):
    handler = _handler(tmp_path, buffer_lines=100, flush_seconds=60)
    try:
        handler.write_values(_named("parent"), logging.INFO)
        pid = os.fork()
        if pid == 0:  # the child: what a gunicorn worker is
            try:
                handler.write_values(_named("child"), logging.INFO)
                handler.flush()
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        handler.flush()
        assert sorted(line["route"] for line in _lines(tmp_path)) == ["child", "parent"]
    finally:
        handler.close()


def test_the_direct_path_is_taken_only_when_nothing_else_would_see_the_record(tmp_path):
    logger = logging.getLogger("observability_app.tests.direct")
    logger.propagate = False
    handler = _handler(tmp_path)
    logger.handlers = [handler]
    try:
        assert direct_writer(logger, logging.INFO) is handler
        logger.propagate = True
        assert direct_writer(logger, logging.INFO) is None
        logger.propagate = False
        handler.addFilter(lambda record: True)
        assert direct_writer(logger, logging.INFO) is None
        handler.filters = [f for f in handler.filters if isinstance(f, ContextFilter)]
        handler.setLevel(logging.ERROR)
        assert direct_writer(logger, logging.INFO) is None and direct_writer(logger, logging.ERROR) is handler
        handler.setFormatter(logging.Formatter())
        assert direct_writer(logger, logging.ERROR) is None
        logger.handlers = [_handler(tmp_path, buffer_lines=1)]
        assert direct_writer(logger, logging.ERROR) is None
    finally:
        for each in [*logger.handlers, handler]:
            each.close()
        logger.handlers = []


@pytest.mark.django_db
def test_requests_through_a_batching_access_file(client, tmp_path):
    """End to end: the middleware hands its lines to an AccessLogHandler; a filter on it switches to records."""
    logger = logging.getLogger(ACCESS_LOGGER)
    handler = _handler(tmp_path, buffer_lines=50, flush_seconds=60)
    saved = logger.handlers
    logger.handlers = [handler]
    try:
        client.get("/api/v1/buckets/b1/artifacts/missing/1", headers={"X-Correlation-Id": "batch-1"})
        client.get("/health/live")  # excluded: no line
        handler.flush()

        class Tenant(logging.Filter):
            def filter(self, record):
                record.tenant = "acme"
                return True

        handler.addFilter(Tenant())
        client.get("/api/v1/buckets/b2/artifacts/missing/1", headers={"X-Correlation-Id": "batch-2"})
        handler.flush()
    finally:
        logger.handlers = saved
        handler.close()
    first, second = _lines(tmp_path)
    for line, cid in ((first, "batch-1"), (second, "batch-2")):
        assert line["correlation_id"] == cid and line["status_code"] == 404 and line["level"] == "WARNING"
        assert line["route"] == "api/v1/buckets/<name:bucket>/artifacts/<name:name>/<name:version>"
        assert set(FIELDS) | set(ACCESS_FIELDS) - {"bytes"} <= set(line)
    assert "tenant" not in first and second["tenant"] == "acme"


def test_a_batched_line_never_takes_the_trace_of_the_request_that_writes_the_batch(tmp_path, monkeypatch):
    """The batch is written in whichever thread fills it: a line without trace ids must not borrow that span's."""
    import observability_app.logging as json_logging

    monkeypatch.setattr(json_logging, "_tracing_on", lambda: True)
    monkeypatch.setattr(json_logging, "_trace_ids", lambda: ("f" * 32, "e" * 16))  # another request's live span
    handler = _handler(tmp_path, buffer_lines=2, flush_seconds=60)
    try:
        handler.write_values(_named("untraced"), logging.INFO)
        handler.write_values(_named("traced", ctx=_ctx(trace_id="a" * 32, span_id="b" * 16)), logging.INFO)
    finally:
        handler.close()
    untraced, traced = _lines(tmp_path)
    assert (untraced["trace_id"], untraced["span_id"]) == (None, None)
    assert (traced["trace_id"], traced["span_id"]) == ("a" * 32, "b" * 16)


# -- stdout batched like the file --------------------------------------------------------------------------------
def test_the_stdout_handler_holds_successes_and_writes_errors_at_once_with_what_waited():
    import io

    stream = io.StringIO()
    handler = _handler_stream(stream)
    try:
        handler.write_values(_named("ok"), logging.INFO)
        assert stream.getvalue() == ""
        handler.handle(logging.makeLogRecord({"name": "app", "msg": "boom", "levelno": logging.ERROR}))
        lines = [json.loads(line) for line in stream.getvalue().splitlines()]
        assert [line["route"] or line["message"] for line in lines] == ["ok", "boom"]
    finally:
        handler.close()


_CHILD = """
import logging.config, os, signal, sys, time
from observability_app.logging import logging_config
logging.config.dictConfig(logging_config())
logging.getLogger("child").info("pending line")
mode = sys.argv[1]
if mode == "fork":
    pid = os.fork()
    if pid == 0:
        logging.getLogger("child").info("from the child")
        logging.shutdown()
        os._exit(0)
    os.waitpid(pid, 0)
elif mode == "sigterm":
    sys.stderr.write("ready\\n"); sys.stderr.flush()
    time.sleep(60)
"""


def _child(mode: str):
    import subprocess
    import sys

    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "", "OBSERVABILITY_LOG_LEVEL": "INFO"}
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )


def _messages(stdout: str) -> list[str]:
    return [json.loads(line)["message"] for line in stdout.splitlines()]


def test_stdout_lines_are_written_at_exit():
    child = _child("exit")
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    assert _messages(out) == ["pending line"]


def test_stdout_lines_are_written_on_sigterm_and_the_process_still_ends_by_it():
    import signal

    child = _child("sigterm")
    assert child.stderr.readline() == "ready\n"
    child.send_signal(signal.SIGTERM)
    out, err = child.communicate(timeout=60)
    assert child.returncode == -signal.SIGTERM, err
    assert _messages(out) == ["pending line"]


def test_a_fork_writes_the_parents_batch_once_before_the_child_exists():
    child = _child("fork")
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    assert _messages(out) == ["pending line", "from the child"]


# -- a target that cannot take lines (issue 13, point 4) ---------------------------------------------------------
def _dropped(handler: str) -> float:
    from observability_app.metrics.registry import REGISTRY

    return REGISTRY.get_sample_value("observability_log_lines_dropped_total", {"handler": handler}) or 0.0


@pytest.mark.django_db
def test_a_full_disk_drops_and_counts_lines_warns_once_and_every_request_succeeds(client, capfd):
    """/dev/full answers every write with ENOSPC: requests go on, the lines are counted, one warning in all."""
    from observability_app.access_log import BatchingStreamHandler

    access, root = logging.getLogger(ACCESS_LOGGER), logging.getLogger()
    file_handler = AccessLogHandler("/dev/full", buffer_lines=2, flush_seconds=60)
    file_handler.setFormatter(JsonFormatter())
    full = open("/dev/full", "w", encoding="utf-8")  # noqa: SIM115  (closed below)
    stdout_like = BatchingStreamHandler(full, buffer_lines=2, flush_seconds=60)
    stdout_like.setFormatter(JsonFormatter())
    saved = access.handlers, root.handlers
    before = _dropped("file"), _dropped("stream")
    capfd.readouterr()
    access.handlers, root.handlers = [file_handler], [stdout_like]
    try:
        statuses = [client.get(f"/api/v1/buckets/b{i}/artifacts/missing/1").status_code for i in range(6)]
        for i in range(4):
            root.warning("other line %s", i)
    finally:
        access.handlers, root.handlers = saved
        file_handler.close()
        stdout_like.close()
        with contextlib.suppress(OSError):  # its buffer still holds what /dev/full refused
            full.close()
    assert statuses == [404] * 6
    assert _dropped("file") - before[0] == 6 and file_handler.dropped == 6
    assert _dropped("stream") - before[1] >= 4 and stdout_like.dropped >= 4
    warnings = [line for line in capfd.readouterr().err.splitlines() if "does not take lines" in line]
    assert len(warnings) == 2, warnings  # one per handler, not one per batch
    assert "'/dev/full'" in warnings[0] and "No space left on device" in warnings[0]


def test_an_unwritable_file_does_not_stop_start_up_and_its_lines_are_dropped_and_counted(tmp_path):
    """A real unwritable file: mode 0444, opened by a process that is not root (a forked child drops to nobody)."""
    import tempfile

    directory = tempfile.mkdtemp(prefix="obs-unwritable-")
    os.chmod(directory, 0o755)
    path = os.path.join(directory, "access.log")
    with open(path, "w"):
        pass
    os.chmod(path, 0o444)
    read, write = os.pipe()
    err_read, err_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipes
        code = 1
        try:
            os.dup2(err_write, 2)
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            import sys

            sys.stderr = os.fdopen(2, "w", closefd=False)
            handler = AccessLogHandler(path, buffer_lines=2, flush_seconds=60)
            handler.setFormatter(JsonFormatter())
            for index in range(5):
                handler.write_values(_named(f"r{index}"), logging.INFO)
            handler.close()
            os.write(write, str(handler.dropped).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    os.close(err_write)
    _, status = os.waitpid(pid, 0)
    dropped = os.read(read, 100).decode()
    err = os.read(err_read, 10000).decode()
    os.close(read)
    os.close(err_read)
    assert os.waitstatus_to_exitcode(status) == 0, err
    assert dropped == "5"  # the last, lone line is written (dropped) at close
    warnings = [line for line in err.splitlines() if "does not take lines" in line]
    assert len(warnings) == 1 and "PermissionError" in warnings[0] and path in warnings[0]
    assert os.path.getsize(path) == 0


# -- upstream internals that survive on the hot path: each has a guard that fails when upstream changes shape ---
def test_guard_prometheus_client_value_shape_that_observe_request_writes():
    """metrics/http.py adds to ``MutexValue._value`` under one lock (0.3 us a request against 0.9 us through
    ``inc()``/``observe()``, measured in benchmarks.middleware): the counts it writes must be the ones exposed."""
    from prometheus_client import Counter, Histogram
    from prometheus_client.values import MutexValue

    from observability_app.metrics import families
    from observability_app.metrics.http import clear_cache, observe_request
    from observability_app.metrics.registry import REGISTRY

    child = families.HTTP_REQUESTS.metric.labels("GET", "guard/<x>", "200")
    assert type(child._value) is MutexValue and isinstance(child._value._value, float)
    hist = families.HTTP_DURATION.metric.labels("GET", "guard/<x>")
    assert {"_sum", "_buckets", "_upper_bounds"} <= set(vars(hist))
    assert isinstance(families.HTTP_REQUESTS.metric, Counter) and isinstance(families.HTTP_DURATION.metric, Histogram)
    clear_cache()
    before = REGISTRY.get_sample_value("http_requests_total", {"method": "GET", "route": "guard/<x>", "status": "200"})
    observe_request("GET", "guard/<x>", 200, 0.003)
    after = REGISTRY.get_sample_value("http_requests_total", {"method": "GET", "route": "guard/<x>", "status": "200"})
    assert after - (before or 0.0) == 1.0
    bucket = REGISTRY.get_sample_value(
        "http_request_duration_seconds_bucket", {"method": "GET", "route": "guard/<x>", "le": "0.005"}
    )
    assert bucket >= 1.0


def test_guard_django_skips_logging_a_response_marked_as_logged():
    """health/views.py sets ``response._has_been_logged`` so that a failing probe's 503 is not logged as an error
    by django.request on every probe; Django's ``log_response`` must still honour it."""
    from django.http import HttpResponse
    from django.test import RequestFactory
    from django.utils.log import log_response

    from .logcapture import capture_logs

    response = HttpResponse(status=503)
    response._has_been_logged = True
    with capture_logs() as logs:
        log_response("probe", request=RequestFactory().get("/health/ready"), response=response)
        unmarked = HttpResponse(status=503)
        log_response("probe", request=RequestFactory().get("/health/ready"), response=unmarked)
    assert [line["message"] for line in logs.lines()] == ["probe"]
