"""The Celery integration end to end: the example API under gunicorn publishes to the local Redis, a real prefork
worker runs the tasks (no eager mode), and the worker's log lines, audit events, metrics port and probes are read.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import subprocess
import sys
import time

import pytest

from tests import servers
from tests.celery_worker import BROKER_URL, CeleryWorker
from tests.prometheus import PrometheusServer
from tests.servers import GunicornServer, free_port, http, parse, require_tool, series, total

server_database = servers.server_database
_migrated_sqlite = servers._migrated_sqlite

TASK = "bucket.scan_artifact"
WEB_ENV = {"EXAMPLE_SCAN_ON_UPLOAD": "1", "EXAMPLE_FAULT_INJECTION": "1"}
TRACING_ENV = {"OBSERVABILITY_TRACING_ENABLED": "1", "OBSERVABILITY_TRACE_EXPORTER": "none"}


def _put(server: GunicornServer, path: str, body: bytes, **headers: str) -> servers.Response:
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    return http(server.url(path), method="PUT", data=body, headers={"X-Content-Digest": digest, **headers})


def _traceparent(index: int) -> tuple[str, str]:
    trace_id = hashlib.sha256(f"trace-{index}-{time.time()}".encode()).hexdigest()[:32]
    return trace_id, f"00-{trace_id}-{'ab' * 8}-01"


@pytest.fixture
def stack(server_database, tmp_path):
    """The API (1 gunicorn worker) and a Celery worker on the same database and the local Redis, tracing on."""
    broker = {"CELERY_BROKER_URL": BROKER_URL}
    worker = CeleryWorker(server_database.url, tmp_path / "worker", env=TRACING_ENV).start()
    try:
        web = GunicornServer(server_database.url, tmp_path / "web", workers=1, env={**WEB_ENV, **TRACING_ENV, **broker})
        with web:
            yield web, worker, server_database
    finally:
        worker.stop()


@pytest.mark.gunicorn
def test_ids_and_trace_follow_the_upload_into_the_worker_across_retries(stack):
    web, worker, database = stack
    uploads = {}
    for retries in (0, 1, 2):
        trace_id, traceparent = _traceparent(retries)
        answer = _put(
            web,
            f"/api/v1/buckets/jobs/artifacts/model/{retries}",
            b"weights %d" % retries,
            **{"X-Correlation-Id": "abc", "X-Simulate-Transient-Failures": str(retries), "traceparent": traceparent},
        )
        assert answer.status == 201, answer.body
        uploads[retries] = (answer.headers["X-Request-Id"], trace_id)

    def recorded():
        rows = database.query(
            "SELECT subject, correlation_id, request_id, trace_id, source FROM observability_audit_event"
            " WHERE event_type = %s",
            ("SAFETY_DECISION_RECORDED",),
        )
        return rows if len(rows) == 3 else None

    rows = worker.wait_for(recorded, what="three SAFETY_DECISION_RECORDED events")
    by_subject = {row[0]: row[1:] for row in rows}
    for retries, (request_id, trace_id) in uploads.items():
        assert by_subject[f"jobs/model@{retries}"] == ("abc", request_id, trace_id, "worker")

    lines = worker.wait_for(lambda: len(worker.job_lines()) >= 6 and worker.job_lines(), what="six task lines")
    for retries, (request_id, trace_id) in uploads.items():
        runs = [line for line in lines if line["request_id"] == request_id]
        assert [line["outcome"] for line in runs] == ["retry"] * retries + ["success"], runs
        assert [line["attempt"] for line in runs] == list(range(1, retries + 2))
        for line in runs:
            assert line["correlation_id"] == "abc" and line["trace_id"] == trace_id and line["source"] == "worker"
            assert line["task"] == TASK and line["queue"] == "scans" and line["duration_ms"] >= 0
    # Every other line the task wrote carries the ids too (the example's own warning on each retry).
    warnings = [line for line in worker.lines() if line["logger"] == "example_project.bucket.tasks"]
    assert len(warnings) == 3 and all(line["correlation_id"] == "abc" for line in warnings)
    # The request's own access line is in the same trace.
    access = [json.loads(line) for line in web.output().splitlines() if '"observability_app.access"' in line]
    assert {line["trace_id"] for line in access if line["method"] == "PUT"} == {trace for _, trace in uploads.values()}
    # Celery's own per-task outcome lines are gone (the integration's line says it), and nothing is in the payload.
    assert not [line for line in worker.lines() if "succeeded in" in line["message"]]


@pytest.mark.gunicorn
def test_chained_and_nested_tasks_keep_the_ids_and_expired_or_unknown_ones_are_dead_lettered(server_database, tmp_path):
    """A chain published under a request's context, whose last task publishes another from inside its run: every
    run has the request's correlation id, request id and trace. An expired message and an unknown task never run
    and are counted dead-lettered."""
    from datetime import UTC, datetime, timedelta

    from celery import Celery

    from observability_app import context

    trace_id, traceparent = _traceparent(7)
    client = Celery("tests-client", broker=BROKER_URL)  # the test process publishes, as a web process would
    worker = CeleryWorker(server_database.url, tmp_path / "worker", env=TRACING_ENV, include="tests.celery_tasks")
    try:
        with worker, context.bound(correlation_id="chain-abc", request_id="req-chain", source="api"):
            steps = [client.signature(name, queue="celery") for name in ("tests.double", "tests.publish_nested")]
            chain = client.signature("tests.add_one", args=(1,), queue="celery") | steps[0] | steps[1]
            chain.apply_async(headers={"traceparent": traceparent})
            lines = worker.wait_for(lambda: len(worker.job_lines()) >= 4 and worker.job_lines(), what="four runs")
            assert sorted(line["task"] for line in lines) == [
                "tests.add_one",
                "tests.double",
                "tests.double",
                "tests.publish_nested",
            ]
            for line in lines:
                assert (line["correlation_id"], line["request_id"], line["trace_id"]) == (
                    "chain-abc",
                    "req-chain",
                    trace_id,
                ), line
                assert line["outcome"] == "success" and line["source"] == "worker" and line["attempt"] == 1
            (own,) = [line for line in worker.lines() if line["logger"] == "tests.celery_tasks"]
            assert own["correlation_id"] == "chain-abc" and own["trace_id"] == trace_id

            client.send_task("tests.add_one", (1,), queue="celery", expires=datetime.now(UTC) - timedelta(minutes=1))
            client.send_task("tests.no_such_task", queue="celery")
            dead = "jobs_dead_lettered_total"
            worker.wait_for(
                lambda: (
                    (found := parse(http(worker.url("/metrics")).body.decode()))
                    and total(found, dead, task="tests.add_one", reason="expired", queue="celery") == 1
                    and total(found, dead, task="tests.no_such_task", reason="rejected") == 1
                ),
                what="the expired message and the unknown task to be counted dead-lettered",
            )
            assert len(worker.job_lines()) == 4  # neither ran
    finally:
        client.close()


@pytest.mark.gunicorn
def test_a_task_that_exhausts_its_retries_is_dead_lettered(stack):
    web, worker, database = stack
    answer = _put(web, "/api/v1/buckets/jobs/artifacts/doomed/1", b"doomed", **{"X-Simulate-Transient-Failures": "9"})
    assert answer.status == 201

    def given_up():
        samples = parse(http(worker.url("/metrics")).body.decode())
        dead = total(samples, "jobs_dead_lettered_total", task=TASK, reason="max_retries")
        return samples if dead == 1 else None

    samples = worker.wait_for(given_up, what="jobs_dead_lettered_total to count the task")
    assert total(samples, "jobs_retried_total", task=TASK, queue="scans") == 3
    assert total(samples, "jobs_failed_total", task=TASK, queue="scans") == 1
    assert total(samples, "jobs_succeeded_total", task=TASK) == 0
    assert total(samples, "jobs_duration_seconds_count", task=TASK, outcome="retry") == 3
    outcomes = [line["outcome"] for line in worker.job_lines()]
    assert outcomes == ["retry", "retry", "retry", "error"]
    error = worker.job_lines()[-1]
    assert error["error.type"] == "TransientError" and error["level"] == "ERROR" and error["attempt"] == 4
    assert not database.query(
        "SELECT 1 FROM observability_audit_event WHERE event_type = %s", ("SAFETY_DECISION_RECORDED",)
    )


@pytest.mark.prometheus
@pytest.mark.gunicorn
def test_prometheus_scrapes_the_worker_port_and_promtool_accepts_it(stack, tmp_path):
    promtool = require_tool("/usr/bin/promtool")
    web, worker, _database = stack
    jobs = f"""\
  - job_name: artifact-service-worker
    static_configs:
      - targets: ["127.0.0.1:{worker.port}"]
"""
    with PrometheusServer(tmp_path / "prometheus", jobs) as prometheus:
        value = prometheus.value
        worker.wait_for(lambda: value('up{job="artifact-service-worker"}') == 1, what="Prometheus scraping the worker")
        for index in range(3):
            assert _put(web, f"/api/v1/buckets/prom/artifacts/m/{index}", b"m%d" % index).status == 201
        # What Prometheus must end up seeing once the three runs are over, read together from its latest scrape:
        # a scrape that timed out on a loaded machine marks the series stale for a moment, so the state is waited
        # for (each value is final once the runs are done), never taken from one query.
        expected = {
            f'sum(jobs_succeeded_total{{job="artifact-service-worker",task="{TASK}"}})': 3,
            f'sum(jobs_started_total{{task="{TASK}",queue="scans"}})': 3,
            'sum(jobs_active{job="artifact-service-worker"})': 0,
            f'sum(jobs_queue_wait_seconds_count{{task="{TASK}"}})': 3,
            'jobs_queue_backlog{queue="scans"}': 0,
            # The main process and both prefork children, each child counted from its start (worker_process_init),
            # whether or not it ran one of the three: their runs are added up in the main process's exposition.
            'process_workers{job="artifact-service-worker"}': 1 + worker.concurrency,
        }
        seen: dict[str, float | None] = {}

        def settled() -> bool:
            seen.update({expression: value(expression) for expression in expected})
            return seen == expected

        worker.wait_for(settled, what=lambda: f"Prometheus seeing {expected} (last seen: {seen})")
        heartbeat = value("jobs_worker_heartbeat_timestamp_seconds")
        assert heartbeat is not None and abs(heartbeat - time.time()) < 30
    body = http(worker.url("/metrics")).body
    checked = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=60, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # On the API side the publications were counted.
    web_samples = parse(http(web.url("/metrics")).body.decode())
    assert total(web_samples, "jobs_enqueued_total", task=TASK, queue="scans") == 3


@pytest.mark.prometheus
@pytest.mark.gunicorn
def test_a_worker_pushes_to_a_real_pushgateway_when_pull_is_blocked(server_database, tmp_path):
    """WORKER_PUSHGATEWAY_URL alone: the worker PUTs its exposition to a real Pushgateway (which refuses what is not
    valid exposition), grouped by job and instance, and the job counters move there as tasks run."""
    from celery import Celery

    binary = require_tool("/usr/bin/prometheus-pushgateway")
    port = free_port()
    log = (tmp_path / "pushgateway.log").open("wb")
    gateway = subprocess.Popen(
        # in memory only (the package's default file would keep other runs' groups), info: its consistency warnings
        [binary, f"--web.listen-address=127.0.0.1:{port}", "--persistence.file=", "--log.level=info"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    client = Celery("tests-client", broker=BROKER_URL)
    env = {"OBSERVABILITY_WORKER_PUSHGATEWAY_URL": base, "OBSERVABILITY_WORKER_PUSH_INTERVAL": "0.5"}
    worker = CeleryWorker(server_database.url, tmp_path / "worker", env=env, include="tests.celery_tasks")
    try:
        with worker:
            for _ in range(2):
                client.send_task("tests.add_one", (1,), queue="celery")

            def pushed():
                with contextlib.suppress(OSError):
                    samples = parse(http(f"{base}/metrics").body.decode())
                    if total(samples, "jobs_succeeded_total", task="tests.add_one", job="artifact-bucket-worker") == 2:
                        return samples
                return None

            samples = worker.wait_for(pushed, what="two succeeded runs at the Pushgateway")
            (group,) = series(samples, "push_time_seconds")
            assert group["job"] == "artifact-bucket-worker"
            assert group["instance"].startswith("test-") and "@" in group["instance"]  # the worker's node name
            assert total(samples, "push_failure_time_seconds") == 0
            assert total(samples, "jobs_worker_heartbeat_timestamp_seconds", job="artifact-bucket-worker") > 0
            # The worker's process_* stay on its port: the gateway's own process_* are the only ones it serves.
            assert not [labels for labels in series(samples, "process_open_fds") if labels.get("job")]
    finally:
        client.close()
        gateway.terminate()
        gateway.wait(timeout=30)
        log.close()
    said = (tmp_path / "pushgateway.log").read_text(errors="replace")
    assert "inconsistent" not in said and "level=error" not in said, said[-3000:]


@pytest.mark.gunicorn
def test_backlog_depth_and_age_of_a_queue_waiting_for_a_worker(server_database, tmp_path):
    """Scans published while no worker consumes their queue wait in Redis: depth and age are reported, and the
    time they waited is observed once a worker takes them."""
    from tests.celery_worker import redis_command, require_redis

    require_redis()
    redis_command("FLUSHDB")
    broker = {"CELERY_BROKER_URL": BROKER_URL}
    with GunicornServer(server_database.url, tmp_path / "web", workers=1, env={**WEB_ENV, **broker}) as web:
        for index in range(4):
            assert _put(web, f"/api/v1/buckets/backlog/artifacts/m/{index}", b"b%d" % index).status == 201
    assert redis_command("LLEN", "scans") == ":4"
    watcher = CeleryWorker(
        server_database.url,
        tmp_path / "watcher",
        env={"OBSERVABILITY_WORKER_BACKLOG_QUEUES": "scans,celery"},
        queues="celery",  # consumes the other queue only: the scans stay waiting
        flush=False,
    )
    with watcher:
        time.sleep(1.0)
        samples = parse(http(watcher.url("/metrics")).body.decode())
        assert samples[("jobs_queue_backlog", (("queue", "scans"),))] == 4
        assert samples[("jobs_queue_backlog", (("queue", "celery"),))] == 0
        assert samples[("jobs_queue_oldest_age_seconds", (("queue", "scans"),))] >= 1.0
        with CeleryWorker(server_database.url, tmp_path / "worker", flush=False) as worker:
            samples = worker.wait_for(
                lambda: (
                    (found := parse(http(worker.url("/metrics")).body.decode()))
                    and total(found, "jobs_succeeded_total", task=TASK) == 4
                    and found
                ),
                what="the four waiting scans to run",
            )
            assert total(samples, "jobs_queue_wait_seconds_sum", task=TASK) >= 4 * 1.0
        watched = parse(http(watcher.url("/metrics")).body.decode())
        assert watched[("jobs_queue_backlog", (("queue", "scans"),))] == 0


@pytest.mark.gunicorn
def test_backlog_depth_of_queues_on_a_rabbitmq_broker(server_database, tmp_path):
    """The same worker on RabbitMQ: ready, and the depth of a queue nobody consumes is RabbitMQ's message count."""
    import uuid

    from celery import Celery

    from tests.celery_worker import QUEUE_PREFIX, require_rabbitmq

    url = require_rabbitmq()
    prefix = f"{QUEUE_PREFIX}-{uuid.uuid4().hex[:8]}"
    waiting, consumed = f"{prefix}-waiting", f"{prefix}-consumed"
    client = Celery("tests-client", broker=url)
    worker = CeleryWorker(
        server_database.url,
        tmp_path / "worker",
        broker_url=url,
        queues=consumed,
        flush=False,
        env={"OBSERVABILITY_WORKER_BACKLOG_QUEUES": f"{waiting},{consumed}"},
    )
    try:
        with worker:
            assert http(worker.url("/health/ready")).json()["checks"]["queues"]["queues"] == [consumed]
            for index in range(3):
                client.send_task(TASK, ("rabbit", "m", str(index)), queue=waiting)

            def depths():
                samples = parse(http(worker.url("/metrics")).body.decode())
                found = {name: samples.get(("jobs_queue_backlog", (("queue", name),))) for name in (waiting, consumed)}
                return found if found == {waiting: 3, consumed: 0} else None

            worker.wait_for(depths, what="the RabbitMQ queue depths on the worker's port")
            samples = parse(http(worker.url("/metrics")).body.decode())
            assert not [key for key in samples if key[0] == "jobs_queue_oldest_age_seconds"]  # Redis only
            assert len(worker.job_lines()) == 0
    finally:
        with client.connection_for_write() as connection:
            channel = connection.default_channel
            for name in (waiting, consumed):
                channel.queue_delete(name)
                channel.exchange_delete(name)
        client.close()


@pytest.mark.gunicorn
def test_worker_probes_on_its_port_and_as_a_command(server_database, tmp_path):
    command = [sys.executable, "manage.py", "worker_probe"]
    with CeleryWorker(server_database.url, tmp_path / "worker") as worker:
        env = worker.environment()
        live = http(worker.url("/health/live"))
        ready = http(worker.url("/health/ready"))
        assert live.status == 200 and ready.status == 200
        body = ready.json()
        assert body["status"] == "pass" and set(body["checks"]) == {"heartbeat", "broker", "queues"}
        assert body["checks"]["queues"]["queues"] == ["celery", "scans"]
        for probe in ("live", "ready"):
            done = subprocess.run([*command, probe], cwd=servers.ROOT, env=env, capture_output=True, timeout=60)
            assert done.returncode == 0, done.stdout + done.stderr
            assert json.loads(done.stdout)["status"] == "pass"
        assert http(worker.url("/nothing")).status == 404
        # No task has run: the pool's children are on the port all the same, each from its own start.
        worker.wait_for(
            lambda: total(parse(http(worker.url("/metrics")).body.decode()), "process_workers") == 3,
            what="process_workers to count the main process and both idle prefork children",
        )
    # Stopped: the state says so, both probes fail.
    done = subprocess.run([*command, "live"], cwd=servers.ROOT, env=env, capture_output=True, timeout=60)
    assert done.returncode == 1 and json.loads(done.stdout)["status"] == "fail"
    bad = subprocess.run([*command, "ready", "--max-age", "-3"], cwd=servers.ROOT, env=env, capture_output=True)
    assert bad.returncode == 2 and b"--max-age" in bad.stderr
    worker.state_file.write_bytes(b"\xff" * 10)
    done = subprocess.run([*command, "ready"], cwd=servers.ROOT, env=env, capture_output=True, timeout=60)
    assert done.returncode == 1 and b"UTF-8" in done.stdout


@pytest.mark.gunicorn
def test_a_broker_outage_makes_the_worker_unready_not_dead(server_database, tmp_path):
    """The broker goes away: readiness fails at once (port and exec probe alike), liveness holds past the heartbeat's
    max age while the consumer reconnects, and the worker is ready again once the broker is back."""
    from tests.celery_worker import PrivateRedis

    command = [sys.executable, "manage.py", "worker_probe"]
    with PrivateRedis() as redis:
        env = {"OBSERVABILITY_WORKER_HEARTBEAT_MAX_AGE": "2"}
        with CeleryWorker(server_database.url, tmp_path / "worker", env=env, flush=False, broker_url=redis.url) as w:
            probe_env = w.environment()

            def probes() -> tuple[int, int, int, int]:
                live, ready = (http(w.url(f"/health/{kind}"), timeout=5).status for kind in ("live", "ready"))
                exec_live, exec_ready = (
                    subprocess.run([*command, kind], cwd=servers.ROOT, env=probe_env, capture_output=True).returncode
                    for kind in ("live", "ready")
                )
                return live, ready, exec_live, exec_ready

            assert probes() == (200, 200, 0, 0)
            redis.stop()
            w.wait_for(lambda: probes() == (200, 503, 0, 1), what="readiness to fail with the broker gone")
            body = http(w.url("/health/ready")).json()
            assert body["checks"]["broker"] == {
                "status": "fail",
                "reason": "reconnecting to the broker",
                "disconnected_seconds": body["checks"]["broker"]["disconnected_seconds"],
            }
            # Past the heartbeat's max age (2 s) with no beat: still live, still not ready.
            w.wait_for(
                lambda: http(w.url("/health/live")).json()["checks"]["heartbeat"]["age_seconds"] > 4,
                what="the heartbeat to age past its max age",
            )
            assert probes() == (200, 503, 0, 1)
            redis.start()
            w.wait_for(lambda: probes() == (200, 200, 0, 0), timeout=90, what="the worker to be ready again")
