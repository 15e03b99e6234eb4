"""Celery: the request's ids and trace follow its tasks; workers log JSON, count jobs and answer probes.

One line in the project's Celery app (or ``OBSERVABILITY["CELERY_APP"] = "project.celery.app"``), no per-task
code::

    app = Celery("project")
    app.config_from_object("django.conf:settings", namespace="CELERY")
    observability_app.integrations.celery.install(app)

What it does (extra ``[celery]``):

* **publish** (``before_task_publish``): the message *headers* (never the payload) get ``x_correlation_id``,
  ``x_request_id`` and the W3C ``traceparent``/``tracestate`` of the current request or job, and
  ``x_published_at``. A task published outside any request (beat, a script) starts a correlation id of its own.
  Retries and chained or nested tasks are published from inside the running task, so they carry the same ids;
* **run** (``task_prerun``/``task_postrun``): the worker binds those ids with ``source`` "worker" and ``route``
  ``job:<task>``, so its log lines and audit events carry the request's correlation id, request id and trace id;
  one ``observability_app.jobs`` line per run with ``task``, ``queue``, ``attempt``, ``duration_ms`` and
  ``outcome`` (success/error/retry), the same code as :func:`observability_app.jobs.run`
  (:class:`~observability_app.jobs.JobRun`); Celery's own "Task ... succeeded/raised/retry" lines are dropped
  as duplicates;
* **logging**: Celery's ``setup_logging`` is answered with the project's ``LOGGING`` (JSON lines), so the worker
  does not hijack the root logger, and its stdout is not redirected into it;
* **metrics** (:mod:`observability_app.metrics.jobs`): enqueued, started, active, succeeded, failed, retried,
  dead-lettered (max retries exhausted, rejected, expired, revoked), run duration, queue wait; on the worker's port,
  backlog depth and oldest message age per queue (Redis and RabbitMQ) and the heartbeat;
* **the worker's port** (``WORKER_METRICS_PORT``): ``/metrics``, ``/health/live``, ``/health/ready``
  (:mod:`observability_app.worker`), or pushes to ``WORKER_PUSHGATEWAY_URL``; the heartbeat state file for
  ``manage.py worker_probe``;
* **tracing**: with tracing on, :mod:`observability_app.tracing` installs OpenTelemetry's Celery instrumentation
  (publish and run spans in the request's trace); this module keeps its own handlers around it so the run span is
  open when the task's line is written.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from datetime import datetime
from typing import Any

from .. import jobs
from ..conf import settings
from ..metrics import jobs as job_metrics
from .base import Integration

__all__ = [
    "DEFAULT_QUEUE",
    "HEADER_CORRELATION",
    "HEADER_PUBLISHED",
    "HEADER_REQUEST",
    "TRACE_HEADERS",
    "BrokerCollector",
    "CeleryIntegration",
    "TraceOutcomeFilter",
    "install",
    "integration",
    "order_signal_handlers",
]


HEADER_CORRELATION = "x_correlation_id"
HEADER_REQUEST = "x_request_id"
HEADER_PUBLISHED = "x_published_at"
TRACE_HEADERS = ("traceparent", "tracestate")
DEFAULT_QUEUE = "celery"

logger = logging.getLogger("observability_app.integrations.celery")


def _value(request: Any, key: str) -> Any:
    """A custom header of the running task: Celery puts them on ``task.request`` (and in ``.headers``)."""
    value = getattr(request, key, None)
    if value is None:
        headers = getattr(request, "headers", None)
        if isinstance(headers, dict):
            value = headers.get(key)
    return value


def _queue_of(delivery_info: Any) -> str:
    if isinstance(delivery_info, dict):
        return job_metrics.label(delivery_info.get("routing_key") or delivery_info.get("exchange"), DEFAULT_QUEUE)
    return DEFAULT_QUEUE


def _published_at(value: Any, eta: Any) -> float | None:
    """When the run could start at the earliest: publication, or the ETA/countdown when later."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    published = float(value)
    if isinstance(eta, str) and eta:
        with contextlib.suppress(ValueError):
            published = max(published, datetime.fromisoformat(eta).timestamp())
    return published


class TraceOutcomeFilter(logging.Filter):
    """Drops Celery's per-task outcome lines: the integration's one line per run says the same, with the ids."""

    def filter(self, record: logging.LogRecord) -> bool:
        from celery.app import trace

        return record.msg not in (trace.LOG_SUCCESS, trace.LOG_FAILURE, trace.LOG_RETRY)


class CeleryIntegration(Integration):
    name = "Celery"
    library = "celery"
    extra = "celery"

    def __init__(self) -> None:
        super().__init__()
        self.apps: list[Any] = []
        self.runs: dict[str, tuple[jobs.JobRun, list]] = {}
        self.state: Any = None  # observability_app.worker.WorkerState in a worker's main process
        self.server: Any = None
        self.pusher: Any = None
        self.step_class: Any = None
        self._lock = threading.Lock()

    # -- installation ------------------------------------------------------------------------------------------------

    def setup(self, app: Any = None) -> None:
        from celery import signals

        signals.before_task_publish.connect(self.before_publish, weak=False, dispatch_uid="observability.publish")
        signals.after_task_publish.connect(self.after_publish, weak=False, dispatch_uid="observability.published")
        signals.task_postrun.connect(self.postrun, weak=False, dispatch_uid="observability.postrun")
        signals.task_failure.connect(self.failure, weak=False, dispatch_uid="observability.failure")
        signals.task_retry.connect(self.retry, weak=False, dispatch_uid="observability.retry")
        signals.task_rejected.connect(self.rejected, weak=False, dispatch_uid="observability.rejected")
        signals.task_revoked.connect(self.revoked, weak=False, dispatch_uid="observability.revoked")
        signals.task_unknown.connect(self.unknown, weak=False, dispatch_uid="observability.unknown")
        signals.setup_logging.connect(self.setup_logging, weak=False, dispatch_uid="observability.logging")
        signals.celeryd_init.connect(self.worker_starting, weak=False, dispatch_uid="observability.celeryd_init")
        signals.worker_init.connect(self.worker_init, weak=False, dispatch_uid="observability.worker_init")
        signals.worker_ready.connect(self.worker_ready, weak=False, dispatch_uid="observability.worker_ready")
        signals.worker_shutdown.connect(self.worker_shutdown, weak=False, dispatch_uid="observability.shutdown")
        signals.worker_process_init.connect(self.process_init, weak=False, dispatch_uid="observability.process_init")
        signals.worker_process_shutdown.connect(
            self.process_shutdown, weak=False, dispatch_uid="observability.process_shutdown"
        )
        self.order_signal_handlers()

    def add_app(self, app: Any) -> None:
        """Configure one Celery app: no stdout redirection into logging, the heartbeat step in its consumer."""
        if app is None or any(known is app for known in self.apps):
            return
        self.apps.append(app)
        app.conf.worker_redirect_stdouts = False  # stdout is where our JSON lines go
        app.steps["consumer"].add(self._step())

    def order_signal_handlers(self) -> None:
        """(Re)connect the run handler after every other ``task_prerun`` receiver, OpenTelemetry's included.

        The instrumentation opens the run span in its own ``task_prerun`` handler; ours, connected last, sees it
        and keeps its ids for the task's line, which ``task_postrun`` writes whatever order the receivers run in.
        """
        from celery import signals

        signals.task_prerun.disconnect(dispatch_uid="observability.prerun")
        signals.task_prerun.connect(self.prerun, weak=False, dispatch_uid="observability.prerun")

    # -- publishing --------------------------------------------------------------------------------------------------

    def before_publish(self, sender: Any = None, headers: dict | None = None, **kwargs: Any) -> None:
        if not isinstance(headers, dict):
            return
        current = jobs.JobIds.current()
        given = jobs.JobIds.parse(headers.get(HEADER_CORRELATION), headers.get(HEADER_REQUEST))
        if headers.get(HEADER_CORRELATION) == given.correlation_id:  # an explicit, valid header is kept
            current = jobs.JobIds(given.correlation_id, given.request_id, current.traceparent, current.tracestate)
        headers[HEADER_CORRELATION] = current.correlation_id
        headers[HEADER_REQUEST] = current.request_id
        if current.traceparent and not headers.get("traceparent"):
            headers["traceparent"] = current.traceparent
            if current.tracestate:
                headers["tracestate"] = current.tracestate
        headers[HEADER_PUBLISHED] = time.time()

    def after_publish(self, sender: Any = None, routing_key: Any = None, exchange: Any = None, **kwargs: Any) -> None:
        job_metrics.enqueued(routing_key or exchange or DEFAULT_QUEUE, sender)

    # -- running -----------------------------------------------------------------------------------------------------

    def prerun(self, task_id: Any = None, task: Any = None, **kwargs: Any) -> None:
        if task is None or not isinstance(task_id, str):
            return
        request = task.request
        ids = jobs.JobIds.parse(
            _value(request, HEADER_CORRELATION),
            _value(request, HEADER_REQUEST),
            _value(request, "traceparent"),
            _value(request, "tracestate"),
        )
        run = jobs.JobRun(
            task.name,
            ids,
            attempt=jobs.safe_attempt(getattr(request, "retries", 0)) + 1,
            queue=_queue_of(getattr(request, "delivery_info", None)),
            source="worker",
            published_at=_published_at(_value(request, HEADER_PUBLISHED), _value(request, "eta")),
        )
        run.start()
        with self._lock:
            # [outcome, exception, trace ids of the run span]
            self.runs[task_id] = (run, ["success", None, _trace_ids()])

    def retry(self, request: Any = None, reason: Any = None, **kwargs: Any) -> None:
        entry = self.runs.get(getattr(request, "id", None))
        if entry is not None:
            entry[1][0] = "retry"
            entry[1][1] = getattr(reason, "exc", None) or (reason if isinstance(reason, BaseException) else None)

    def failure(self, task_id: Any = None, exception: Any = None, sender: Any = None, **kwargs: Any) -> None:
        entry = self.runs.get(task_id)
        if entry is not None:
            entry[1][0] = "error"
            entry[1][1] = exception if isinstance(exception, BaseException) else None
        if sender is not None and _retries_exhausted(sender, exception):
            job_metrics.dead_lettered(
                _queue_of(getattr(sender.request, "delivery_info", None)), sender.name, "max_retries"
            )

    def postrun(self, task_id: Any = None, state: Any = None, **kwargs: Any) -> None:
        with self._lock:
            entry = self.runs.pop(task_id, None)
        if entry is None:
            return
        run, (outcome, exc, trace_ids) = entry
        if state == "RETRY":
            outcome = "retry"
        elif state == "FAILURE":
            outcome = "error"
        if trace_ids[0] and run.ctx is not None and not _trace_ids()[0]:
            run.ctx.trace_id, run.ctx.span_id = trace_ids  # the run span has already ended
        run.finish(outcome, exc)

    def rejected(self, message: Any = None, **kwargs: Any) -> None:
        headers = getattr(message, "headers", None) or {}
        job_metrics.dead_lettered(_queue_of(getattr(message, "delivery_info", None)), headers.get("task"), "rejected")

    def revoked(self, request: Any = None, expired: bool = False, sender: Any = None, **kwargs: Any) -> None:
        # The sender is the task; ``request`` is the message's Context, whose ``task`` is the name.
        name = getattr(sender, "name", None) or getattr(request, "task", None) or getattr(request, "name", None)
        job_metrics.dead_lettered(
            _queue_of(getattr(request, "delivery_info", None)), name, "expired" if expired else "revoked"
        )
        with self._lock:
            entry = self.runs.pop(getattr(request, "id", None), None)
        if entry is not None:
            entry[0].finish("error")

    def unknown(self, message: Any = None, name: Any = None, **kwargs: Any) -> None:
        job_metrics.dead_lettered(_queue_of(getattr(message, "delivery_info", None)), name, "rejected")

    # -- logging -----------------------------------------------------------------------------------------------------

    def setup_logging(self, **kwargs: Any) -> None:
        """Answer Celery's ``setup_logging``: the project's ``LOGGING`` (JSON lines), not Celery's formats."""
        import logging.config

        from django.conf import settings as django_settings

        from ..logging import logging_config

        config = getattr(django_settings, "LOGGING", None) or logging_config()
        logging.config.dictConfig(config)
        logging.captureWarnings(True)  # Celery's start-up warnings (running as root, ...) become JSON lines too
        trace_logger = logging.getLogger("celery.app.trace")
        if not any(isinstance(existing, TraceOutcomeFilter) for existing in trace_logger.filters):
            trace_logger.addFilter(TraceOutcomeFilter())

    # -- the worker's main process -----------------------------------------------------------------------------------

    def worker_starting(self, **kwargs: Any) -> None:
        """The worker's first signal: warnings Celery gives before it sets logging up are logged (as JSON) too."""
        logging.captureWarnings(True)

    def worker_init(self, sender: Any = None, **kwargs: Any) -> None:
        """Before the pool forks: a clean multi-process directory, the state, the port and the pusher."""
        from .. import worker
        from ..metrics import multiprocess

        path = multiprocess.directory()
        if path:
            _remove_stale_files(path)
        self.state = worker.WorkerState()
        app = getattr(sender, "app", None)
        collectors = [BrokerCollector(self, app)] if app is not None else []
        port = worker.port_setting(settings.WORKER_METRICS_PORT)
        if port is not None:
            self.server = worker.WorkerServer(
                lambda: self.state, collectors, str(settings.WORKER_METRICS_ADDRESS), port
            ).start()
            logger.info("worker metrics and probes on port %s", self.server.port, extra={"port": self.server.port})
        if settings.WORKER_PUSHGATEWAY_URL:
            instance = getattr(sender, "hostname", None) or self.state.hostname
            self.pusher = worker.Pusher(
                str(settings.WORKER_PUSHGATEWAY_URL),
                f"{settings.SERVICE_NAME}-worker",
                str(instance),
                worker.seconds_setting("WORKER_PUSH_INTERVAL"),
                collectors,
            ).start()

    def worker_ready(self, sender: Any = None, **kwargs: Any) -> None:
        if self.state is not None:
            self.state.ready = True
            self.beat(sender if hasattr(sender, "task_consumer") else None)  # the sender is the consumer

    def beat(self, consumer: Any = None) -> None:
        """One heartbeat from the consumer loop: queues, broker connection, time; state file and gauge."""
        if self.state is None:
            return
        if consumer is not None:
            task_consumer = getattr(consumer, "task_consumer", None)
            queues = getattr(task_consumer, "queues", None) or []
            self.state.queues = sorted({str(queue.name) for queue in queues if getattr(queue, "name", None)})
            connection = getattr(consumer, "connection", None)
            self.state.broker_connected = bool(connection is not None and connection.connected)
            if self.state.broker_connected:
                self.state.disconnected_at = 0.0
        self.state.heartbeat = time.time()
        job_metrics.heartbeat(self.state.heartbeat)
        self._write_state()

    def disconnected(self) -> None:
        """The consumer stopped its steps to reconnect (or to shut down): not ready; live while it reconnects."""
        if self.state is None:
            return
        self.state.broker_connected = False
        self.state.disconnected_at = time.time()
        self._write_state()  # the exec probe must see it now, not at the next beat (none comes until reconnected)

    def _write_state(self) -> None:
        from .. import worker

        try:
            worker.write_state(self.state)
        except OSError as exc:
            logger.warning("worker state file %s cannot be written (%s)", worker.state_file(), exc.strerror)

    def worker_shutdown(self, **kwargs: Any) -> None:
        if self.pusher is not None:
            self.pusher.stop()
            self.pusher = None
        if self.server is not None:
            self.server.stop()
            self.server = None
        if self.state is not None:
            self.state.ready = False
            self.state.heartbeat = 0.0
            self._write_state()

    def process_init(self, **kwargs: Any) -> None:
        """A prefork child starts: its metric files are made now, not at its first task, so the worker's scrape
        counts it from the start (``process_workers``, its memory and CPU in ``process_*``)."""
        from ..metrics import multiprocess

        if multiprocess.directory():
            job_metrics.process_started()

    def process_shutdown(self, pid: Any = None, **kwargs: Any) -> None:
        """A prefork child exits: fold its counters into the archive, drop its live gauges."""
        from ..metrics import multiprocess

        if multiprocess.directory():
            with contextlib.suppress(OSError):
                multiprocess.mark_process_dead(os.getpid())

    def _step(self) -> Any:
        if self.step_class is not None:
            return self.step_class
        from celery import bootsteps

        integration = self

        class ObservabilityHeartbeat(bootsteps.StartStopStep):
            """Beats from the consumer's own timer: a stuck consumer loop stops the heartbeat (liveness fails)."""

            requires = {"celery.worker.consumer.tasks:Tasks"}

            def __init__(self, parent: Any, **kwargs: Any) -> None:
                super().__init__(parent, **kwargs)
                self.timer_ref: Any = None

            def start(self, consumer: Any) -> None:
                from .. import worker

                integration.beat(consumer)
                interval = worker.seconds_setting("WORKER_HEARTBEAT_INTERVAL")
                self.timer_ref = consumer.timer.call_repeatedly(interval, integration.beat, (consumer,))

            def stop(self, consumer: Any) -> None:
                """The consumer restarts its steps (broker connection lost) or shuts down."""
                if self.timer_ref is not None:
                    self.timer_ref.cancel()
                    self.timer_ref = None
                integration.disconnected()

            shutdown = stop

        self.step_class = ObservabilityHeartbeat
        return ObservabilityHeartbeat


def _remove_stale_files(path: str) -> None:
    """Metric files of a previous run of this worker (dead pids, archives): this process and its pool start afresh.

    The files of live processes stay: this process has created its own already (Django's set-up runs first).
    """
    import glob

    for name in glob.glob(os.path.join(path, "*.db")):
        tail = os.path.basename(name)[:-3].rsplit("_", 1)[-1]
        stale = tail == "archive" or (tail.isdigit() and not os.path.exists(f"/proc/{tail}"))
        if stale:
            with contextlib.suppress(FileNotFoundError):
                os.remove(name)


def _trace_ids() -> tuple[str, str]:
    from .. import tracing

    return tracing.current_trace_ids() if tracing.active() else ("", "")


def _retries_exhausted(task: Any, exception: Any) -> bool:
    """A failure that ends a task which retried until its ``max_retries``: given up for good."""
    from celery.exceptions import MaxRetriesExceededError

    if isinstance(exception, MaxRetriesExceededError):
        return True
    max_retries = getattr(task, "max_retries", None)
    retries = getattr(task.request, "retries", 0) or 0
    return isinstance(max_retries, int) and max_retries > 0 and retries >= max_retries


class BrokerCollector:
    """``jobs_queue_backlog{queue}`` and, on Redis, ``jobs_queue_oldest_age_seconds{queue}``, read at scrape time.

    The depth comes from a passive ``queue_declare`` (RabbitMQ's message count; kombu's Redis transport sums the
    priority lists); the oldest message's age from the tail of the Redis list (its ``x_published_at`` header), 0 for
    an empty Redis queue.
    A broker that does not answer within a second leaves the families empty (never a hung scrape).
    """

    def __init__(self, integration: CeleryIntegration, app: Any) -> None:
        self.integration = integration
        self.app = app

    def queues(self) -> list[str]:
        configured = settings.WORKER_BACKLOG_QUEUES
        if isinstance(configured, str):  # OBSERVABILITY_WORKER_BACKLOG_QUEUES=scans,celery
            configured = [name.strip() for name in configured.split(",") if name.strip()]
        if isinstance(configured, list | tuple) and configured:
            return [str(name) for name in configured][:100]
        state = self.integration.state
        return list(state.queues) if state is not None and state.queues else [DEFAULT_QUEUE]

    def collect(self) -> Any:
        from prometheus_client.core import GaugeMetricFamily

        backlog = GaugeMetricFamily("jobs_queue_backlog", "Messages waiting in the broker queue.", labels=["queue"])
        oldest = GaugeMetricFamily(
            "jobs_queue_oldest_age_seconds",
            "Age of the oldest message waiting in the queue (Redis brokers).",
            labels=["queue"],
        )
        try:
            for name, depth, age in self.read():
                backlog.add_metric([job_metrics.label(name)], float(depth))
                if age is not None:
                    oldest.add_metric([job_metrics.label(name)], max(age, 0.0))
        except Exception as exc:  # an unreachable broker must not fail the scrape
            logger.warning("worker metrics: broker backlog unreadable (%s: %s)", type(exc).__name__, exc)
        yield backlog
        yield oldest

    def read(self) -> list[tuple[str, int, float | None]]:
        import json

        found = []
        with self.app.connection_for_read(connect_timeout=1.0, transport_options={"socket_timeout": 1.0}) as conn:
            conn.ensure_connection(max_retries=1, timeout=1.0)
            channel = conn.default_channel
            client = getattr(channel, "client", None) if conn.transport_cls in ("redis", "rediss") else None
            for name in self.queues():
                try:
                    _, depth, _ = channel.queue_declare(queue=name, passive=True)
                except Exception:  # the queue does not exist (yet): nothing waits in it
                    depth = 0
                # On Redis an empty queue's oldest message is 0 s old (a series at 0, not a missing one: the
                # backlog panel and JobBacklogOverSLA read it); elsewhere the age is unknown and left out.
                age = None if client is None else 0.0
                if client is not None and depth:
                    age = None  # unknown unless the tail message says when it was published
                    tail = client.lindex(name, -1)
                    with contextlib.suppress(ValueError, TypeError, AttributeError):
                        published = json.loads(tail)["headers"].get(HEADER_PUBLISHED)
                        if isinstance(published, int | float) and not isinstance(published, bool):
                            age = time.time() - float(published)
                found.append((name, int(depth), age))
        return found


_integration = CeleryIntegration()


def install(app: Any = None) -> CeleryIntegration:
    """Wire the integration (idempotent); ``app`` is the project's Celery app. Needs the ``[celery]`` extra.

    The job metrics are declared here (so every scrape of a process that can publish or run tasks lists them);
    ``PROMETHEUS_MULTIPROC_DIR`` is created first when it is set but missing.
    """
    _integration.install()
    if job_metrics.enabled():
        from ..metrics import multiprocess

        path = multiprocess.directory()
        if path:
            os.makedirs(path, exist_ok=True)
        job_metrics.families()
    _integration.add_app(app)
    return _integration


def order_signal_handlers() -> None:
    """Called by :mod:`observability_app.tracing` after it installed the Celery instrumentation."""
    if _integration.installed:
        _integration.order_signal_handlers()


def integration() -> CeleryIntegration:
    return _integration
