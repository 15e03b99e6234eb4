"""Carry a request's correlation into background work, and log one line per job run.

In the request (or wherever the job is enqueued)::

    payload = jobs.carry({"artifact_id": aid})          # adds "_observability": {correlation_id, request_id}

In the worker::

    jobs.run("scan_artifact", scan, payload)            # or: with jobs.job_context("scan_artifact", payload): ...

The worker's context gets the same correlation id and request id as the request that enqueued the job (so log
lines and audit events of both stitch together), ``source="job"`` (``"worker"`` for long-running consumers), and a
``job_attempt`` counter that survives retries because it travels in the payload. Each run writes one line to the
``observability_app.jobs`` logger with the job name, attempt, ``duration_ms`` and ``outcome``
(success, error, or retry when the job raised one of ``retry_on`` and attempts remain).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from . import context
from .ids import new_id
from .logging import JOB_LOGGER
from .middleware import safe_id

KEY = "_observability"
logger = logging.getLogger(JOB_LOGGER)


def carry(payload: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A copy of ``payload`` with the current correlation id and request id under ``"_observability"``.

    Outside any request a new correlation id is started, so a job enqueued by cron is still traceable.
    """
    ctx = context.current()
    correlation_id = ctx.correlation_id if ctx is not None and ctx.correlation_id else new_id()
    request_id = ctx.request_id if ctx is not None else ""
    out = dict(payload or {})
    out[KEY] = {"correlation_id": correlation_id, "request_id": request_id, "attempt": 0}
    return out


def _ids(payload: Mapping[str, Any] | None) -> tuple[str, str, int]:
    meta = payload.get(KEY) if isinstance(payload, Mapping) else None
    if not isinstance(meta, Mapping):
        return new_id(), "", 0
    correlation_id = safe_id(meta.get("correlation_id") if isinstance(meta.get("correlation_id"), str) else None)
    request_id = safe_id(meta.get("request_id") if isinstance(meta.get("request_id"), str) else None)
    attempt = meta.get("attempt", 0)
    if not isinstance(attempt, int) or isinstance(attempt, bool) or not 0 <= attempt < 1_000_000:
        attempt = 0
    return correlation_id or new_id(), request_id or "", attempt


@contextlib.contextmanager
def job_context(
    name: str, payload: Mapping[str, Any] | None = None, *, source: str = "job"
) -> Iterator[context.ObservabilityContext]:
    """Bind the job's context (ids restored from ``payload``) for the duration of one run."""
    correlation_id, request_id, attempt = _ids(payload)
    ctx = context.ObservabilityContext(
        request_id=request_id or new_id(), correlation_id=correlation_id, source=source, route=f"job:{name}"[:255]
    )
    ctx.extra["job_attempt"] = attempt + 1
    with context.bound(ctx):
        yield ctx


def next_attempt(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The payload to enqueue for a retry: same ids, attempt counter advanced."""
    correlation_id, request_id, attempt = _ids(payload)
    out = dict(payload)
    out[KEY] = {"correlation_id": correlation_id, "request_id": request_id, "attempt": attempt + 1}
    return out


def run(
    name: str,
    func: Callable[[dict[str, Any]], Any],
    payload: Mapping[str, Any] | None = None,
    *,
    retry_on: tuple[type[BaseException], ...] = (),
    max_attempts: int = 3,
    source: str = "job",
) -> Any:
    """Run ``func(payload)`` under the job's context, retrying on ``retry_on``; one log line per attempt."""
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
    current = dict(payload or {})
    if KEY not in current:
        current = carry(current)
    while True:
        with job_context(name, current, source=source) as ctx:
            attempt = ctx.extra["job_attempt"]
            started = time.perf_counter()
            try:
                result = func(current)
            except retry_on as exc:
                retrying = attempt < max_attempts
                _log(name, attempt, started, "retry" if retrying else "error", exc)
                if not retrying:
                    raise
                current = next_attempt(current)
                continue
            except Exception as exc:
                _log(name, attempt, started, "error", exc)
                raise
            _log(name, attempt, started, "success", None)
            return result


def _log(name: str, attempt: int, started: float, outcome: str, exc: BaseException | None) -> None:
    duration_ms = round((time.perf_counter() - started) * 1000, 3)
    level = logging.INFO if outcome == "success" else (logging.WARNING if outcome == "retry" else logging.ERROR)
    logger.log(
        level,
        "job %s %s",
        name,
        outcome,
        exc_info=exc if outcome == "error" and exc is not None else None,
        extra={"job": name, "job_attempt": attempt, "duration_ms": duration_ms, "outcome": outcome},
    )
