"""The Celery integration's added cost per task run and per publish, against the same work without it, same run.

Run: ``python -m benchmarks.jobs`` (``--runs N``, ``--rounds N``).

Per run: the same no-op task goes through Celery's own tracer (``task.apply()``: prerun, the task, postrun, the
state bookkeeping), once with the integration's signal handlers connected (ids bound from headers, one JSON line
to a file, the job metrics) and once with them disconnected. Per publish: ``before_task_publish`` and
``after_task_publish`` handlers on a headers dict under a bound request context, against an empty handler call.
Rounds alternate between the two so that drift on a shared machine hits both alike; the median round is reported.

No pass/fail target: the figure is reported (docs/performance.md). Most of the added cost is the task's JSON line
itself (formatting and writing it), the rest the context binding and the job metrics.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time

HANDLERS = ("prerun", "postrun", "failure", "retry")


def setup(directory: str) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")
    os.environ["EXAMPLE_VAR_DIR"] = directory
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    import django

    django.setup()
    from observability_app.logging import ContextFilter, JsonFormatter

    handler = logging.FileHandler(os.path.join(directory, "jobs.log"))
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    jobs_logger = logging.getLogger("observability_app.jobs")
    jobs_logger.handlers[:] = [handler]
    jobs_logger.propagate = False
    jobs_logger.setLevel(logging.INFO)
    logging.getLogger("celery").setLevel(logging.WARNING)


def connect(on: bool) -> None:
    from celery import signals

    from observability_app.integrations.celery import integration

    found = integration()
    pairs = {
        "prerun": (signals.task_prerun, found.prerun),
        "postrun": (signals.task_postrun, found.postrun),
        "failure": (signals.task_failure, found.failure),
        "retry": (signals.task_retry, found.retry),
    }
    for name, (signal, handler) in pairs.items():
        signal.disconnect(dispatch_uid=f"observability.{name}")
        if on:
            signal.connect(handler, weak=False, dispatch_uid=f"observability.{name}")


def time_runs(task, runs: int) -> float:
    """Seconds per run of ``task.apply()``."""
    headers = {"x_correlation_id": "bench-correlation", "x_request_id": "bench-request", "x_published_at": time.time()}
    started = time.perf_counter()
    for _ in range(runs):
        task.apply(headers=headers)
    return (time.perf_counter() - started) / runs


def time_publishes(runs: int, on: bool) -> float:
    from observability_app.context import bound
    from observability_app.integrations.celery import integration

    found = integration()

    def nothing(**kwargs):
        return None

    before = found.before_publish if on else nothing
    after = found.after_publish if on else nothing
    with bound(correlation_id="bench-correlation", request_id="bench-request", source="api"):
        started = time.perf_counter()
        for _ in range(runs):
            headers: dict = {"lang": "py", "task": "bench.noop", "id": "x"}
            before(sender="bench.noop", headers=headers, body=((), {}, {}))
            after(sender="bench.noop", routing_key="scans", exchange="", headers=headers)
        return (time.perf_counter() - started) / runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    if args.runs < 1 or args.rounds < 1:
        parser.error("--runs and --rounds must be at least 1")
    with tempfile.TemporaryDirectory(prefix="bench-jobs-") as directory:
        setup(directory)
        from example_project.celery import app

        @app.task(name="bench.noop")
        def noop() -> int:
            return 1

        for on in (True, False):  # warm both paths (imports, metric children)
            connect(on)
            time_runs(noop, 200)
        bare, ours, bare_pub, ours_pub = [], [], [], []
        for _ in range(args.rounds):
            connect(False)
            bare.append(time_runs(noop, args.runs))
            bare_pub.append(time_publishes(args.runs, on=False))
            connect(True)
            ours.append(time_runs(noop, args.runs))
            ours_pub.append(time_publishes(args.runs, on=True))
        with open(os.path.join(directory, "jobs.log"), encoding="utf-8") as written:
            lines = sum(1 for _ in written)
    connect(True)
    run_bare, run_ours = statistics.median(bare) * 1e6, statistics.median(ours) * 1e6
    pub_bare, pub_ours = statistics.median(bare_pub) * 1e6, statistics.median(ours_pub) * 1e6
    added = run_ours - run_bare
    print(f"task run, Celery alone:        {run_bare:8.1f} us")
    ratio = run_ours / run_bare
    print(f"task run, with the integration: {run_ours:8.1f} us   added {added:6.1f} us  ratio {ratio:.2f}")
    print(f"publish handlers:               {pub_ours - pub_bare:8.1f} us added per published task")
    print(f"job lines written: {lines} (expected {args.rounds * args.runs + 200})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
