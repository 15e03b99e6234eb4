"""Tracing: switches, W3C context continued, sampling, exclusions, ids in audit events, OTLP export from gunicorn
workers forked from a master that loaded the app (fork safety)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.checks import run_checks
from django.test import Client
from hypothesis import assume, given
from hypothesis import strategies as st
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from observability_app import tracing
from observability_app.audit import recording
from observability_app.audit.models import AuditEvent
from observability_app.conf import build_settings
from tests import servers
from tests.servers import GunicornServer, http

server_database = servers.server_database
_migrated_sqlite = servers._migrated_sqlite

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


def _digest(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


@pytest.fixture
def traced(settings):
    """Tracing on in this process, spans kept in memory; undone afterwards."""

    def install(**options):
        settings.OBSERVABILITY = {
            **settings.OBSERVABILITY,
            "TRACING_ENABLED": True,
            "TRACE_EXPORTER": "none",
            **options,
        }
        provider = tracing.install(tracing.resolve())
        exporter = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        return exporter

    yield install
    tracing.shutdown()


def _server_spans(exporter: InMemorySpanExporter) -> list:
    return [span for span in exporter.get_finished_spans() if span.kind.name == "SERVER"]


# -- switches -------------------------------------------------------------------------------------------------------


def test_off_by_default_and_the_ways_to_turn_it_on():
    assert tracing.resolve(build_settings({}, {}), {}).enabled is False
    assert tracing.resolve(build_settings({"TRACING_ENABLED": True}, {}), {}).enabled is True
    env = {"OBSERVABILITY_TRACING_ENABLED": "1"}
    assert tracing.resolve(build_settings({}, env), env).enabled is True
    env = {"OTEL_TRACES_EXPORTER": "console"}
    config = tracing.resolve(build_settings({}, env), env)
    assert config.enabled is True and config.exporter == "console"
    env = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}
    assert tracing.resolve(build_settings({}, env), env).enabled is False
    env = {"OTEL_TRACES_EXPORTER": "otlp", "OBSERVABILITY_TRACING_ENABLED": "0"}
    assert tracing.resolve(build_settings({}, env), env).enabled is False
    env = {"OTEL_TRACES_EXPORTER": "none"}
    assert tracing.resolve(build_settings({}, env), env).enabled is False
    env = {"OTEL_TRACES_SAMPLER_ARG": "0.25"}
    assert tracing.resolve(build_settings({"TRACING_ENABLED": True}, env), env).sample_rate == 0.25
    env = {"OBSERVABILITY_TRACE_SAMPLE_RATE": "0.5", "OTEL_TRACES_SAMPLER_ARG": "0.25"}
    assert tracing.resolve(build_settings({}, env), env).sample_rate == 0.5
    assert tracing.resolve(build_settings({"TRACE_SAMPLE_RATE": 7}, {}), {}).sample_rate == 1.0


def test_setup_leaves_everything_alone_when_off(settings):
    settings.OBSERVABILITY = {}
    assert tracing.setup() is False
    assert recording.trace_ids_provider is None
    assert not any(entry.startswith("opentelemetry") for entry in settings.MIDDLEWARE)


@given(path=st.text(min_size=1, max_size=40).map(lambda text: "/" + text))
def test_excluded_prefixes_are_anchored_after_the_host(path):
    patterns = [re.compile(pattern) for pattern in tracing.excluded_urls_pattern((path,)).split(",")]
    assert any(pattern.search("http://testserver" + path + "tail") for pattern in patterns)
    elsewhere = "/q" + path  # the prefix inside the path, not at its start
    assume(not elsewhere.startswith(path))
    assert not any(pattern.search("http://testserver" + elsewhere) for pattern in patterns)


# -- in-process, spans in memory -------------------------------------------------------------------------------------


def test_a_traceparent_is_continued_and_its_ids_reach_the_audit_event(traced, db):
    exporter = traced()
    body = b"traced weights"
    response = Client().put(
        "/api/v1/buckets/tr/artifacts/model/1",
        data=body,
        content_type="application/octet-stream",
        HTTP_X_CONTENT_DIGEST=_digest(body),
        HTTP_TRACEPARENT=f"00-{TRACE_ID}-{PARENT_ID}-01",
        HTTP_X_CORRELATION_ID="corr-123",
    )
    assert response.status_code == 201
    (span,) = _server_spans(exporter)
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert format(span.parent.span_id, "016x") == PARENT_ID
    assert span.attributes["correlation_id"] == "corr-123"
    assert span.attributes["request_id"] == response["X-Request-Id"]
    assert span.attributes["http.route"].startswith("api/v1/buckets/")
    event = AuditEvent.objects.get(event_type="ARTIFACT_CREATED", correlation_id="corr-123")
    assert event.trace_id == TRACE_ID
    assert event.span_id == format(span.context.span_id, "016x")


def test_a_request_without_context_starts_a_trace(traced, db):
    exporter = traced()
    assert Client().get("/api/v1/buckets/tr/artifacts/model/404").status_code == 404
    (span,) = _server_spans(exporter)
    assert span.parent is None
    assert span.resource.attributes["service.name"] == "artifact-bucket"
    assert span.resource.attributes["deployment.environment"] == "development"


def test_excluded_paths_make_no_spans(traced, db):
    exporter = traced()
    for path in ("/health/live", "/health/ready", "/metrics"):
        Client().get(path, HTTP_TRACEPARENT=f"00-{TRACE_ID}-{PARENT_ID}-01")
    assert _server_spans(exporter) == []
    Client().get("/api/v1/health")  # the alias is not under an excluded prefix
    assert len(_server_spans(exporter)) == 1


def test_parent_based_ratio_sampling(traced, db):
    exporter = traced(TRACE_SAMPLE_RATE=0.0)
    client = Client()
    for _ in range(5):
        client.get("/api/v1/buckets/s/artifacts/m/1")
    assert _server_spans(exporter) == []  # new traces at ratio 0: none recorded
    client.get("/api/v1/buckets/s/artifacts/m/1", HTTP_TRACEPARENT=f"00-{TRACE_ID}-{PARENT_ID}-01")
    assert len(_server_spans(exporter)) == 1  # a sampled caller is followed
    client.get("/api/v1/buckets/s/artifacts/m/1", HTTP_TRACEPARENT=f"00-{TRACE_ID}-{PARENT_ID}-00")
    assert len(_server_spans(exporter)) == 1  # and so is an unsampled one


@given(header=st.text(max_size=120))
def test_malformed_traceparent_headers_start_a_fresh_trace(header):
    from django.test import override_settings

    if re.fullmatch(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}", header.strip()):
        return
    with override_settings(OBSERVABILITY={"TRACING_ENABLED": True, "TRACE_EXPORTER": "none"}):
        provider = tracing.install(tracing.resolve())
        exporter = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        try:
            response = Client().get("/no/such/page", HTTP_TRACEPARENT=header)
        finally:
            tracing.shutdown()
    assert response.status_code == 404
    (span,) = _server_spans(exporter)
    assert span.parent is None or span.parent.is_valid


def test_console_export(settings, capsys, db):
    settings.OBSERVABILITY = {**settings.OBSERVABILITY, "TRACING_ENABLED": True, "TRACE_EXPORTER": "console"}
    try:
        assert tracing.setup() is True
        Client().get("/api/v1/buckets/c/artifacts/m/1", HTTP_TRACEPARENT=f"00-{TRACE_ID}-{PARENT_ID}-01")
    finally:
        tracing.shutdown()
    spans = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"name"')]
    assert spans and all(span["context"]["trace_id"] == f"0x{TRACE_ID}" for span in spans)  # one per line
    assert "SpanKind.SERVER" in {span["kind"] for span in spans}


def test_the_otel_middleware_on_top_is_not_reported(traced):
    traced()
    from django.conf import settings as django_settings

    assert django_settings.MIDDLEWARE[0].startswith("opentelemetry.instrumentation.django")
    assert "observability_app.W002" not in {message.id for message in run_checks()}


def test_current_trace_ids_outside_a_span():
    assert tracing.current_trace_ids() == ("", "")


# -- outbound HTTP: the caller's own traceparent ------------------------------------------------------------------


class _HeaderEcho(BaseHTTPRequestHandler):
    """Records the ``traceparent`` each request arrives with (what the service called would continue)."""

    received: list[str | None] = []

    def do_GET(self) -> None:
        type(self).received.append(self.headers.get("traceparent"))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def _send_with(client: str, url: str, headers: dict[str, str]) -> None:
    import asyncio
    import urllib.request

    import httpx
    import requests

    if client == "urllib":
        urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10).close()
    elif client == "requests":
        requests.get(url, headers=headers, timeout=10).close()
    elif client == "httpx":
        with httpx.Client() as session:
            session.get(url, headers=headers, timeout=10)
    else:

        async def fetch() -> None:
            async with httpx.AsyncClient() as session:
                await session.get(url, headers=headers, timeout=10)

        asyncio.run(fetch())


CLIENTS = ("urllib", "requests", "httpx", "httpx-async")


@pytest.fixture
def echo():
    _HeaderEcho.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HeaderEcho)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/called"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("client", CLIENTS)
def test_an_outgoing_request_carrying_its_own_traceparent_continues_that_trace(traced, echo, client):
    """With no span current, the client span continues the request's own ``traceparent``: the instrumentation used
    to start a new trace and overwrite the header, so the service called (and Sentry, its logs, its audit events)
    saw a trace nobody had asked for."""
    exporter = traced()
    _send_with(client, echo, {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01", "tracestate": "vendor=1"})
    (received,) = _HeaderEcho.received
    (span,) = [span for span in exporter.get_finished_spans() if span.kind.name == "CLIENT"]
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert format(span.parent.span_id, "016x") == PARENT_ID and span.parent.is_remote
    assert received == f"00-{TRACE_ID}-{format(span.context.span_id, '016x')}-01"
    assert span.context.trace_state.get("vendor") == "1"


@pytest.mark.parametrize("client", CLIENTS)
def test_a_current_span_still_wins_and_a_bare_request_starts_a_trace(traced, echo, client):
    exporter = traced()
    tracer = tracing.provider().get_tracer("tests")
    with tracer.start_as_current_span("the caller's work") as current:
        _send_with(client, echo, {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"})
    _send_with(client, echo, {})
    current_trace = format(current.get_span_context().trace_id, "032x")
    first, bare = _HeaderEcho.received
    assert first.split("-")[1] == current_trace != TRACE_ID
    assert bare is not None and bare.split("-")[1] not in (current_trace, TRACE_ID)
    clients = [span for span in exporter.get_finished_spans() if span.kind.name == "CLIENT"]
    assert clients[0].parent.span_id == current.get_span_context().span_id and clients[1].parent is None


def test_shutdown_gives_the_clients_their_own_send_methods_back(settings):
    import urllib.request

    import httpx
    import requests

    owners = ((urllib.request.OpenerDirector, "open"), (requests.Session, "send"), (httpx.Client, "send"))
    owners += ((httpx.AsyncClient, "send"),)
    before = [owner.__dict__[method] for owner, method in owners]
    settings.OBSERVABILITY = {**settings.OBSERVABILITY, "TRACING_ENABLED": True, "TRACE_EXPORTER": "none"}
    for _ in range(2):  # installed twice: wrapped once
        tracing.install(tracing.resolve())
    wrapped = [owner.__dict__[method] for owner, method in owners]
    assert all(getattr(method, "_observability_caller_context", False) for method in wrapped)
    assert "opentelemetry_instrumentation_urllib_applied" not in vars(wrapped[0])  # theirs stays theirs
    tracing.shutdown()
    assert [owner.__dict__[method] for owner, method in owners] == before


# -- gunicorn, preloaded app, OTLP/HTTP export ------------------------------------------------------------------------


class _Collector(BaseHTTPRequestHandler):
    received: list[bytes] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/v1/traces" and self.headers.get("Content-Type") == "application/x-protobuf":
            type(self).received.append(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


SERVER_KIND, PRODUCER_KIND, CONSUMER_KIND, CLIENT_KIND = 2, 4, 5, 3  # OTLP's Span.SpanKind values


def _exported_spans() -> list[dict]:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    spans = []
    for body in list(_Collector.received):
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        for resource_spans in request.resource_spans:
            resource = {item.key: item.value.string_value for item in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    spans.append(
                        {
                            "name": span.name,
                            "kind": span.kind,
                            "trace_id": span.trace_id.hex(),
                            "parent_span_id": span.parent_span_id.hex(),
                            "span_id": span.span_id.hex(),
                            "attributes": {item.key: item.value.string_value for item in span.attributes},
                            "resource": resource,
                        }
                    )
    return spans


def _served_requests(path) -> float:
    from prometheus_client.mmap_dict import MmapedDict

    if not path.exists():
        return 0.0
    return sum(
        value
        for key, value, _, _ in MmapedDict.read_all_values_from_file(str(path))
        if json.loads(key)[1] == "http_requests_total"
    )


@pytest.mark.gunicorn
def test_gunicorn_workers_forked_from_a_preloaded_master_export_over_otlp(server_database, tmp_path):
    _Collector.received = []
    collector = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=collector.serve_forever, daemon=True)
    thread.start()
    env = {
        "OTEL_TRACES_EXPORTER": "otlp",  # the standard variable alone turns tracing on
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.server_address[1]}",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "GUNICORN_PRELOAD": "1",
    }
    traces = {}
    try:
        with GunicornServer(server_database.url, tmp_path, workers=2, env=env) as server:
            body = b"exported"

            def put(index: int) -> tuple[str, str, int]:
                trace_id = f"{index:04x}" + TRACE_ID[4:]
                answer = http(
                    server.url(f"/api/v1/buckets/otlp/artifacts/model/{index}"),
                    method="PUT",
                    data=body,
                    headers={
                        "X-Content-Digest": _digest(body),
                        "traceparent": f"00-{trace_id}-{PARENT_ID}-01",
                        "X-Correlation-Id": f"otlp-{index}",
                        "Connection": "close",
                    },
                )
                return trace_id, f"otlp-{index}", answer.status

            # Concurrent batches until both workers have served some (a sync worker takes one request at a time).
            for batch in range(10):
                with ThreadPoolExecutor(max_workers=4) as pool:
                    for trace_id, correlation_id, status in pool.map(put, range(batch * 6, batch * 6 + 6)):
                        assert status == 201
                        traces[trace_id] = correlation_id
                serving = [
                    pid for pid in server.worker_pids() if _served_requests(server.metrics_dir / f"counter_{pid}.db")
                ]
                if len(serving) == 2:
                    break
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                exported = {span["trace_id"]: span for span in _exported_spans() if span["kind"] == SERVER_KIND}
                if set(traces) <= set(exported):
                    break
                time.sleep(0.2)
            else:
                pytest.fail(f"spans missing at the collector: {set(traces) - set(exported)}\n{server.output()}")
    finally:
        collector.shutdown()
    assert len(serving) == 2, "both forked workers served (and exported) requests"
    for trace_id, correlation_id in traces.items():
        span = exported[trace_id]
        assert span["parent_span_id"] == PARENT_ID
        assert span["attributes"]["correlation_id"] == correlation_id
        assert span["resource"]["service.name"] == "artifact-bucket"
        rows = server_database.query(
            "SELECT trace_id, span_id FROM observability_audit_event WHERE correlation_id = %s AND event_type = %s",
            (correlation_id, "ARTIFACT_CREATED"),
        )
        assert rows == [(trace_id, span["span_id"])]
    server_spans = [span for span in _exported_spans() if span["kind"] == SERVER_KIND]
    assert sorted(span["trace_id"] for span in server_spans if span["trace_id"] in traces) == sorted(traces)


def test_tracing_on_by_the_standard_variable_alone_puts_the_trace_id_in_the_access_line(monkeypatch, db):
    """OTEL_TRACES_EXPORTER=console and no setting: the access line and the audit event both carry the trace."""
    from observability_app.conf import settings as obs_settings

    from .logcapture import capture_logs

    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    config = tracing.resolve()
    assert config.enabled and obs_settings.TRACING_ENABLED is False  # on by the variable, not the setting
    provider = tracing.install(dataclasses.replace(config, exporter="none"))  # spans kept in memory below
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    body = b"traced-by-env"
    try:
        with capture_logs() as logs:
            response = Client().put(
                "/api/v1/buckets/env/artifacts/m/1",
                body,
                content_type="application/octet-stream",
                HTTP_X_CONTENT_DIGEST=_digest(body),
                HTTP_TRACEPARENT=f"00-{TRACE_ID}-{PARENT_ID}-01",
                HTTP_X_CORRELATION_ID="env-trace",
            )
    finally:
        tracing.shutdown()
    assert response.status_code == 201
    (access,) = logs.access()
    (span,) = _server_spans(exporter)
    span_id = format(span.context.span_id, "016x")
    assert (access["trace_id"], access["span_id"]) == (TRACE_ID, span_id)
    event = AuditEvent.objects.get(correlation_id="env-trace", event_type="ARTIFACT_CREATED")
    assert (event.trace_id, event.span_id) == (TRACE_ID, span_id)


def test_the_trace_id_reaches_the_access_line_and_every_log_line_of_the_request(traced, db):
    from .logcapture import capture_logs

    traced()
    with capture_logs() as logs:
        response = Client().get(
            "/api/v1/buckets/tr/artifacts/missing/1",
            HTTP_TRACEPARENT=f"00-{TRACE_ID}-{PARENT_ID}-01",
            HTTP_X_CORRELATION_ID="corr-trace",
        )
    assert response.status_code == 404
    lines = logs.lines()
    access = [line for line in lines if line["logger"] == "observability_app.access"]
    assert len(access) == 1 and access[0]["trace_id"] == TRACE_ID and len(access[0]["span_id"]) == 16
    assert all(line["trace_id"] == TRACE_ID for line in lines if line["correlation_id"] == "corr-trace")


# -- past the inbound span: SQL, Celery publish and run, the scan, under one trace ----------------------------------


@pytest.mark.gunicorn
def test_one_upload_traces_its_sql_the_celery_publish_and_the_task_run(server_database, tmp_path):
    from tests.celery_worker import BROKER_URL, CeleryWorker

    _Collector.received = []
    collector = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    env = {
        "OBSERVABILITY_TRACING_ENABLED": "1",
        "OBSERVABILITY_TRACE_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.server_address[1]}",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    web_env = {**env, "EXAMPLE_SCAN_ON_UPLOAD": "1", "CELERY_BROKER_URL": BROKER_URL}
    trace_id = "5" * 8 + TRACE_ID[8:]
    try:
        with (
            CeleryWorker(server_database.url, tmp_path / "worker", env=env) as worker,
            GunicornServer(server_database.url, tmp_path / "web", workers=1, env=web_env) as web,
        ):
            body = b"traced past the request"
            answer = http(
                web.url("/api/v1/buckets/traced/artifacts/model/1"),
                method="PUT",
                data=body,
                headers={
                    "X-Content-Digest": _digest(body),
                    "traceparent": f"00-{trace_id}-{PARENT_ID}-01",
                    "X-Correlation-Id": "traced-upload",
                },
            )
            assert answer.status == 201

            def complete():
                spans = [span for span in _exported_spans() if span["trace_id"] == trace_id]
                names = {span["name"] for span in spans}
                wanted = {"bucket.safety_scan", "run/bucket.scan_artifact", "apply_async/bucket.scan_artifact"}
                return spans if wanted <= names else None

            spans = worker.wait_for(complete, timeout=60, what="the task's spans at the collector")
            job_line = worker.wait_for(lambda: worker.job_lines(), what="the task's line")[0]
    finally:
        collector.shutdown()
    by_kind: dict[int, list[dict]] = {}
    for span in spans:
        by_kind.setdefault(span["kind"], []).append(span)
    (request_span,) = by_kind[SERVER_KIND]
    assert request_span["parent_span_id"] == PARENT_ID
    assert request_span["resource"]["service.name"] == "artifact-bucket"
    sql = [span for span in by_kind[CLIENT_KIND] if span["attributes"].get("db.system") in ("sqlite", "postgresql")]
    assert sql, sorted(span["name"] for span in spans)
    assert any(span["parent_span_id"] == request_span["span_id"] for span in sql)  # the request's own queries
    (publish,) = by_kind[PRODUCER_KIND]
    (run,) = by_kind[CONSUMER_KIND]
    assert run["parent_span_id"] == publish["span_id"]
    (scan,) = [span for span in spans if span["name"] == "bucket.safety_scan"]
    assert scan["parent_span_id"] == run["span_id"]
    assert any(span["parent_span_id"] == scan["span_id"] for span in sql)  # the worker's queries, under the scan
    # The task's line and its audit event are in the same trace.
    assert job_line["trace_id"] == trace_id and job_line["correlation_id"] == "traced-upload"
    rows = server_database.query(
        "SELECT trace_id, correlation_id, source FROM observability_audit_event WHERE event_type = %s",
        ("SAFETY_DECISION_RECORDED",),
    )
    assert rows == [(trace_id, "traced-upload", "worker")]


# -- sampling per environment and per kind of endpoint ------------------------------------------------------------


def test_default_rate_depends_on_the_environment_and_the_setting_wins():
    for environment, rate in (("production", 0.05), ("staging", 0.25), ("development", 1.0), ("ci", 1.0)):
        assert tracing.resolve(build_settings({"ENVIRONMENT": environment}, {}), {}).sample_rate == rate
    explicit = build_settings({"ENVIRONMENT": "production", "TRACE_SAMPLE_RATE": 0.5}, {})
    assert tracing.resolve(explicit, {}).sample_rate == 0.5
    env = {"OBSERVABILITY_TRACE_SAMPLE_RATE": "0.2"}
    assert tracing.resolve(build_settings({"ENVIRONMENT": "production"}, env), env).sample_rate == 0.2
    table = build_settings({"ENVIRONMENT": "qa", "TRACE_SAMPLE_RATES": {"qa": 0.3}}, {})
    assert tracing.resolve(table, {}).sample_rate == 0.3


def _decision(sampler, path, parent_sampled=None):
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    parent = None
    if parent_sampled is not None:
        flags = TraceFlags(TraceFlags.SAMPLED if parent_sampled else TraceFlags.DEFAULT)
        context = SpanContext(int(TRACE_ID, 16), int(PARENT_ID, 16), is_remote=True, trace_flags=flags)
        parent = trace.set_span_in_context(NonRecordingSpan(context))
    attributes = {"http.target": path} if path is not None else None
    return sampler.should_sample(parent, int(TRACE_ID, 16), "GET", attributes=attributes).decision.is_sampled()


def test_probes_and_metrics_are_never_sampled_and_rules_pick_the_rest():
    sampler = tracing.RuleSampler(1.0, (("/api/v1/buckets/cheap/", 0.0),))
    for path in ("/health/ready", "/health/live", "/metrics", "/metrics?x=1", "/api/v1/health"):
        assert not _decision(sampler, path) and not _decision(sampler, path, parent_sampled=True)
    assert _decision(sampler, "/api/v1/buckets/models/artifacts/a/1")
    assert not _decision(sampler, "/api/v1/buckets/cheap/artifacts/a/1")
    assert _decision(sampler, "/api/v1/buckets/cheap/artifacts/a/1", parent_sampled=True)  # the caller decided
    assert not _decision(tracing.RuleSampler(1.0), "/x", parent_sampled=False)
    assert _decision(sampler, None)  # a span without a path (a task published by beat): the ratio
    assert not _decision(tracing.RuleSampler(0.0), None)
    assert "never" in sampler.get_description()


def test_database_and_redis_calls_outside_any_request_or_job_are_not_sampled():
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

    sampler = tracing.RuleSampler(1.0)

    def decide(kind, attributes=None, parent=None):
        return sampler.should_sample(parent, int(TRACE_ID, 16), "x", kind, attributes).decision.is_sampled()

    assert not decide(SpanKind.CLIENT)  # SELECT, BRPOP, LLEN of the worker's own loop or a scrape
    assert decide(SpanKind.CLIENT, {"url.full": "http://api/x"}) and decide(SpanKind.CLIENT, {"http.url": "http://a"})
    sampled = SpanContext(int(TRACE_ID, 16), int(PARENT_ID, 16), is_remote=False, trace_flags=TraceFlags(1))
    assert decide(SpanKind.CLIENT, parent=trace.set_span_in_context(NonRecordingSpan(sampled)))
    assert decide(SpanKind.PRODUCER) and decide(SpanKind.INTERNAL)  # beat's publish, a job's own span


def test_a_query_makes_a_span_under_a_request_or_job_and_none_outside(traced):
    import sqlite3

    exporter = traced()
    connection = sqlite3.connect(":memory:")  # connected after install: instrumented
    try:
        connection.cursor().execute("SELECT 1").fetchall()
        assert not exporter.get_finished_spans()
        with tracing.provider().get_tracer("tests").start_as_current_span("job"):
            connection.cursor().execute("SELECT 2").fetchall()
    finally:
        connection.close()
    names = sorted(span.name for span in exporter.get_finished_spans())
    assert names == ["SELECT", "job"]


def test_sampling_rules_and_rates_are_validated_by_checks(settings):
    settings.OBSERVABILITY = {
        **settings.OBSERVABILITY,
        "TRACE_SAMPLING_RULES": [{"path": "no-slash", "rate": 0.5}, {"path": "/ok", "rate": 2}],
        "TRACE_SAMPLE_RATES": {"production": "high"},
    }
    ids = [message.id for message in run_checks()]
    assert ids.count("observability_app.E043") == 2
    assert tracing.sampling_rules([{"path": "/a", "rate": 0.5}, "junk", {"path": "/b"}]) == (("/a", 0.5),)
