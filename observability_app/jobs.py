"""Carry a request's correlation into background work; one log line, metrics and a span per job run.

Two ways in, one implementation (:class:`JobRun`):

* **Celery**: one line in the project's Celery app, no per-task code (see
  :mod:`observability_app.integrations.celery`): the ids travel in message headers;
* **anything else** (a thread, a cron script, another queue): the ids travel in the payload::

      payload = jobs.carry({"artifact_id": aid})   # in the request: adds "_observability": {ids, attempt}
      jobs.run("scan_artifact", scan, payload)     # in the worker: or ``with jobs.job_context(name, payload):``

Either way the run gets the same correlation id and request id as the request that enqueued it (so log lines and
audit events of both stitch together), the request's trace (W3C ``traceparent``) as its parent, ``source`` "job"
(``"worker"`` for Celery workers and other long-running consumers) and an attempt counter that survives retries.
Each run writes one line to the ``observability_app.jobs`` logger with ``task``, ``queue``, ``attempt``,
``duration_ms`` and ``outcome`` (success, error, or retry when attempts remain) and records the job metrics of
:mod:`observability_app.metrics.jobs`.

*Changed in 0.2*: the line also carries ``task``, ``queue`` and ``attempt`` (``job`` and ``job_attempt`` stay,
with the same values); ``carry()`` adds the ``traceparent`` of the current span.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from . import context, tracing
from .ids import new_id, safe_id
from .logging import JOB_LOGGER
from .metrics import jobs as job_metrics

KEY = "_observability"
#: The queue label of jobs run by :func:`run` (no broker queue).
INLINE_QUEUE = "inline"
MAX_ATTEMPT = 1_000_000
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}")
_TRACESTATE = re.compile(r"[\x20-\x7e]{1,512}")
logger = logging.getLogger(JOB_LOGGER)


@dataclass(frozen=True)
class JobIds:
    """What a job carries from where it was enqueued; every field validated (hostile input is replaced)."""

    correlation_id: str
    request_id: str = ""
    traceparent: str = ""
    tracestate: str = ""

    @classmethod
    def current(cls) -> JobIds:
        """The ids of the current request or job (a new correlation id outside any), and the active span's context.

        Called where work is enqueued: a job enqueued by cron still gets a correlation id of its own.
        """
        ctx = context.current()
        correlation_id = ctx.correlation_id if ctx is not None and ctx.correlation_id else new_id()
        request_id = ctx.request_id if ctx is not None else ""
        traceparent = tracestate = ""
        if tracing.active():
            carrier: dict[str, str] = {}
            from opentelemetry.propagate import inject

            inject(carrier)
            traceparent, tracestate = carrier.get("traceparent", ""), carrier.get("tracestate", "")
        return cls(correlation_id, request_id, traceparent, tracestate)

    @classmethod
    def parse(cls, correlation_id: Any, request_id: Any, traceparent: Any = None, tracestate: Any = None) -> JobIds:
        """Ids read back from a payload or message headers: anything unsafe is dropped (a new correlation id)."""
        return cls(
            _safe(correlation_id) or new_id(),
            _safe(request_id) or "",
            traceparent if isinstance(traceparent, str) and _TRACEPARENT.fullmatch(traceparent) else "",
            tracestate if isinstance(tracestate, str) and _TRACESTATE.fullmatch(tracestate) else "",
        )

    def trace_context(self) -> Any:
        """The OpenTelemetry context of the enqueuing span (None without a valid ``traceparent``)."""
        if not self.traceparent or not tracing.active():
            return None
        from opentelemetry.propagate import extract

        carrier = {"traceparent": self.traceparent}
        if self.tracestate:
            carrier["tracestate"] = self.tracestate
        return extract(carrier)


def _safe(value: Any) -> str | None:
    return safe_id(value) if isinstance(value, str) else None


def safe_attempt(value: Any) -> int:
    """A retry counter read from outside: a non-negative int below :data:`MAX_ATTEMPT`, else 0."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < MAX_ATTEMPT:
        return value
    return 0


class JobRun:
    """One run of a job: its context bound, its metrics and its log line.

    ``start()`` binds the context (ids restored, ``route`` ``job:<task>``) and counts the start; ``finish()``
    writes the one line and the outcome metrics and unbinds. The Celery integration calls them from the worker's
    task signals, :func:`run` around the function; nothing else differs between the two.
    """

    __slots__ = ("attempt", "ctx", "ids", "name", "published_at", "queue", "source", "started", "token")

    def __init__(
        self,
        name: str,
        ids: JobIds,
        *,
        attempt: int = 1,
        queue: str = INLINE_QUEUE,
        source: str = "job",
        published_at: float | None = None,
    ) -> None:
        self.name = name
        self.ids = ids
        self.attempt = attempt
        self.queue = queue
        self.source = source
        self.published_at = published_at
        self.started = 0.0
        self.ctx: context.ObservabilityContext | None = None
        self.token: Any = None

    def start(self) -> context.ObservabilityContext:
        ctx = context.ObservabilityContext(
            request_id=self.ids.request_id or new_id(),
            correlation_id=self.ids.correlation_id,
            source=self.source,
            route=f"job:{self.name}"[:255],
        )
        ctx.extra["job_attempt"] = self.attempt
        self.ctx = ctx
        self.token = context.bind(ctx)
        wait = time.time() - self.published_at if self.published_at is not None else None
        job_metrics.started(self.queue, self.name, wait)
        self.started = time.perf_counter()
        return ctx

    def finish(self, outcome: str, exc: BaseException | None = None) -> None:
        duration = time.perf_counter() - self.started
        try:
            job_metrics.finished(self.queue, self.name, outcome, duration)
            level = logging.INFO if outcome == "success" else (logging.WARNING if outcome == "retry" else logging.ERROR)
            logger.log(
                level,
                "job %s %s",
                self.name,
                outcome,
                exc_info=exc if outcome == "error" and exc is not None else None,
                extra={
                    "task": self.name,
                    "queue": self.queue,
                    "attempt": self.attempt,
                    "job": self.name,
                    "job_attempt": self.attempt,
                    "duration_ms": round(duration * 1000, 3),
                    "outcome": outcome,
                },
            )
        finally:
            if self.token is not None:
                context.unbind(self.token)
                self.token = None


def carry(payload: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A copy of ``payload`` with the current ids (and ``traceparent`` when tracing) under ``"_observability"``.

    Outside any request a new correlation id is started, so a job enqueued by cron is still traceable.
    """
    ids = JobIds.current()
    out = dict(payload or {})
    meta: dict[str, Any] = {"correlation_id": ids.correlation_id, "request_id": ids.request_id, "attempt": 0}
    if ids.traceparent:
        meta["traceparent"] = ids.traceparent
        if ids.tracestate:
            meta["tracestate"] = ids.tracestate
    out[KEY] = meta
    return out


def _read(payload: Mapping[str, Any] | None) -> tuple[JobIds, int]:
    meta = payload.get(KEY) if isinstance(payload, Mapping) else None
    if not isinstance(meta, Mapping):
        return JobIds(new_id()), 0
    ids = JobIds.parse(
        meta.get("correlation_id"), meta.get("request_id"), meta.get("traceparent"), meta.get("tracestate")
    )
    return ids, safe_attempt(meta.get("attempt", 0))


@contextlib.contextmanager
def job_context(
    name: str, payload: Mapping[str, Any] | None = None, *, source: str = "job"
) -> Iterator[context.ObservabilityContext]:
    """Bind the job's context (ids restored from ``payload``) for one block; no line, no metrics."""
    ids, attempt = _read(payload)
    ctx = context.ObservabilityContext(
        request_id=ids.request_id or new_id(),
        correlation_id=ids.correlation_id,
        source=source,
        route=f"job:{name}"[:255],
    )
    ctx.extra["job_attempt"] = attempt + 1
    with context.bound(ctx):
        yield ctx


def next_attempt(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The payload to enqueue for a retry: same ids, attempt counter advanced."""
    ids, attempt = _read(payload)
    out = dict(payload)
    meta = dict(out.get(KEY) or {}) if isinstance(out.get(KEY), Mapping) else {}
    meta.update(correlation_id=ids.correlation_id, request_id=ids.request_id, attempt=attempt + 1)
    out[KEY] = meta
    return out


@contextlib.contextmanager
def _span(name: str, ids: JobIds, attempt: int) -> Iterator[None]:
    """A CONSUMER span ``run/<name>`` in the enqueuing request's trace, when tracing is on."""
    provider = tracing.provider()
    if provider is None:
        yield
        return
    from opentelemetry import trace

    tracer = provider.get_tracer("observability_app.jobs")
    with tracer.start_as_current_span(
        f"run/{name}",
        context=ids.trace_context(),
        kind=trace.SpanKind.CONSUMER,
        attributes={"job.name": name, "job.attempt": attempt, "correlation_id": ids.correlation_id},
    ):
        yield


def run(
    name: str,
    func: Callable[[dict[str, Any]], Any],
    payload: Mapping[str, Any] | None = None,
    *,
    retry_on: tuple[type[BaseException], ...] = (),
    max_attempts: int = 3,
    source: str = "job",
) -> Any:
    """Run ``func(payload)`` under the job's context, retrying on ``retry_on``; one log line per attempt.

    A run that exhausts ``max_attempts`` is counted in ``jobs_dead_lettered_total{reason="max_retries"}``.
    """
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
        raise ValueError(f"max_attempts must be an int of at least 1, got {max_attempts!r}")
    current = dict(payload or {})
    if KEY not in current:
        current = carry(current)
    while True:
        ids, done = _read(current)
        job = JobRun(name, ids, attempt=done + 1, source=source)
        with _span(name, ids, done + 1):
            job.start()
            try:
                result = func(current)
            except retry_on as exc:
                retrying = job.attempt < max_attempts
                job.finish("retry" if retrying else "error", exc)
                if not retrying:
                    job_metrics.dead_lettered(INLINE_QUEUE, name, "max_retries")
                    raise
                current = next_attempt(current)
                continue
            except BaseException as exc:
                job.finish("error", exc)
                raise
            job.finish("success")
            return result
