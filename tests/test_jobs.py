"""Correlation carried into background jobs, kept across retries; one log line per run."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from observability_app import audit, jobs
from observability_app.audit.models import AuditEvent
from observability_app.context import bound, current

from .logcapture import capture_logs
from .test_example_api import URL, put


def test_carry_and_restore_the_ids():
    with bound(correlation_id="corr-9", request_id="req-9"):
        payload = jobs.carry({"x": 1})
    assert payload["x"] == 1 and payload["_observability"]["correlation_id"] == "corr-9"
    with jobs.job_context("demo", payload) as ctx:
        assert current() is ctx
        assert (ctx.correlation_id, ctx.request_id, ctx.source) == ("corr-9", "req-9", "job")
    assert current() is None


def test_retries_keep_the_ids_and_log_one_line_per_attempt():
    seen = []

    def flaky(payload):
        ctx = current()
        seen.append((ctx.correlation_id, ctx.extra["job_attempt"]))
        if len(seen) < 3:
            raise TimeoutError("storage busy")
        return "done"

    with bound(correlation_id="corr-r", request_id="req-r"):
        payload = jobs.carry({})
    with capture_logs() as logs:
        assert jobs.run("flaky", flaky, payload, retry_on=(TimeoutError,), max_attempts=5) == "done"
    assert seen == [("corr-r", 1), ("corr-r", 2), ("corr-r", 3)]
    lines = [line for line in logs.lines() if line["logger"] == "observability_app.jobs"]
    assert [line["outcome"] for line in lines] == ["retry", "retry", "success"]
    assert all(line["correlation_id"] == "corr-r" and line["source"] == "job" for line in lines)
    assert [line["job_attempt"] for line in lines] == [1, 2, 3]
    assert all(line["duration_ms"] >= 0 for line in lines)


def test_errors_are_logged_and_raised():
    def broken(payload):
        raise KeyError("missing")

    with capture_logs() as logs, pytest.raises(KeyError):
        jobs.run("broken", broken, {"a": 1})
    (line,) = [line for line in logs.lines() if line["logger"] == "observability_app.jobs"]
    assert line["outcome"] == "error" and line["error.type"] == "KeyError" and line["level"] == "ERROR"
    with pytest.raises(TimeoutError):
        jobs.run(
            "out-of-attempts",
            lambda p: (_ for _ in ()).throw(TimeoutError()),
            {},
            retry_on=(TimeoutError,),
            max_attempts=2,
        )
    with pytest.raises(ValueError, match="max_attempts"):
        jobs.run("bad", lambda p: None, {}, max_attempts=0)


@given(
    meta=st.one_of(st.none(), st.integers(), st.text(), st.dictionaries(st.text(max_size=20), st.text(max_size=300)))
)
def test_hostile_payload_metadata_is_replaced_not_trusted(meta):
    with jobs.job_context("x", {"_observability": meta}) as ctx:
        assert 1 <= len(ctx.correlation_id) <= 128
        assert "\n" not in ctx.correlation_id and " " not in ctx.correlation_id


@pytest.mark.django_db(transaction=True)
def test_example_background_scan_keeps_the_request_correlation(client):
    put(client)
    with capture_logs() as logs:
        response = client.post(URL + "/scan?async=thread", HTTP_X_CORRELATION_ID="bg-42")
        assert response.status_code == 202
        from example_project.bucket import jobs as bucket_jobs

        for thread in list(__import__("threading").enumerate()):
            if thread.name.startswith("scan-models-classifier"):
                thread.join(timeout=30)
        del bucket_jobs
    event = AuditEvent.objects.get(event_type="SAFETY_DECISION_RECORDED")
    assert event.correlation_id == "bg-42" and event.source == "job"
    job_lines = [line for line in logs.lines() if line["logger"] == "observability_app.jobs"]
    assert job_lines and job_lines[0]["correlation_id"] == "bg-42" and job_lines[0]["outcome"] == "success"
    assert audit  # the public API module is importable alongside jobs


# -- the shared run code: ids, metrics, hostile input ------------------------------------------------------------


def _sample(name: str, **labels: str) -> float:
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from observability_app.metrics.registry import REGISTRY

    found = 0.0
    for family in text_string_to_metric_families(generate_latest(REGISTRY).decode()):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(key) == value for key, value in labels.items()):
                found += sample.value
    return found


def test_run_counts_started_outcomes_and_dead_letters_inline_jobs():
    labels = {"queue": jobs.INLINE_QUEUE, "task": "metered"}
    before = {
        name: _sample(name, **labels)
        for name in ("jobs_started_total", "jobs_succeeded_total", "jobs_retried_total", "jobs_failed_total")
    }
    dead_before = _sample("jobs_dead_lettered_total", reason="max_retries", **labels)
    attempts = []

    def flaky(payload):
        attempts.append(1)
        if len(attempts) < 2:
            raise TimeoutError("busy")

    jobs.run("metered", flaky, {}, retry_on=(TimeoutError,), max_attempts=3)
    with pytest.raises(TimeoutError):
        jobs.run(
            "metered", lambda p: (_ for _ in ()).throw(TimeoutError()), {}, retry_on=(TimeoutError,), max_attempts=2
        )
    assert _sample("jobs_started_total", **labels) - before["jobs_started_total"] == 4
    assert _sample("jobs_succeeded_total", **labels) - before["jobs_succeeded_total"] == 1
    assert _sample("jobs_retried_total", **labels) - before["jobs_retried_total"] == 2
    assert _sample("jobs_failed_total", **labels) - before["jobs_failed_total"] == 1
    assert _sample("jobs_dead_lettered_total", reason="max_retries", **labels) - dead_before == 1
    assert _sample("jobs_active", **labels) == 0


def test_the_line_names_task_queue_and_attempt():
    with capture_logs() as logs:
        jobs.run("named", lambda p: None, {})
    (line,) = [line for line in logs.lines() if line["logger"] == "observability_app.jobs"]
    assert (line["task"], line["queue"], line["attempt"], line["outcome"]) == ("named", "inline", 1, "success")


@given(
    correlation=st.one_of(st.none(), st.integers(), st.text(max_size=300), st.binary(max_size=40)),
    request_id=st.one_of(st.none(), st.text(max_size=300), st.lists(st.text())),
    traceparent=st.one_of(st.none(), st.text(max_size=80), st.just("00-" + "0" * 32 + "-" + "1" * 16 + "-01")),
)
def test_ids_read_from_outside_are_validated(correlation, request_id, traceparent):
    ids = jobs.JobIds.parse(correlation, request_id, traceparent, "x" * 600)
    assert 1 <= len(ids.correlation_id) <= 128 and "\n" not in ids.correlation_id
    assert len(ids.request_id) <= 128 and "\n" not in ids.request_id
    assert ids.traceparent == "" or len(ids.traceparent) == 55
    assert ids.tracestate == ""


def test_a_valid_traceparent_is_kept_and_max_attempts_is_checked():
    good = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    assert jobs.JobIds.parse("c", "r", good).traceparent == good
    for bad in (0, -1, True, 2.5, "3"):
        with pytest.raises(ValueError, match="max_attempts"):
            jobs.run("bad", lambda p: None, {}, max_attempts=bad)
    assert [jobs.safe_attempt(value) for value in (3, -1, True, 10**9, "2", None)] == [3, 0, 0, 0, 0, 0]
