"""OpenTelemetry tracing through opentelemetry-instrumentation-django; off by default.

Turning it on (any one of)::

    OBSERVABILITY = {"TRACING_ENABLED": True}          # settings
    OBSERVABILITY_TRACING_ENABLED=1                     # environment
    OTEL_TRACES_EXPORTER=otlp  (or console)             # the standard OpenTelemetry variable

``OTEL_SDK_DISABLED=true`` or ``OBSERVABILITY_TRACING_ENABLED=0`` turns it off whatever else says.

What it does:

* W3C trace context (``traceparent``/``tracestate``): a request that carries one continues that trace;
* sampling: parent-based, ratio ``TRACE_SAMPLE_RATE`` (``OBSERVABILITY_TRACE_SAMPLE_RATE`` or
  ``OTEL_TRACES_SAMPLER_ARG``) for new traces; a caller's sampled flag is followed. ``OTEL_TRACES_SAMPLER``, when
  set, picks another sampler the standard way;
* export: ``TRACE_EXPORTER`` = ``otlp`` (OTLP/HTTP protobuf, batched; ``OTLP_ENDPOINT`` or the standard
  ``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT``/``_HEADERS`` variables), ``console`` (stdout, one JSON object per span
  and line) or ``none`` (spans and ids, no export);
* sampling per environment: with ``TRACE_SAMPLE_RATE`` left at its default, the ratio comes from
  ``TRACE_SAMPLE_RATES`` by ``ENVIRONMENT`` (production 0.05, staging 0.25, anything else 1.0); and per kind of
  endpoint: ``TRACE_SAMPLING_RULES`` (path prefix -> ratio, first match wins) for new traces, while probes and
  /metrics (:data:`NEVER_SAMPLED`) are never sampled, whatever the caller's flag says (:class:`RuleSampler`);
* past the inbound span: SQL (psycopg, sqlite3), Redis, outbound HTTP (requests, urllib, httpx) and Celery publish
  and run spans, through the OpenTelemetry instrumentation of each library that is installed (``[tracing]`` and
  ``[celery]`` extras; :data:`INSTRUMENTATIONS`); an outgoing request that carries its own ``traceparent`` while no
  span is current continues that trace instead of having it replaced by a new one (:func:`caller_context`);
* ``EXCLUDED_PATHS`` (/metrics, /health/ by default) make no spans;
* every span of a request gets ``correlation_id`` and ``request_id`` attributes; audit events recorded under a
  span carry its trace_id/span_id (``observability_app.audit.recording.trace_ids_provider``), and log lines get
  them from :func:`current_trace_ids`;
* fork-safe: span export starts lazily in the process that ends the first span, so a gunicorn master that loaded
  the app (``preload_app = True``) hands no exporter thread or connection to its workers. The documented gunicorn
  hook does the same explicitly::

      def post_fork(server, worker):
          from observability_app.tracing import post_fork
          post_fork(server, worker)

See docs/tracing.md.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .conf import environment_value, settings

EXPORTERS = ("otlp", "console", "none")
OTLP_TRACES_PATH = "/v1/traces"

_state: dict[str, Any] = {
    "provider": None,
    "processor": None,
    "config": None,
    "fork_hook": False,
    "instrumented": [],
    "caller_context": [],
}

#: Paths whose spans are never sampled: probes and the scrape endpoint (prefixes).
NEVER_SAMPLED = ("/health/", "/metrics", "/api/v1/health")
#: Per-environment ratio when ``TRACE_SAMPLE_RATE`` is left at its default (other environments: 1.0).
DEFAULT_ENVIRONMENT_RATE = 1.0

#: (library module, instrumentor "module:Class") for the spans past the inbound one; each is used when both the
#: library and its instrumentation are installed.
INSTRUMENTATIONS: tuple[tuple[str, str], ...] = (
    ("psycopg", "opentelemetry.instrumentation.psycopg:PsycopgInstrumentor"),
    ("sqlite3", "opentelemetry.instrumentation.sqlite3:SQLite3Instrumentor"),
    ("redis", "opentelemetry.instrumentation.redis:RedisInstrumentor"),
    ("requests", "opentelemetry.instrumentation.requests:RequestsInstrumentor"),
    ("urllib.request", "opentelemetry.instrumentation.urllib:URLLibInstrumentor"),
    ("httpx", "opentelemetry.instrumentation.httpx:HTTPXClientInstrumentor"),
    ("celery", "opentelemetry.instrumentation.celery:CeleryInstrumentor"),
)

#: Outbound HTTP sends wrapped around their instrumentation (library, "module:Class", method, is it a coroutine), so
#: that a ``traceparent`` the caller put on the request itself is continued rather than replaced (see
#: :func:`caller_context`).
CALLER_CONTEXT_SENDS: tuple[tuple[str, str, str, bool], ...] = (
    ("urllib.request", "urllib.request:OpenerDirector", "open", False),
    ("requests", "requests.sessions:Session", "send", False),
    ("httpx", "httpx:Client", "send", False),
    ("httpx", "httpx:AsyncClient", "send", True),
)


def current_trace_ids() -> tuple[str, str]:
    """(trace_id, span_id) of the active, valid span as lowercase hex, or ('', '') when there is none."""
    from opentelemetry import trace

    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return "", ""
    return format(span_context.trace_id, "032x"), format(span_context.span_id, "016x")


@dataclass(frozen=True)
class TracingConfig:
    enabled: bool
    exporter: str
    sample_rate: float
    endpoint: str | None
    sampler_from_env: bool
    excluded_paths: tuple[str, ...]
    rules: tuple[tuple[str, float], ...] = ()


def resolve(conf: Any = None, environ: Mapping[str, str] | None = None) -> TracingConfig:
    """Decide from the settings and the environment whether and how to trace."""
    conf = conf if conf is not None else settings._setup()
    values = conf.values
    enabled = bool(values["TRACING_ENABLED"])
    exporter = str(values["TRACE_EXPORTER"] or "none").strip().lower()
    if conf.sources.get("TRACING_ENABLED") == "default":
        standard = (environment_value("OTEL_TRACES_EXPORTER", environ) or "").strip().lower()
        if standard in ("otlp", "console"):
            enabled = True
    rate = values["TRACE_SAMPLE_RATE"]
    if conf.sources.get("TRACE_SAMPLE_RATE") == "default":
        rate = environment_rate(values["ENVIRONMENT"], values["TRACE_SAMPLE_RATES"])
    if not _is_rate(rate):
        rate = 1.0  # reported by the system check observability_app.E003
    return TracingConfig(
        enabled=enabled,
        exporter=exporter if exporter in EXPORTERS else "none",
        sample_rate=float(rate),
        endpoint=values["OTLP_ENDPOINT"] or None,
        sampler_from_env=bool((environment_value("OTEL_TRACES_SAMPLER", environ) or "").strip()),
        excluded_paths=tuple(path for path in values["EXCLUDED_PATHS"] if isinstance(path, str) and path),
        rules=sampling_rules(values["TRACE_SAMPLING_RULES"]),
    )


def _is_rate(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and 0.0 <= value <= 1.0


def environment_rate(environment: Any, table: Any) -> float:
    """The default ratio of ``environment`` from ``TRACE_SAMPLE_RATES`` (1.0 when it is not listed or invalid)."""
    if isinstance(table, Mapping) and isinstance(environment, str):
        rate = table.get(environment, table.get(environment.lower()))
        if _is_rate(rate):
            return float(rate)
    return DEFAULT_ENVIRONMENT_RATE


def sampling_rules(entries: Any) -> tuple[tuple[str, float], ...]:
    """``TRACE_SAMPLING_RULES`` as (path prefix, ratio) pairs; invalid entries are left out (check E043)."""
    rules = []
    for entry in entries if isinstance(entries, list | tuple) else ():
        if isinstance(entry, Mapping):
            path, rate = entry.get("path"), entry.get("rate")
            if isinstance(path, str) and path.startswith("/") and _is_rate(rate):
                rules.append((path, float(rate)))
    return tuple(rules)


def _span_path(attributes: Any) -> str | None:
    if not attributes:
        return None
    path = attributes.get("url.path") or attributes.get("http.target")
    if not isinstance(path, str):
        return None
    return path.split("?", 1)[0]


#: What an outbound HTTP client span is started with (new and old semantic conventions); database and Redis
#: client spans are started without attributes.
_CLIENT_URL_ATTRIBUTES = ("url.full", "http.url")


def _orphan_call(parent_context: Any, kind: Any, attributes: Any) -> bool:
    """A CLIENT span without a parent that is not an outbound HTTP call (which the callee may continue)."""
    from opentelemetry import trace

    if kind is not trace.SpanKind.CLIENT or trace.get_current_span(parent_context).get_span_context().is_valid:
        return False
    return not (attributes and any(attributes.get(key) for key in _CLIENT_URL_ATTRIBUTES))


class RuleSampler:
    """The app's sampler: never probes or /metrics; a caller's (parent's) decision otherwise; rules, then ratio.

    ``NEVER_SAMPLED`` paths are dropped even under a sampled parent: a load balancer that sends ``traceparent``
    with its probes must not fill the trace store. A database or cache call outside any request or job (a CLIENT
    span with no parent and no URL: the worker's own broker traffic, a scrape's backlog read, a command's
    queries) is dropped too: each would be a trace of one span about plumbing. A span with a parent (the SQL,
    Redis and Celery spans of a request, a task run whose publisher sampled) follows the parent. A new trace (an
    incoming request without ``traceparent``, a task published by beat, an outgoing HTTP call of a script) is
    matched against ``rules`` (path prefix, ratio; first match wins), else ``rate``.
    """

    def __init__(self, rate: float, rules: tuple[tuple[str, float], ...] = ()) -> None:
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

        self.rate = rate
        self.rules = rules
        self._default = ParentBased(TraceIdRatioBased(rate))
        self._rules = tuple((prefix, ParentBased(TraceIdRatioBased(ratio))) for prefix, ratio in rules)

    def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None, links=None, trace_state=None):
        from opentelemetry.sdk.trace.sampling import Decision, SamplingResult

        path = _span_path(attributes)
        if path is None:
            if _orphan_call(parent_context, kind, attributes):
                return SamplingResult(Decision.DROP)
        elif path.startswith(NEVER_SAMPLED):
            return SamplingResult(Decision.DROP)
        else:
            for prefix, sampler in self._rules:
                if path.startswith(prefix):
                    return sampler.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)
        return self._default.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return f"RuleSampler{{rate={self.rate}, rules={list(self.rules)}, never={list(NEVER_SAMPLED)}}}"


def excluded_urls_pattern(paths: tuple[str, ...]) -> str:
    """The instrumentation's ``excluded_urls`` (comma-separated regexes searched in the full URL) for path prefixes.

    Each prefix is anchored right after the host, so ``/metrics`` excludes ``http://h/metrics`` but not
    ``http://h/api/v1/buckets/metrics/...``.
    """
    patterns = []
    for path in paths:
        escaped = re.escape(path).replace(",", r"\x2c")
        patterns.append(rf"^[a-zA-Z][a-zA-Z0-9+.\-]*://[^/]+{escaped}")
    return ",".join(patterns)


class ForkSafeExportProcessor:
    """A span processor that builds its real (batching) processor in the process that ends the first span.

    A processor created before ``fork()`` would share its queue, its exporter's connection pool and a dead worker
    thread with every child; this one notices the new pid and starts afresh, without shutting down (and so
    flushing twice) what the parent owns.
    """

    def __init__(self, factory: Any) -> None:
        self._factory = factory
        self._pid: int | None = None
        self._delegate: Any = None
        self._lock = threading.Lock()

    def _current(self) -> Any:
        pid = os.getpid()
        if self._pid != pid:
            with self._lock:
                if self._pid != pid:
                    self._delegate = self._factory()
                    self._pid = pid
        return self._delegate

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        return None

    def _on_ending(self, span: Any) -> None:
        return None

    def on_end(self, span: Any) -> None:
        self._current().on_end(span)

    def reset(self) -> None:
        """Forget the parent's processor (after fork); the next span starts a fresh one."""
        with self._lock:
            if self._pid != os.getpid():
                self._pid = None
                self._delegate = None

    def shutdown(self) -> None:
        if self._delegate is not None and self._pid == os.getpid():
            self._delegate.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        if self._delegate is not None and self._pid == os.getpid():
            return self._delegate.force_flush(timeout_millis)
        return True


def _otlp_endpoint(endpoint: str | None) -> str | None:
    if not endpoint:
        return None
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith(OTLP_TRACES_PATH) else endpoint + OTLP_TRACES_PATH


def _processor_factory(config: TracingConfig) -> Any:
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor

    if config.exporter == "console":
        # stdout looked up when the first span ends, not when the SDK was imported (it may have been replaced);
        # one JSON object per line, like the log lines beside them, so that one jq filter reads both
        return lambda: SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stdout, formatter=_one_line))

    def otlp() -> Any:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = _otlp_endpoint(config.endpoint)
        return BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint) if endpoint else OTLPSpanExporter())

    return otlp


def _one_line(span: Any) -> str:
    return span.to_json(indent=None) + "\n"


def _response_hook(span: Any, request: Any, response: Any) -> None:
    """Correlation and request ids on the request's span (the middleware has validated and echoed them)."""
    if span is None or not span.is_recording():
        return
    correlation_id = response.get("X-Correlation-Id") if response is not None else None
    if correlation_id:
        span.set_attribute("correlation_id", correlation_id)
    request_id = response.get("X-Request-Id") if response is not None else None
    if request_id:
        span.set_attribute("request_id", request_id)


def setup() -> bool:
    """Install tracing when enabled (``ObservabilityConfig.ready()`` calls it); True when it is on."""
    config = resolve()
    if not config.enabled:
        return False
    install(config)
    return True


def install(config: TracingConfig) -> Any:
    """Build the tracer provider, instrument Django, let audit events pick the trace ids up; returns the provider."""
    from opentelemetry import trace
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    from .audit import recording

    if _state["provider"] is not None:
        shutdown()
    conf = settings._setup()
    resource = Resource.create(
        {
            "service.name": str(conf.values["SERVICE_NAME"]),
            "service.version": str(conf.values["SERVICE_VERSION"]),
            "deployment.environment": str(conf.values["ENVIRONMENT"]),
            "deployment.environment.name": str(conf.values["ENVIRONMENT"]),
            "cloud.region": str(conf.values["REGION"]),
            "host.name": str(conf.node),
        }
    )
    sampler = None if config.sampler_from_env else RuleSampler(config.sample_rate, config.rules)
    provider = TracerProvider(resource=resource, sampler=sampler)
    processor = None
    if config.exporter != "none":
        processor = ForkSafeExportProcessor(_processor_factory(config))
        provider.add_span_processor(processor)
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        trace.set_tracer_provider(provider)  # other instrumentations (requests, psycopg) use it too
    instrumentor = DjangoInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()
    kwargs: dict[str, Any] = {"tracer_provider": provider, "response_hook": _response_hook}
    if config.excluded_paths:
        kwargs["excluded_urls"] = excluded_urls_pattern(config.excluded_paths)
    instrumentor.instrument(**kwargs)
    _instrument_libraries(provider)
    recording.trace_ids_provider = current_trace_ids
    _state.update(provider=provider, processor=processor, config=config)
    if not _state["fork_hook"]:
        os.register_at_fork(after_in_child=_after_fork)
        _state["fork_hook"] = True
    return provider


def available_instrumentations() -> list[tuple[str, Any]]:
    """(library, instrumentor class) for each library of :data:`INSTRUMENTATIONS` installed with its
    instrumentation; the libraries installed without one are named by the system check W040."""
    from importlib import import_module
    from importlib.util import find_spec

    found = []
    for library, target in INSTRUMENTATIONS:
        try:
            if find_spec(library) is None:
                continue
            module_name, _, class_name = target.partition(":")
            found.append((library, getattr(import_module(module_name), class_name)))
        except ImportError:
            continue
    return found


def missing_instrumentations() -> list[str]:
    """Libraries of :data:`INSTRUMENTATIONS` that are installed while their instrumentation is not."""
    from importlib.util import find_spec

    missing = []
    for library, target in INSTRUMENTATIONS:
        try:
            if find_spec(library) is not None and find_spec(target.partition(":")[0]) is None:
                missing.append(library)
        except (ImportError, ValueError):
            missing.append(library)
    return missing


def _instrument_libraries(provider: Any) -> None:
    _uninstrument_libraries()
    for library, instrumentor_class in available_instrumentations():
        instrumentor = instrumentor_class()
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()
        try:
            instrumentor.instrument(tracer_provider=provider)
        except Exception as exc:  # a broken or incompatible instrumentation must not stop start-up
            import logging

            logging.getLogger("observability_app.tracing").warning(
                "tracing: the %s instrumentation could not be installed (%s: %s)", library, type(exc).__name__, exc
            )
            continue
        _state["instrumented"].append(instrumentor)
        if library == "celery":
            _after_celery_instrumented()
        _wrap_sends(library)


def _after_celery_instrumented() -> None:
    """Let the Celery integration put its task handlers around the instrumentation's (span open for its line)."""
    import sys

    integration = sys.modules.get("observability_app.integrations.celery")
    if integration is not None:
        integration.order_signal_handlers()


def caller_context(request: Any) -> Any:
    """The trace context an outgoing ``request`` carries in its own ``traceparent`` header, when no span is current.

    The outbound instrumentations inject the *current* span's context into every request they send. With no span
    current (a script, a thread of its own, a client that forwards the context it was handed) the client span
    would start a new trace and its header would overwrite the caller's ``traceparent``: the service called would
    continue a trace nobody asked for, and the caller's trace would stop there. Made the parent of the client
    span, the caller's context is continued instead (same trace id, the client span in between). A current span
    wins over the header, as the instrumentations have it. None when there is nothing to continue.
    """
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    if trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    for headers in (getattr(request, "headers", None), getattr(request, "unredirected_hdrs", None)):
        items = getattr(headers, "items", None)
        if items is None:
            continue
        for name, value in items():
            key = name.decode("latin-1") if isinstance(name, bytes) else str(name)
            key = key.lower()
            if key in ("traceparent", "tracestate"):
                carrier[key] = value.decode("latin-1") if isinstance(value, bytes) else str(value)
    if "traceparent" not in carrier:
        return None
    context = TraceContextTextMapPropagator().extract(carrier)
    return context if trace.get_current_span(context).get_span_context().is_valid else None


def _continuing(send: Any, is_async: bool) -> Any:
    """``send(self, request, ...)`` run under :func:`caller_context` (when there is one)."""
    from opentelemetry import context as otel_context

    if is_async:

        async def wrapper(self: Any, request: Any = None, *args: Any, **kwargs: Any) -> Any:
            parent = caller_context(request)
            token = otel_context.attach(parent) if parent is not None else None
            try:
                return await send(self, request, *args, **kwargs)
            finally:
                if token is not None:
                    otel_context.detach(token)

    else:

        def wrapper(self: Any, request: Any = None, *args: Any, **kwargs: Any) -> Any:
            parent = caller_context(request)
            token = otel_context.attach(parent) if parent is not None else None
            try:
                return send(self, request, *args, **kwargs)
            finally:
                if token is not None:
                    otel_context.detach(token)

    # Not functools.wraps: it would copy the instrumentation's own markers (and ``__wrapped__``), and its
    # uninstrument() would then put its wrapper back instead of the library's method.
    wrapper.__name__ = getattr(send, "__name__", "send")
    wrapper.__qualname__ = getattr(send, "__qualname__", "send")
    wrapper.__doc__ = getattr(send, "__doc__", None)
    wrapper._observability_caller_context = True  # type: ignore[attr-defined]
    return wrapper


def _wrap_sends(library: str) -> None:
    """Put :func:`_continuing` around the instrumented send methods of ``library`` (:data:`CALLER_CONTEXT_SENDS`)."""
    from importlib import import_module

    for owner_library, target, method, is_async in CALLER_CONTEXT_SENDS:
        if owner_library != library:
            continue
        module_name, _, class_name = target.partition(":")
        try:
            owner = getattr(import_module(module_name), class_name)
        except (ImportError, AttributeError):
            continue
        original = owner.__dict__.get(method)
        if original is None or getattr(original, "_observability_caller_context", False):
            continue
        setattr(owner, method, _continuing(original, is_async))
        _state["caller_context"].append((owner, method, original))


def _unwrap_sends() -> None:
    """Undo :func:`_wrap_sends` (before the instrumentations are removed, so theirs come off cleanly)."""
    while _state["caller_context"]:
        owner, method, original = _state["caller_context"].pop()
        if getattr(owner.__dict__.get(method), "_observability_caller_context", False):
            setattr(owner, method, original)


def _uninstrument_libraries() -> None:
    _unwrap_sends()
    while _state["instrumented"]:
        instrumentor = _state["instrumented"].pop()
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()


def active() -> bool:
    """True while :func:`install` is in effect, whichever of the setting or ``OTEL_TRACES_EXPORTER`` turned it on.

    Log lines and the middleware ask this, not ``TRACING_ENABLED``: the setting alone misses tracing turned on by
    the standard variable (and the trace ids would then be missing from the access line).
    """
    return _state["provider"] is not None


def provider() -> Any:
    """The tracer provider :func:`install` built, or None when tracing is off."""
    return _state["provider"]


def _after_fork() -> None:
    processor = _state["processor"]
    if processor is not None:
        processor.reset()


def post_fork(server: Any = None, worker: Any = None) -> None:
    """gunicorn ``post_fork`` hook: drop span export state inherited from the master (idempotent)."""
    _after_fork()


def shutdown() -> None:
    """Undo :func:`install`: remove the instrumentation, flush and stop export, stop stamping audit events."""
    from opentelemetry.instrumentation.django import DjangoInstrumentor

    from .audit import recording

    instrumentor = DjangoInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()
    _uninstrument_libraries()
    current = _state["provider"]
    if current is not None:
        current.shutdown()
    if recording.trace_ids_provider is current_trace_ids:
        recording.trace_ids_provider = None
    _state.update(provider=None, processor=None, config=None, instrumented=[], caller_context=[])
