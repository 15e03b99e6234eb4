"""The retention purge: exactly the expired, unheld events go; idempotent; safe concurrently; verifiable after."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import override_settings

from observability_app import audit
from observability_app.audit import holds, integrity, registry, retention
from observability_app.audit.models import AuditEvent

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
PAYLOADS = {
    "ARTIFACT_CREATED": {
        "artifact_id": "b/a@1",
        "version": "1",
        "client_digest": "d",
        "stored_digest": "d",
        "size_bytes": 1,
        "bucket_id": "b",
    },
    "ARTIFACT_ACCESSED": {"artifact_id": "b/a@1", "version": "1", "reader": "r", "purpose": "p"},
    "SAFETY_DECISION_RECORDED": {
        "artifact_id": "b/a@1",
        "decision": "approved",
        "scanner": "s",
        "scanner_version": "1",
        "confidence": 0.9,
    },
    "PROVENANCE_CHAIN_VERIFIED": {"artifact_id": "b/a@1", "upstream_refs": [], "result": "verified"},
    "ARTIFACT_DELETED": {"artifact_id": "b/a@1", "version": "1", "reason": "x"},
    "INTEGRITY_CHECK_FAILED": {"artifact_id": "b/a@1", "expected_digest": "a", "actual_digest": "b", "stage": "s"},
    "SAFETY_DECISION_OVERTURNED": {
        "artifact_id": "b/a@1",
        "previous_decision": "approved",
        "new_decision": "rejected",
        "overturn_reason": "r",
    },
    "AUTH_LOGIN_SUCCEEDED": {"username": "u"},
    "AUTH_LOGIN_FAILED": {"username": "u"},
    "AUTH_LOGOUT": {"username": "u"},
    "ADMIN_ACTION": {"object_type": "a.b", "object_id": "1", "action": "change", "change_message": "m"},
    "CONFIG_CHANGED": {"key": "k", "old_value": 1, "new_value": 2},
    "AUDIT_PURGED": {"counts": {}, "cutoffs": {}, "run_id": "r"},
}
AGES = (1, 400, 800, 1000, 3000)  # days back: inside and beyond 2 and 7 years


def backdate_every_type(subject_of_lifetime: str = "b/a@1") -> None:
    rows = []
    for event_type, payload in PAYLOADS.items():
        for days in AGES:
            rows.append({"event_type": event_type, "payload": payload, "occurred_at": NOW - timedelta(days=days)})
    audit.record_many(rows)


def expected_survivors() -> int:
    survivors = 0
    for event_type in PAYLOADS:
        keep = registry.retention_for(event_type)
        for days in AGES:
            if keep == audit.PERMANENT:
                survivors += 1
            elif keep == audit.ARTIFACT_LIFETIME:
                survivors += 0  # b/a@1 has an ARTIFACT_DELETED older than the grace period: all go
            elif days < keep:
                survivors += 1
    return survivors


@pytest.mark.django_db(transaction=True)
def test_exactly_the_expired_events_go_and_a_second_run_deletes_nothing():
    backdate_every_type()
    result = retention.purge_expired(now=NOW)
    remaining = AuditEvent.objects.exclude(event_type="AUDIT_PURGED", occurred_at__gt=NOW)  # not the run's own
    assert remaining.count() == expected_survivors()
    assert result.counts["ARTIFACT_ACCESSED"] == 3 and result.counts["ARTIFACT_CREATED"] == 1
    assert result.counts["PROVENANCE_CHAIN_VERIFIED"] == 5
    assert "SAFETY_DECISION_RECORDED" not in result.counts and "AUDIT_PURGED" not in result.counts
    for event in remaining:
        keep = registry.retention_for(event.event_type)
        if isinstance(keep, int):
            assert event.occurred_at >= NOW - timedelta(days=keep)
    purged = AuditEvent.objects.filter(event_type="AUDIT_PURGED", payload__run_id=result.run_id).get()
    assert purged.payload["counts"] == result.counts
    again = retention.purge_expired(now=NOW)
    assert again.total == 0
    assert integrity.verify().ok


@pytest.mark.django_db(transaction=True)
def test_retention_in_force_when_it_runs_applies():
    backdate_every_type()
    from django.conf import settings

    retention_5y = {**settings.OBSERVABILITY, "AUDIT_RETENTION": {"ARTIFACT_ACCESSED": 5 * 365}}
    with override_settings(OBSERVABILITY=retention_5y):
        result = retention.purge_expired(now=NOW, event_types=["ARTIFACT_ACCESSED"])
    # Under the 2-year default three would go (800, 1000, 3000 days); under 5 years only the 3000-day one.
    assert result.counts == {"ARTIFACT_ACCESSED": 1}
    assert AuditEvent.objects.filter(event_type="ARTIFACT_ACCESSED").count() == len(AGES) - 1


@pytest.mark.django_db(transaction=True)
def test_held_events_are_never_purged():
    backdate_every_type()
    holds.place(subject="b/a@1", event_type="ARTIFACT_ACCESSED", reason="litigation 42", placed_by="legal")
    hold = holds.place(event_type="AUTH_LOGIN_FAILED", reason="investigation", placed_by="legal")
    result = retention.purge_expired(now=NOW)
    assert "ARTIFACT_ACCESSED" not in result.counts and "AUTH_LOGIN_FAILED" not in result.counts
    assert AuditEvent.objects.filter(event_type="ARTIFACT_ACCESSED").count() == len(AGES)
    holds.release(hold, released_by="legal", reason="closed")
    assert retention.purge_expired(now=NOW).counts["AUTH_LOGIN_FAILED"] == 3
    placed = AuditEvent.objects.filter(event_type__in=["LEGAL_HOLD_PLACED", "LEGAL_HOLD_RELEASED"])
    assert placed.count() == 3 and {e.actor for e in placed} == {"legal"}


@pytest.mark.django_db(transaction=True)
def test_dry_run_deletes_nothing_and_records_nothing():
    backdate_every_type()
    before = AuditEvent.objects.count()
    result = retention.purge_expired(now=NOW, dry_run=True)
    assert result.total > 0 and AuditEvent.objects.count() == before


@pytest.mark.django_db(transaction=True)
def test_two_purges_at_once_one_wins_no_double_delete():
    backdate_every_type()
    outcomes, errors = [], []
    barrier = threading.Barrier(2)

    def run():
        from django.db import connection as thread_connection

        try:
            barrier.wait()
            outcomes.append(retention.purge_expired(now=NOW, batch_size=3).total)
        except retention.LockBusy:
            outcomes.append("busy")
        except Exception as exc:  # asserted below
            errors.append(exc)
        finally:
            thread_connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    totals = [o for o in outcomes if o != "busy"]
    assert sum(totals) == len(PAYLOADS) * len(AGES) - expected_survivors()  # each expired event deleted once
    final = retention.purge_expired(now=NOW)
    assert final.total == 0
    assert integrity.verify().ok


@pytest.mark.django_db(transaction=True)
def test_purge_command_output_options_and_errors(capsys):
    backdate_every_type()
    call_command("purge_expired_audit", "--dry-run", "--now", NOW.isoformat())
    out = capsys.readouterr().out
    assert "ARTIFACT_ACCESSED" in out and "would delete" in out
    call_command(
        "purge_expired_audit", "--now", "2026-11-22T12:00:00Z", "--batch-size", "2", "--event-type", "AUTH_LOGOUT"
    )
    assert "deleted 3 event(s)" in capsys.readouterr().out
    for bad in (["--batch-size", "0"], ["--batch-size", "-5"], ["--now", "yesterday"], ["--event-type", "NOPE"]):
        with pytest.raises(CommandError) as refused:
            call_command("purge_expired_audit", *bad)
        assert refused.value.returncode == 2  # the documented exit code for bad options


@pytest.mark.django_db
def test_last_purge_reads_the_latest_audit_purged_event():
    assert retention.last_purge() is None
    audit.record("AUDIT_PURGED", PAYLOADS["AUDIT_PURGED"], occurred_at=NOW)
    assert retention.last_purge() == NOW
    assert connection.vendor in ("sqlite", "postgresql")


def _insert_with_id(pk: int, occurred_at: datetime) -> None:
    """An expired event written with a chosen id, as a transaction that took its id early and committed late."""
    from observability_app.audit.canonical import EVENT_COLUMNS
    from observability_app.audit.recording import _inserter, build_row

    row = build_row("ARTIFACT_ACCESSED", PAYLOADS["ARTIFACT_ACCESSED"], occurred_at=occurred_at)
    params = _inserter(connection).params(row, connection)
    columns = ["id", *EVENT_COLUMNS]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO observability_audit_event ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})",
            [pk, *params],
        )
        if connection.vendor == "postgresql":  # later record() calls take ids after it, as in production
            cursor.execute(
                "SELECT setval(pg_get_serial_sequence('observability_audit_event', 'id'),"
                " (SELECT max(id) FROM observability_audit_event))"
            )


@pytest.mark.django_db(transaction=True)
def test_purging_events_sealed_late_and_across_seals_keeps_verification_passing():
    old = NOW - timedelta(days=1000)
    first = audit.record("ARTIFACT_ACCESSED", PAYLOADS["ARTIFACT_ACCESSED"], occurred_at=old)
    _insert_with_id(first.pk + 10, old)
    integrity.seal()
    _insert_with_id(first.pk + 4, old)  # committed after the seal that covered its id range
    for pk in range(first.pk + 20, first.pk + 25):
        _insert_with_id(pk, old)
    assert integrity.seal().late == 1  # the second seal carries the late event below its own range
    result = retention.purge_expired(now=NOW, batch_size=4, event_types=["ARTIFACT_ACCESSED"])
    assert result.counts == {"ARTIFACT_ACCESSED": 8} and result.batches == 2
    assert not AuditEvent.objects.filter(event_type="ARTIFACT_ACCESSED").exists()
    report = integrity.verify()
    assert report.ok, report.problems


@pytest.mark.django_db(transaction=True)
def test_events_removed_behind_a_purge_are_still_reported():
    """A purge record explains only what the purge removed: a deletion beside it is named."""
    from tests.test_integrity import superuser_tampering

    old = NOW - timedelta(days=1000)
    kept = [audit.record("AUTH_LOGIN_FAILED", {"username": "u"}, occurred_at=NOW) for _ in range(3)]
    audit.record_many(
        [{"event_type": "ARTIFACT_ACCESSED", "payload": PAYLOADS["ARTIFACT_ACCESSED"], "occurred_at": old}] * 4
    )
    integrity.seal()
    assert retention.purge_expired(now=NOW).counts == {"ARTIFACT_ACCESSED": 4}
    with superuser_tampering() as cursor:
        cursor.execute("DELETE FROM observability_audit_event WHERE id = %s", [kept[1].pk])
    found = {(problem.kind, problem.event_id) for problem in integrity.verify().problems}
    assert found == {("removed", kept[1].pk)}


# -- crash-safe accounting: a purge killed between batches ---------------------------------------------------


def _purged_totals() -> tuple[int, int]:
    """(sum of every AUDIT_PURGED event's counts, sum of every purge record's removed_count)."""
    from django.db.models import Sum

    from observability_app.audit.models import AuditPurgeRecord

    events = sum(
        sum(payload["counts"].values())
        for payload in AuditEvent.objects.filter(event_type="AUDIT_PURGED").values_list("payload", flat=True)
    )
    records = AuditPurgeRecord.objects.aggregate(n=Sum("removed_count"))["n"] or 0
    return events, records


def _expired_accesses(count: int) -> None:
    old = NOW - timedelta(days=3000)
    audit.record_many(
        [
            {
                "event_type": "ARTIFACT_ACCESSED",
                "payload": {**PAYLOADS["ARTIFACT_ACCESSED"], "n": i},
                "occurred_at": old,
            }
            for i in range(count)
        ]
    )


def _dies_after(batches: int):
    """``_delete_batch`` that lets ``batches`` batches (that removed something) commit, then dies as a signal
    would take the process."""
    real, done = retention._delete_batch, []

    def batch(*args, **kwargs):
        if len(done) == batches:
            raise KeyboardInterrupt
        removed = real(*args, **kwargs)
        if removed:
            done.append(len(removed))
        return removed

    return batch


@pytest.mark.django_db(transaction=True)
def test_a_run_that_dies_between_batches_is_accounted_for_by_the_next_run(monkeypatch, capsys):
    _expired_accesses(10)
    monkeypatch.setattr(retention, "_delete_batch", _dies_after(2))
    with pytest.raises(KeyboardInterrupt):
        retention.purge_expired(now=NOW, batch_size=3)
    monkeypatch.undo()
    assert _purged_totals() == (0, 6)  # two batches gone, nobody said so yet
    (interrupted,) = retention.interrupted_runs()
    call_command("purge_expired_audit", "--now", NOW.isoformat(), "--batch-size", "3")
    out = capsys.readouterr().out
    assert f"recorded AUDIT_PURGED for interrupted run {interrupted}: deleted 6 event(s)" in out
    assert "deleted 4 event(s)" in out
    assert _purged_totals() == (10, 10)
    assert retention.interrupted_runs() == {}
    reconciled = AuditEvent.objects.get(event_type="AUDIT_PURGED", subject=interrupted)
    assert reconciled.payload["interrupted"] is True and reconciled.payload["counts"] == {"ARTIFACT_ACCESSED": 6}
    assert integrity.verify().ok
    retention.purge_expired(now=NOW)
    assert _purged_totals() == (10, 10)  # reconciled once, not again


@pytest.mark.django_db(transaction=True)
def test_a_dry_run_names_an_interrupted_run_and_records_nothing(monkeypatch, capsys):
    _expired_accesses(4)
    monkeypatch.setattr(retention, "_delete_batch", _dies_after(1))
    with pytest.raises(KeyboardInterrupt):
        retention.purge_expired(now=NOW, batch_size=2)
    monkeypatch.undo()
    call_command("purge_expired_audit", "--dry-run", "--now", NOW.isoformat())
    assert "found interrupted run" in capsys.readouterr().out
    assert _purged_totals() == (0, 2)


@pytest.mark.django_db(transaction=True)
def test_kill_9_mid_purge_then_a_rerun_leaves_the_totals_equal_and_the_trail_verified():
    import os
    import signal
    import subprocess
    import sys
    import time

    from observability_app.audit.models import AuditPurgeRecord

    _expired_accesses(6000)
    from tests.servers import child_database_url

    env = {**os.environ, "DATABASE_URL": child_database_url(), "DJANGO_SETTINGS_MODULE": "example_project.settings"}
    child = subprocess.Popen(
        [sys.executable, "manage.py", "purge_expired_audit", "--batch-size", "20", "--now", NOW.isoformat()],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and child.poll() is None:
            try:
                if AuditPurgeRecord.objects.count() >= 5:
                    break
            except Exception:  # SQLite: the child holds the write lock for a moment
                pass
            time.sleep(0.02)
        assert child.poll() is None, child.stderr.read().decode()[-2000:]
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(30)
    connection.close()
    events, records = _purged_totals()
    assert events == 0 and 0 < records < 6000
    deadline = time.monotonic() + 60
    while True:  # on PostgreSQL the killed child's session holds the purge lock until the server notices
        try:
            result = retention.purge_expired(now=NOW, batch_size=500)
            break
        except retention.LockBusy:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    assert sum(sum(counts.values()) for counts in result.reconciled.values()) == records
    assert result.total == 6000 - records
    assert _purged_totals() == (6000, 6000)
    assert integrity.verify().ok
