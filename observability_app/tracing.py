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
  ``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT``/``_HEADERS`` variables), ``console`` (stdout) or ``none`` (spans and
  ids, no export);
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

from .conf import settings

EXPORTERS = ("otlp", "console", "none")
OTLP_TRACES_PATH = "/v1/traces"

_state: dict[str, Any] = {"provider": None, "processor": None, "config": None, "fork_hook": False}


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


def resolve(conf: Any = None, environ: Mapping[str, str] | None = None) -> TracingConfig:
    """Decide from the settings and the environment whether and how to trace."""
    conf = conf if conf is not None else settings._setup()
    environ = os.environ if environ is None else environ
    values = conf.values
    enabled = bool(values["TRACING_ENABLED"])
    exporter = str(values["TRACE_EXPORTER"] or "none").strip().lower()
    if conf.sources.get("TRACING_ENABLED") == "default":
        standard = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
        if standard in ("otlp", "console"):
            enabled = True
    rate = values["TRACE_SAMPLE_RATE"]
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0.0 <= rate <= 1.0:
        rate = 1.0  # reported by the system check observability_app.E003
    return TracingConfig(
        enabled=enabled,
        exporter=exporter if exporter in EXPORTERS else "none",
        sample_rate=float(rate),
        endpoint=values["OTLP_ENDPOINT"] or None,
        sampler_from_env=bool(environ.get("OTEL_TRACES_SAMPLER", "").strip()),
        excluded_paths=tuple(path for path in values["EXCLUDED_PATHS"] if isinstance(path, str) and path),
    )


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
        # stdout looked up when the first span ends, not when the SDK was imported (it may have been replaced)
        return lambda: SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stdout))

    def otlp() -> Any:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = _otlp_endpoint(config.endpoint)
        return BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint) if endpoint else OTLPSpanExporter())

    return otlp


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
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

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
    sampler = None if config.sampler_from_env else ParentBased(TraceIdRatioBased(config.sample_rate))
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
    recording.trace_ids_provider = current_trace_ids
    _state.update(provider=provider, processor=processor, config=config)
    if not _state["fork_hook"]:
        os.register_at_fork(after_in_child=_after_fork)
        _state["fork_hook"] = True
    return provider


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
    current = _state["provider"]
    if current is not None:
        current.shutdown()
    if recording.trace_ids_provider is current_trace_ids:
        recording.trace_ids_provider = None
    _state.update(provider=None, processor=None, config=None)
