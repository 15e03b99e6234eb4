"""record() and record_many(): validation, context capture, digests, transactions."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import close_old_connections, connection, transaction
from hypothesis import given
from hypothesis import strategies as st

from observability_app import audit
from observability_app.audit.canonical import signing_key, stored_event_digest
from observability_app.audit.models import AuditEvent
from observability_app.context import bound

ACCESS = {"artifact_id": "models/a@1", "version": "1", "reader": "ci", "purpose": "eval"}
CREATED = {
    "artifact_id": "models/a@1",
    "version": "1",
    "client_digest": "sha256:" + "a" * 64,
    "stored_digest": "sha256:" + "a" * 64,
    "size_bytes": 10,
    "bucket_id": "models",
}

pytestmark = pytest.mark.django_db


def recomputed_digest(event: AuditEvent) -> str:
    return stored_event_digest(event, signing_key())


def test_record_stores_event_with_payload_subject_and_digest():
    event = audit.record("ARTIFACT_CREATED", CREATED)
    stored = AuditEvent.objects.get(pk=event.pk)
    assert stored.event_type == "ARTIFACT_CREATED"
    assert stored.subject == "models/a@1"
    assert stored.payload == CREATED
    assert stored.event_id == event.event_id
    assert stored.service == "artifact-bucket"
    assert stored.source == "command"
    assert stored.occurred_at.tzinfo is not None
    assert recomputed_digest(stored) == stored.digest == event.digest


def test_record_captures_request_context():
    with bound(
        request_id="req-1",
        correlation_id="corr-1",
        source="api",
        route="api/v1/buckets/<name:bucket>",
        ip="10.0.0.7",
        user_agent="curl/8",
        user="alice",
        trace_id="0af7651916cd43dd8448eb211c80319c",
        span_id="b7ad6b7169203331",
    ):
        event = audit.record("ARTIFACT_ACCESSED", ACCESS)
    stored = AuditEvent.objects.get(pk=event.pk)
    assert (stored.request_id, stored.correlation_id, stored.source) == ("req-1", "corr-1", "api")
    assert (stored.client_ip, stored.user_agent, stored.actor) == ("10.0.0.7", "curl/8", "alice")
    assert stored.route == "api/v1/buckets/<name:bucket>"
    assert (stored.trace_id, stored.span_id) == ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")


def test_explicit_arguments_override_context():
    with bound(correlation_id="from-context", user="alice", source="api"):
        event = audit.record("ARTIFACT_ACCESSED", ACCESS, actor="bob", source="job", correlation_id="explicit")
    assert (event.actor, event.source, event.correlation_id) == ("bob", "job", "explicit")


def test_long_context_values_are_truncated_to_column_sizes():
    with bound(user_agent="x" * 5000, route="r" * 1000, correlation_id="c" * 500):
        event = audit.record("ARTIFACT_ACCESSED", ACCESS)
    stored = AuditEvent.objects.get(pk=event.pk)
    assert len(stored.user_agent) == 512 and len(stored.route) == 255 and len(stored.correlation_id) == 128
    assert recomputed_digest(stored) == stored.digest


def test_rolled_back_transaction_stores_nothing():
    before = AuditEvent.objects.count()
    with pytest.raises(RuntimeError), transaction.atomic():
        audit.record("ARTIFACT_ACCESSED", ACCESS)
        audit.record_many([("ARTIFACT_ACCESSED", ACCESS)] * 5)
        raise RuntimeError("business change failed")
    assert AuditEvent.objects.count() == before


def test_committed_transaction_keeps_its_events():
    with transaction.atomic():
        first = audit.record("ARTIFACT_ACCESSED", ACCESS)
        audit.record_many([("ARTIFACT_ACCESSED", ACCESS)] * 3)
    assert AuditEvent.objects.filter(pk__gte=first.pk).count() == 4


@pytest.mark.parametrize(
    ("event_type", "payload", "message"),
    [
        ("NOT_A_TYPE", ACCESS, "unknown audit event type"),
        (None, ACCESS, "unknown audit event type"),
        ("ARTIFACT_ACCESSED", {"artifact_id": "x"}, r"needs payload field\(s\) version, reader, purpose"),
        ("ARTIFACT_CREATED", {**CREATED, "size_bytes": "10"}, "'size_bytes' must be int"),
        ("ARTIFACT_CREATED", {**CREATED, "size_bytes": True}, "'size_bytes' must be int"),
        (
            "SAFETY_DECISION_RECORDED",
            {"artifact_id": "a", "decision": "maybe", "scanner": "s", "scanner_version": "1", "confidence": 0.5},
            "must be one of",
        ),
        (
            "SAFETY_DECISION_RECORDED",
            {"artifact_id": "a", "decision": "approved", "scanner": "s", "scanner_version": "1", "confidence": 1.5},
            "between 0.0 and 1.0",
        ),
        ("AUTH_LOGIN_FAILED", {"username": "u", "password": "hunter2"}, "must never carry 'password'"),
        ("ARTIFACT_ACCESSED", [1, 2], "must be a dict"),
        ("ARTIFACT_ACCESSED", {**ACCESS, "n": float("nan")}, "JSON cannot represent"),
        ("ARTIFACT_ACCESSED", {**ACCESS, "n": float("inf")}, "JSON cannot represent"),
        ("ARTIFACT_ACCESSED", {**ACCESS, "when": datetime.now(UTC)}, "not JSON"),
        ("ARTIFACT_ACCESSED", {**ACCESS, "blob": b"bytes"}, "not JSON"),
        ("ARTIFACT_ACCESSED", {**ACCESS, 1: "int key"}, "not a string"),
        ("ARTIFACT_ACCESSED", {**ACCESS, "s": "nul\x00byte"}, "NUL character"),
        ("ARTIFACT_ACCESSED", {**ACCESS, "s": "\ud800"}, "lone surrogate"),
        ("ARTIFACT_ACCESSED", {**ACCESS, "big": "x" * 70000}, "over the limit"),
    ],
)
def test_bad_input_raises_clear_error_and_stores_nothing(event_type, payload, message):
    before = AuditEvent.objects.count()
    with pytest.raises(audit.InvalidAuditEvent, match=message):
        audit.record(event_type, payload)
    assert AuditEvent.objects.count() == before


def test_deeply_nested_payload_is_refused():
    payload = dict(ACCESS)
    node = payload
    for _ in range(100):
        node["child"] = {}
        node = node["child"]
    with pytest.raises(audit.InvalidAuditEvent, match="nests deeper"):
        audit.record("ARTIFACT_ACCESSED", payload)
    assert not AuditEvent.objects.exists()


def test_naive_occurred_at_and_bad_outcome_are_refused():
    with pytest.raises(audit.InvalidAuditEvent, match="timezone-aware"):
        audit.record("ARTIFACT_ACCESSED", ACCESS, occurred_at=datetime(2020, 1, 1))
    with pytest.raises(audit.InvalidAuditEvent, match="outcome must be one of"):
        audit.record("ARTIFACT_ACCESSED", ACCESS, outcome="meh")
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        audit.record("ARTIFACT_ACCESSED", ACCESS, colour="blue")
    assert not AuditEvent.objects.exists()


def test_record_many_is_all_or_nothing():
    events = [("ARTIFACT_ACCESSED", ACCESS)] * 10 + [("ARTIFACT_ACCESSED", {"artifact_id": "only"})]
    with pytest.raises(audit.InvalidAuditEvent, match=r"event #10: ARTIFACT_ACCESSED needs payload field"):
        audit.record_many(events)
    assert not AuditEvent.objects.exists()
    with pytest.raises(audit.InvalidAuditEvent, match="event #0: expected a mapping"):
        audit.record_many(["ARTIFACT_ACCESSED"])
    with pytest.raises(audit.InvalidAuditEvent, match=r"event #0: .*unexpected keyword"):
        audit.record_many([{"event_type": "ARTIFACT_ACCESSED", "payload": ACCESS, "colour": 1}])
    assert audit.record_many([]) == 0
    assert not AuditEvent.objects.exists()


def test_record_many_stores_mappings_and_tuples_with_valid_digests():
    old = datetime.now(UTC) - timedelta(days=400)
    count = audit.record_many(
        [
            ("ARTIFACT_CREATED", CREATED),
            {"event_type": "ARTIFACT_ACCESSED", "payload": ACCESS, "occurred_at": old, "actor": "bob"},
        ]
        * 50
    )
    assert count == 100
    events = list(AuditEvent.objects.all())
    assert len(events) == 100
    assert {e.event_type for e in events} == {"ARTIFACT_CREATED", "ARTIFACT_ACCESSED"}
    assert all(recomputed_digest(e) == e.digest for e in events)
    accessed = [e for e in events if e.event_type == "ARTIFACT_ACCESSED"]
    assert all(e.occurred_at == old and e.actor == "bob" for e in accessed)
    assert len({e.event_id for e in events}) == 100


def test_event_recorded_signal_counts_by_type():
    seen = []

    def receiver(sender, event_type, count, **kwargs):
        seen.append((event_type, count))

    audit.event_recorded.connect(receiver)
    try:
        audit.record("ARTIFACT_ACCESSED", ACCESS)
        audit.record_many([("ARTIFACT_CREATED", CREATED)] * 3 + [("ARTIFACT_ACCESSED", ACCESS)])
    finally:
        audit.event_recorded.disconnect(receiver)
    assert sorted(seen) == [("ARTIFACT_ACCESSED", 1), ("ARTIFACT_ACCESSED", 1), ("ARTIFACT_CREATED", 3)]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@given(extra=st.dictionaries(st.text(max_size=12), json_values, max_size=6))
def test_any_payload_is_stored_and_verifiable_or_refused_cleanly(extra):
    payload = {**extra, **ACCESS}
    before = AuditEvent.objects.count()
    try:
        event = audit.record("ARTIFACT_ACCESSED", payload)
    except audit.InvalidAuditEvent:
        assert AuditEvent.objects.count() == before
        return
    stored = AuditEvent.objects.get(pk=event.pk)
    assert recomputed_digest(stored) == stored.digest
    assert json.loads(json.dumps(stored.payload)) == stored.payload


@given(name=st.text(max_size=200))
def test_arbitrary_type_names_are_refused_unless_registered(name):
    before = AuditEvent.objects.count()
    if name in {t.name for t in audit.all_types()}:
        return
    with pytest.raises(audit.UnknownEventType):
        audit.record(name, ACCESS)
    assert AuditEvent.objects.count() == before


@pytest.mark.django_db(transaction=True)
def test_twenty_threads_recording_concurrently_store_every_event():
    threads, per_thread = 20, 500
    if connection.vendor != "postgresql":
        threads, per_thread = 4, 50  # SQLite has one writer; the concurrency claim is PostgreSQL's
    errors = []
    barrier = threading.Barrier(threads)

    def writer(index: int) -> None:
        try:
            barrier.wait()
            with bound(correlation_id=f"thread-{index}", source="worker"):
                for _ in range(per_thread):
                    audit.record("ARTIFACT_ACCESSED", ACCESS)
        except Exception as exc:  # collected and asserted below
            errors.append(exc)
        finally:
            close_old_connections()
            connection.close()

    workers = [threading.Thread(target=writer, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    assert AuditEvent.objects.count() == threads * per_thread
    assert AuditEvent.objects.values("event_id").distinct().count() == threads * per_thread
    for index in range(threads):
        assert AuditEvent.objects.filter(correlation_id=f"thread-{index}").count() == per_thread
