"""The red team: attacks on the audit trail by someone with the database's credentials, and what the app reports.

Each test plays one attacker of the threat model in docs/audit-integrity.md and asserts what ``verify_audit`` (or
the database) answers.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from django.db import DatabaseError, connection, connections
from django.test import override_settings

from observability_app import audit
from observability_app.audit import holds, integrity
from observability_app.audit.exceptions import AppendOnlyViolation
from observability_app.audit.models import (
    AuditEvent,
    AuditPurgeRecord,
    AuditSeal,
    AuditVerification,
    LegalHold,
    LegalHoldRelease,
)
from observability_app.audit.retention import purge_expired
from tests.attacker import AUDIT_TABLES, triggers_off

pytestmark = pytest.mark.django_db(transaction=True)
ACCESS = {"artifact_id": "b/a@1", "version": "1", "reader": "r", "purpose": "p"}
postgres_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL roles and snapshots")


def kinds(report) -> set[str]:
    return {problem.kind for problem in report.problems}


def evidence() -> None:
    """One row in every integrity table."""
    hold = holds.place(subject="b/a@1", reason="litigation", placed_by="legal")
    holds.release(hold, released_by="legal", reason="settled")
    audit.record("ARTIFACT_ACCESSED", ACCESS, occurred_at=datetime.now(UTC) - timedelta(days=3000))
    audit.record("ARTIFACT_ACCESSED", ACCESS)
    purge_expired()
    integrity.verify()


MODELS = (AuditEvent, AuditSeal, AuditPurgeRecord, AuditVerification, LegalHold, LegalHoldRelease)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_the_orm_refuses_to_change_or_delete_any_integrity_row(model):
    evidence()
    assert model.objects.exists()
    with pytest.raises(AppendOnlyViolation):
        model.objects.all().delete()
    with pytest.raises(AppendOnlyViolation):
        model.objects.all().update(id=1)
    with pytest.raises(AppendOnlyViolation):
        model.objects.first().delete()


@pytest.mark.parametrize("table", AUDIT_TABLES)
def test_raw_sql_update_delete_and_truncate_are_refused_on_every_audit_table(table):
    evidence()
    statements = [f"UPDATE {table} SET id = id", f"DELETE FROM {table}"]
    if connection.vendor == "postgresql":
        statements.append(f"TRUNCATE {table} CASCADE")
    for statement in statements:
        with pytest.raises(DatabaseError, match="append-only"), connection.cursor() as cursor:
            cursor.execute(statement)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {table}")
        assert cursor.fetchone()[0] > 0


@postgres_only
def test_a_role_with_delete_granted_cannot_open_the_purge_gate_by_setting_it():
    """The old gate was a setting any session could set; now it opens only for the purge role (the owner)."""
    audit.record("ARTIFACT_ACCESSED", ACCESS)
    role = f"obs_redteam_{connection.settings_dict['NAME']}"[:60]
    with connection.cursor() as cursor:
        cursor.execute(f"DROP ROLE IF EXISTS {role}")
        cursor.execute(f"CREATE ROLE {role} LOGIN")
        cursor.execute(f"GRANT SELECT, UPDATE, DELETE, TRUNCATE ON {', '.join(AUDIT_TABLES)} TO {role}")
    settings = connection.settings_dict
    try:
        with psycopg.connect(
            host=settings["HOST"] or "127.0.0.1", port=settings["PORT"] or 5432, dbname=settings["NAME"], user=role
        ) as attacker:
            for statement in (
                "DELETE FROM observability_audit_event",
                "TRUNCATE observability_audit_event CASCADE",
                "UPDATE observability_audit_event SET actor = 'x'",
                "DELETE FROM observability_audit_seal",
            ):
                with attacker.transaction():
                    attacker.execute("SET LOCAL observability_app.purge_gate = 'open'")
                    with pytest.raises(psycopg.errors.InsufficientPrivilege), attacker.transaction():
                        attacker.execute(statement)
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"REVOKE ALL ON {', '.join(AUDIT_TABLES)} FROM {role}")
            cursor.execute(f"DROP ROLE {role}")
    assert AuditEvent.objects.count() == 1


@pytest.fixture
def checkpoint_file(tmp_path):
    path = tmp_path / "checkpoints.jsonl"
    with override_settings(OBSERVABILITY={"AUDIT_SIGNING_KEY": "k" * 32, "AUDIT_CHECKPOINT_FILE": str(path)}):
        yield path


def sealed_trail(batches: int = 3) -> list[AuditSeal]:
    for n in range(batches):
        audit.record_many([("ARTIFACT_ACCESSED", {**ACCESS, "n": n, "i": i}) for i in range(4)])
        integrity.seal()
    return list(AuditSeal.objects.order_by("id"))


def test_every_seal_is_checkpointed_outside_the_database(checkpoint_file):
    seals = sealed_trail()
    lines = checkpoint_file.read_text().splitlines()
    assert len(lines) == len(seals) == 3
    assert f'"seal_id":{seals[-1].pk}' in lines[-1] and seals[-1].digest in lines[-1]
    assert integrity.verify().ok


def test_deleting_the_newest_seals_and_their_events_is_named_and_sealing_refuses(checkpoint_file):
    seals = sealed_trail()
    with triggers_off() as cursor:
        cursor.execute("DELETE FROM observability_audit_event WHERE id > %s", [seals[0].last_id])
        cursor.execute("DELETE FROM observability_audit_seal WHERE id > %s", [seals[0].pk])
    report = integrity.verify()
    assert "checkpoint_missing" in kinds(report), report.problems
    audit.record("ARTIFACT_ACCESSED", ACCESS)
    with pytest.raises(integrity.UnanchoredChain, match="checkpoint file"):
        integrity.seal()


def test_wiping_every_audit_table_is_named(checkpoint_file):
    sealed_trail()
    with triggers_off() as cursor:
        for table in AUDIT_TABLES[::-1]:
            cursor.execute(f"DELETE FROM {table}")
    report = integrity.verify()
    assert any("wiped" in problem.detail for problem in report.problems), report.problems
    assert not report.ok


def test_restoring_an_older_backup_is_named(checkpoint_file):
    """A restore brings back the trail as it was two seals ago: the checkpoint file remembers later seals."""
    sealed_trail(1)
    backup = {table: _rows(table) for table in ("observability_audit_event", "observability_audit_seal")}
    sealed_trail(2)
    with triggers_off() as cursor:
        cursor.execute("DELETE FROM observability_audit_verification")
        cursor.execute("DELETE FROM observability_audit_seal")
        cursor.execute("DELETE FROM observability_audit_event")
        for table, (columns, rows) in backup.items():
            for row in rows:
                cursor.execute(
                    f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})", row
                )
    assert "checkpoint_missing" in kinds(integrity.verify())


def _rows(table: str) -> tuple[list[str], list[tuple]]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table} ORDER BY id")
        return [column[0] for column in cursor.description], cursor.fetchall()


def test_deleting_the_first_seals_is_named():
    sealed_trail()
    first = AuditSeal.objects.order_by("id").first()
    with triggers_off() as cursor:
        cursor.execute("DELETE FROM observability_audit_seal WHERE id = %s", [first.pk])
    assert "seals_missing" in kinds(integrity.verify())


def test_deleting_a_seal_in_the_middle_breaks_the_chain():
    seals = sealed_trail()
    with triggers_off() as cursor:
        cursor.execute("DELETE FROM observability_audit_seal WHERE id = %s", [seals[1].pk])
    assert "chain_broken" in kinds(integrity.verify())


def test_a_forged_checkpoint_line_is_named(checkpoint_file):
    sealed_trail(1)
    with checkpoint_file.open("a") as handle:
        handle.write('{"seal_id": 1}\n')
    assert "checkpoint_forged" in kinds(integrity.verify())


@postgres_only
def test_verify_during_a_purge_reports_no_problem():
    """Verification reads one snapshot: a purge deleting batch after batch never looks like tampering."""
    old = datetime.now(UTC) - timedelta(days=3000)
    audit.record_many(
        [{"event_type": "ARTIFACT_ACCESSED", "payload": {**ACCESS, "i": i}, "occurred_at": old} for i in range(3000)]
    )
    integrity.seal(max_events=500)
    reports, done = [], threading.Event()

    def verify_loop():
        try:
            while not done.is_set():
                reports.append(integrity.verify(record_run=False))
        finally:
            connections.close_all()

    thread = threading.Thread(target=verify_loop)
    thread.start()
    try:
        result = purge_expired(batch_size=50)
    finally:
        done.set()
        thread.join()
    assert result.total == 3000 and reports
    assert [problem for report in reports for problem in report.problems] == []


# -- late commits: a writer's transaction open while seals pass its id ----------------------------------------


class _OpenWriter:
    """A thread that records one event in a transaction and keeps it open until told to commit."""

    def __init__(self) -> None:
        self.opened, self.release = threading.Event(), threading.Event()
        self.pk: int | None = None
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        from django.db import transaction

        try:
            with transaction.atomic():
                self.pk = audit.record("ARTIFACT_ACCESSED", {**ACCESS, "reader": "slow"}).pk
                self.opened.set()
                self.release.wait(30)
        finally:
            connections.close_all()

    def __enter__(self) -> _OpenWriter:
        self.thread.start()
        assert self.opened.wait(10)
        return self

    def commit(self) -> None:
        self.release.set()
        self.thread.join(30)

    def __exit__(self, *exc) -> None:
        self.commit()


def _assert_picked_up_late(pk: int) -> None:
    report = integrity.verify()
    assert report.ok, [str(p) for p in report.problems]
    assert report.unsealed == 1
    assert integrity.seal().late == 1
    report = integrity.verify()
    assert report.ok and report.unsealed == 0, [str(p) for p in report.problems]
    assert integrity.seal_for(pk) is not None


@postgres_only
def test_an_event_committed_after_three_seals_passed_its_id_is_sealed_late_not_inserted():
    with _OpenWriter() as writer:
        for n in range(3):
            audit.record("ARTIFACT_ACCESSED", {**ACCESS, "n": n})
            assert len(integrity.seal().seals) == 1
            assert integrity.verify().ok
        assert AuditSeal.objects.filter(first_id__lte=writer.pk, last_id__gte=writer.pk).exists()
    _assert_picked_up_late(writer.pk)


@postgres_only
def test_an_event_committed_after_seal_calls_that_each_wrote_several_seals_is_sealed_late():
    with _OpenWriter() as writer:
        audit.record_many([("ARTIFACT_ACCESSED", {**ACCESS, "i": i}) for i in range(7)])
        assert len(integrity.seal(max_events=2).seals) == 4
        audit.record_many([("ARTIFACT_ACCESSED", {**ACCESS, "j": j}) for j in range(5)])
        assert len(integrity.seal(max_events=2).seals) == 3
        assert integrity.verify().ok
    _assert_picked_up_late(writer.pk)


# -- holds that hold: a deleted hold cannot launder a purge ------------------------------------------------------


def _expired(subject: str, count: int) -> None:
    old = datetime.now(UTC) - timedelta(days=3000)
    audit.record_many(
        [
            {
                "event_type": "ARTIFACT_ACCESSED",
                "payload": {**ACCESS, "artifact_id": subject, "i": i},
                "occurred_at": old,
            }
            for i in range(count)
        ]
    )


@pytest.mark.parametrize("scope", ["subject", "type", "pair"])
def test_deleting_a_hold_then_purging_its_events_is_named_by_verify(scope):
    _expired("b/held@1", 3)
    _expired("b/free@1", 2)
    kwargs = {
        "subject": {"subject": "b/held@1"},
        "type": {"event_type": "ARTIFACT_ACCESSED"},
        "pair": {"subject": "b/held@1", "event_type": "ARTIFACT_ACCESSED"},
    }[scope]
    hold = holds.place(reason="litigation", placed_by="legal", **kwargs)
    assert purge_expired().total == (0 if scope == "type" else 2)
    assert integrity.verify().ok
    with triggers_off() as cursor:  # the attacker removes the hold's row, then lets the purge run
        cursor.execute("DELETE FROM observability_legal_hold WHERE id = %s", [hold.pk])
    assert purge_expired().total > 0
    report = integrity.verify()
    found = kinds(report)
    assert "hold_missing" in found and "purged_under_hold" in found, [str(p) for p in report.problems]
    assert any(f"legal hold {hold.pk}" in p.detail for p in report.problems if p.kind == "purged_under_hold")


def test_a_purge_after_a_hold_was_lifted_is_not_a_problem():
    _expired("b/held@1", 3)
    hold = holds.place(subject="b/held@1", reason="litigation", placed_by="legal")
    assert purge_expired().total == 0
    holds.release(hold, released_by="legal", reason="settled")
    assert purge_expired().total == 3
    report = integrity.verify()
    assert report.ok, [str(p) for p in report.problems]


def test_a_forged_purge_record_subject_list_is_named():
    _expired("b/held@1", 3)
    assert purge_expired().total == 3
    with triggers_off() as cursor:  # hide what was purged from the hold check, without the key
        cursor.execute("UPDATE observability_audit_purge_record SET subjects = '[]' WHERE removed_count > 0")
    assert "purge_forged" in kinds(integrity.verify())


# -- the classics: swapped payloads, reordered ids, moved timestamps --------------------------------------------


def _sealed_pair():
    first = audit.record("ARTIFACT_ACCESSED", {**ACCESS, "reader": "alice"})
    second = audit.record("ARTIFACT_ACCESSED", {**ACCESS, "reader": "bob"})
    integrity.seal()
    return first.pk, second.pk


def test_swapping_two_events_payloads_names_both():
    a, b = _sealed_pair()
    with triggers_off() as cursor:
        cursor.execute(
            "UPDATE observability_audit_event SET payload ="
            " (SELECT payload FROM observability_audit_event WHERE id = %s) WHERE id = %s",
            [b, a],
        )
        cursor.execute(
            "UPDATE observability_audit_event SET payload = %s WHERE id = %s",
            ['{"artifact_id": "b/a@1", "version": "1", "reader": "alice", "purpose": "p"}', b],
        )
    found = {(p.kind, p.event_id) for p in integrity.verify().problems}
    assert {("changed", a), ("changed", b)} <= found


def test_swapping_two_events_ids_digests_and_all_is_named():
    a, b = _sealed_pair()
    with triggers_off() as cursor:  # reorder history: each row takes the other's id (its digest comes along)
        cursor.execute("UPDATE observability_audit_event SET id = -1 WHERE id = %s", [a])
        cursor.execute("UPDATE observability_audit_event SET id = %s WHERE id = %s", [a, b])
        cursor.execute("UPDATE observability_audit_event SET id = %s WHERE id = -1", [b])
    found = {(p.kind, p.event_id) for p in integrity.verify().problems}
    assert {("changed", a), ("changed", b)} <= found


def test_moving_an_events_time_back_is_named():
    a, _b = _sealed_pair()
    with triggers_off() as cursor:
        cursor.execute(
            "UPDATE observability_audit_event SET occurred_at = %s WHERE id = %s",
            [datetime.now(UTC) - timedelta(days=3000), a],
        )
    assert ("changed", a) in {(p.kind, p.event_id) for p in integrity.verify().problems}
    result = purge_expired()  # the attacker's hope: the purge erases it, with a valid purge record
    assert result.total == 0 and result.refused == {"ARTIFACT_ACCESSED": [a]}
    assert ("changed", a) in {(p.kind, p.event_id) for p in integrity.verify(full=True).problems}


def test_a_seal_moved_back_in_time_to_vouch_for_recent_events_stops_the_purge():
    from observability_app.audit.retention import TamperedTrail

    a, _b = _sealed_pair()
    with triggers_off() as cursor:
        cursor.execute(
            "UPDATE observability_audit_event SET occurred_at = %s", [datetime.now(UTC) - timedelta(days=3000)]
        )
        cursor.execute(
            "UPDATE observability_audit_seal SET created_at = %s", [datetime.now(UTC) - timedelta(days=3000)]
        )
    with pytest.raises(TamperedTrail):
        purge_expired()
    assert AuditEvent.objects.filter(pk=a).exists()


def test_a_seal_forged_without_the_key_is_named(checkpoint_file):
    audit.record("ARTIFACT_ACCESSED", ACCESS)
    integrity.seal()
    audit.record("ARTIFACT_ACCESSED", ACCESS)
    with triggers_off() as cursor:  # a seal row made up by someone without the key
        cursor.execute(
            "INSERT INTO observability_audit_seal (created_at, first_id, last_id, event_count, late_count, leaves,"
            " previous_digest, digest, keyed, watch, version)"
            " SELECT created_at, last_id + 1, last_id + 1000, 0, 0, %s, digest, %s, true, '{}', 2"
            " FROM observability_audit_seal ORDER BY id DESC LIMIT 1",
            [b"", "e" * 64],
        )
    assert "seal_forged" in kinds(integrity.verify())
