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
        response = client.post(URL + "/scan?async=1", HTTP_X_CORRELATION_ID="bg-42")
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
