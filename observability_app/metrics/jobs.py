"""Job metrics: what background work did, by queue and task, recorded by :mod:`observability_app.jobs`.

Recorded (the Celery integration and ``jobs.run`` call the same functions, so both kinds of job count alike):

* ``jobs_enqueued_total{queue,task}``: messages published (in the process that published them, usually the web);
* ``jobs_started_total{queue,task}`` and ``jobs_active{queue,task}`` (runs in progress, summed over live processes);
* ``jobs_succeeded_total``, ``jobs_failed_total``, ``jobs_retried_total`` ``{queue,task}``;
* ``jobs_dead_lettered_total{queue,task,reason}``: runs given up for good, ``reason`` one of ``max_retries``,
  ``rejected``, ``expired``, ``revoked``;
* ``jobs_duration_seconds{queue,task,outcome}``: run time, outcome success/error/retry;
* ``jobs_queue_wait_seconds{queue,task}``: from publication to the start of the run;
* ``jobs_worker_heartbeat_timestamp_seconds``: the worker's last heartbeat (set by the worker's main process).

Scrape-time, on the worker's port (:mod:`observability_app.integrations.celery`): ``jobs_queue_backlog{queue}``
and ``jobs_queue_oldest_age_seconds{queue}`` read from the broker.

Cardinality: queue and task names are cut to :data:`MAX_LABEL_LENGTH` characters and every family is a
:class:`~observability_app.metrics.bounded.Family`, so a producer publishing endless task names to the broker
cannot grow the series past ``METRICS_MAX_SERIES_PER_METRIC`` (refused ones are counted in
``observability_metrics_series_dropped_total``).
"""

from __future__ import annotations

import threading
from typing import Any

from ..conf import settings

MAX_LABEL_LENGTH = 120
OUTCOMES = frozenset({"success", "error", "retry"})
DEAD_LETTER_REASONS = frozenset({"max_retries", "rejected", "expired", "revoked"})
#: Job run times: from a cache refresh (5 ms) to a long batch (10 min).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0)
#: Time in the queue: sub-second when workers keep up, minutes to an hour when they do not.
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
QUEUE_TASK = ["queue", "task"]


class _Families:
    """The job metrics, created on first use: importing this module writes no metric file (a worker imports it
    before its ``PROMETHEUS_MULTIPROC_DIR`` is ready) and a process that never touches a job exports none."""

    def __init__(self) -> None:
        # Imported here: with METRICS_ENABLED off nothing of prometheus_client is loaded at all.
        from prometheus_client import Counter, Gauge, Histogram

        from .bounded import Family
        from .registry import REGISTRY

        def counter(name: str, documentation: str, labels: list[str] = QUEUE_TASK) -> Any:
            return Family(Counter(name, documentation, labels, registry=REGISTRY), name)

        self.enqueued = counter("jobs_enqueued_total", "Job messages published, by queue and task.")
        self.started = counter("jobs_started_total", "Job runs started, by queue and task.")
        self.succeeded = counter("jobs_succeeded_total", "Job runs that succeeded, by queue and task.")
        self.failed = counter("jobs_failed_total", "Job runs that failed without a retry, by queue and task.")
        self.retried = counter("jobs_retried_total", "Job runs that ended in a retry, by queue and task.")
        self.dead_lettered = counter(
            "jobs_dead_lettered_total",
            "Jobs given up for good (max_retries, rejected, expired, revoked), by queue, task and reason.",
            [*QUEUE_TASK, "reason"],
        )
        self.active = Family(
            Gauge(
                "jobs_active",
                "Job runs in progress, by queue and task (summed over the live worker processes).",
                QUEUE_TASK,
                multiprocess_mode="livesum",
                registry=REGISTRY,
            ),
            "jobs_active",
        )
        self.duration = Family(
            Histogram(
                "jobs_duration_seconds",
                "Job run duration in seconds, by queue, task and outcome (success, error, retry).",
                [*QUEUE_TASK, "outcome"],
                buckets=DURATION_BUCKETS,
                registry=REGISTRY,
            ),
            "jobs_duration_seconds",
        )
        self.queue_wait = Family(
            Histogram(
                "jobs_queue_wait_seconds",
                "Seconds from a job's publication to the start of its run, by queue and task.",
                QUEUE_TASK,
                buckets=WAIT_BUCKETS,
                registry=REGISTRY,
            ),
            "jobs_queue_wait_seconds",
        )
        self.heartbeat = Gauge(
            "jobs_worker_heartbeat_timestamp_seconds",
            "Unix time of the worker's last heartbeat from its consumer loop.",
            multiprocess_mode="livemax",
            registry=REGISTRY,
        )
        self.by_outcome = {"success": self.succeeded, "error": self.failed, "retry": self.retried}


_families: list[_Families] = []
_lock = threading.Lock()


def families() -> _Families:
    """The job metrics (created by the first call, in whichever process makes it)."""
    if _families:
        return _families[0]
    with _lock:
        if not _families:
            _families.append(_Families())
    return _families[0]


def label(value: object, default: str = "default") -> str:
    """A queue or task name as a label value: a string, at most :data:`MAX_LABEL_LENGTH` characters."""
    if not isinstance(value, str) or not value:
        return default
    return value if len(value) <= MAX_LABEL_LENGTH else value[:MAX_LABEL_LENGTH]


def enabled() -> bool:
    return bool(settings.METRICS_ENABLED)


def enqueued(queue: object, task: object) -> None:
    if enabled():
        families().enqueued.child((label(queue), label(task, "unknown"))).inc()


def started(queue: object, task: object, wait_seconds: float | None) -> None:
    if not enabled():
        return
    key = (label(queue), label(task, "unknown"))
    found = families()
    found.started.child(key).inc()
    found.active.child(key).inc()
    if wait_seconds is not None and 0 <= wait_seconds < 86400 * 30:
        found.queue_wait.child(key).observe(wait_seconds)


def finished(queue: object, task: object, outcome: str, duration_seconds: float) -> None:
    """The end of a run that :func:`started` counted: active down, outcome counted, duration observed."""
    if not enabled():
        return
    key = (label(queue), label(task, "unknown"))
    found = families()
    found.active.child(key).dec()
    outcome = outcome if outcome in OUTCOMES else "error"
    found.by_outcome[outcome].child(key).inc()
    found.duration.child((*key, outcome)).observe(max(duration_seconds, 0.0))


def dead_lettered(queue: object, task: object, reason: str) -> None:
    if enabled():
        reason = reason if reason in DEAD_LETTER_REASONS else "rejected"
        families().dead_lettered.child((label(queue), label(task, "unknown"), reason)).inc()


def process_started() -> None:
    """Make this process's metric files in the multi-process directory now (a worker's pool child, at its start).

    ``inc(0)`` changes no value; like every write it makes prometheus_client notice the new pid and open this
    process's files, which is what the worker's exposition counts as a live process.
    """
    if enabled():
        families().heartbeat.inc(0)


def heartbeat(now: float) -> None:
    if enabled():
        families().heartbeat.set(now)
