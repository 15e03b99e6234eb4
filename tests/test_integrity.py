"""Seals and verify_audit: tampering behind the app's back (triggers disabled) is found and named."""

from __future__ import annotations

import hashlib
import json

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.test import override_settings

from observability_app import audit
from observability_app.audit import integrity
from observability_app.audit.canonical import DIGEST_FIELDS, EVENT_COLUMNS, digest_material, dumps, normalize_payload
from observability_app.audit.models import AuditEvent, AuditSeal, AuditVerification
from observability_app.audit.recording import _inserter, build_row
from tests.attacker import triggers_off

pytestmark = pytest.mark.django_db(transaction=True)
ACCESS = {"artifact_id": "b/a@1", "version": "1", "reader": "r", "purpose": "p"}
TABLE = "observability_audit_event"


def superuser_tampering():
    """What a database superuser can do: switch the append-only triggers off for a while."""
    return triggers_off(connection)


def insert_with_id(pk: int, payload=ACCESS, digest: str | None = None) -> None:
    """An event written with a chosen id (to make gaps); ``digest`` overrides the app's (a forger's value)."""
    row = build_row("ARTIFACT_ACCESSED", payload)
    params = _inserter(connection).params(row, connection)
    if digest is not None:
        params[-1] = digest
    columns = ["id", *EVENT_COLUMNS]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {TABLE} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})", [pk, *params]
        )
    return row


def unkeyed_digest(event: AuditEvent, payload: dict) -> str:
    columns = {name: getattr(event, name) for name in DIGEST_FIELDS}
    text = dumps(normalize_payload(payload))
    return hashlib.sha256(digest_material(event.event_id.hex, event.occurred_at, columns, text)).hexdigest()


def kinds(report) -> set[tuple[str, int | None]]:
    return {(problem.kind, problem.event_id) for problem in report.problems}


def make_trail(n: int = 6) -> list[AuditEvent]:
    events = [audit.record("ARTIFACT_ACCESSED", {**ACCESS, "n": i}) for i in range(n)]
    integrity.seal()
    return events


def test_an_untouched_trail_verifies_and_the_run_is_recorded():
    make_trail()
    report = integrity.verify()
    assert report.ok and report.events_checked == 6 and report.seals_checked == 1
    assert integrity.last_verification()[1] == 0
    assert AuditVerification.objects.count() == 1


def test_editing_a_payload_is_reported_with_the_event_id():
    events = make_trail()
    with superuser_tampering() as cursor:
        cursor.execute(
            f"UPDATE {TABLE} SET payload = %s WHERE id = %s", [json.dumps({**ACCESS, "n": 99}), events[2].pk]
        )
    assert kinds(integrity.verify()) == {("changed", events[2].pk)}


def test_editing_payload_and_recomputing_the_digest_without_the_key_is_still_found():
    events = make_trail()
    forged = {**ACCESS, "reader": "mallory"}
    with superuser_tampering() as cursor:
        cursor.execute(
            f"UPDATE {TABLE} SET payload = %s, digest = %s WHERE id = %s",
            [json.dumps(forged), unkeyed_digest(events[1], forged), events[1].pk],
        )
    assert ("changed", events[1].pk) in kinds(integrity.verify())


def test_deleting_an_event_is_reported_with_its_id():
    events = make_trail()
    with superuser_tampering() as cursor:
        cursor.execute(f"DELETE FROM {TABLE} WHERE id = %s", [events[4].pk])
    assert kinds(integrity.verify()) == {("removed", events[4].pk)}


def test_inserting_a_forged_event_inside_a_sealed_range_is_reported():
    first = audit.record("ARTIFACT_ACCESSED", ACCESS)
    insert_with_id(first.pk + 10)
    integrity.seal()
    with superuser_tampering():
        insert_with_id(first.pk + 5, payload={**ACCESS, "reader": "forger"}, digest="0" * 64)
    assert kinds(integrity.verify()) == {("inserted", first.pk + 5)}


def test_verify_audit_command_exits_1_and_names_the_event(capsys):
    events = make_trail()
    call_command("verify_audit")
    assert "0 problem(s)" in capsys.readouterr().out
    with superuser_tampering() as cursor:
        cursor.execute(f"DELETE FROM {TABLE} WHERE id = %s", [events[0].pk])
    with pytest.raises(SystemExit) as exit_info:
        call_command("verify_audit")
    assert exit_info.value.code == 1
    assert f"removed: event {events[0].pk}" in capsys.readouterr().out


def test_a_seal_recomputed_without_the_key_is_reported_forged():
    events = make_trail()
    seal = AuditSeal.objects.get()
    forged = {**ACCESS, "reader": "mallory"}
    new_digest = unkeyed_digest(events[3], forged)
    leaves = bytearray(bytes(seal.leaves))
    for offset in range(0, len(leaves), integrity.LEAF):
        if int.from_bytes(leaves[offset : offset + 8], "big") == events[3].pk:
            leaves[offset + 8 : offset + 40] = bytes.fromhex(new_digest)
    recomputed = integrity.seal_digest("", seal.first_id, seal.last_id, seal.event_count, bytes(leaves), None)
    with superuser_tampering() as cursor:
        cursor.execute(
            f"UPDATE {TABLE} SET payload = %s, digest = %s WHERE id = %s",
            [json.dumps(forged), new_digest, events[3].pk],
        )
        cursor.execute(
            "UPDATE observability_audit_seal SET leaves = %s, digest = %s WHERE id = %s",
            [bytes(leaves), recomputed, seal.pk],
        )
    found = kinds(integrity.verify())
    assert ("seal_forged", None) in found and ("changed", events[3].pk) in found


def test_late_commits_are_sealed_later_not_ignored():
    first = audit.record("ARTIFACT_ACCESSED", ACCESS)
    insert_with_id(first.pk + 10)
    integrity.seal()
    insert_with_id(first.pk + 3)  # committed after the seal that covered its id range
    report = integrity.verify()
    assert report.ok and report.unsealed == 1
    result = integrity.seal()
    assert result.late == 1
    report = integrity.verify()
    assert report.ok and report.unsealed == 0 and report.events_checked == 3


def test_a_late_commit_in_the_gap_before_a_seals_first_event_is_sealed_later():
    first = audit.record("ARTIFACT_ACCESSED", ACCESS)
    integrity.seal()
    insert_with_id(first.pk + 5)  # committed while ids first+1 .. first+4 are still in open transactions
    integrity.seal()
    insert_with_id(first.pk + 2)  # one of those commits now, below the first event the second seal read
    report = integrity.verify()
    assert report.ok and report.unsealed == 1
    assert integrity.seal().late == 1
    report = integrity.verify()
    assert report.ok and report.unsealed == 0 and report.events_checked == 3


def test_seals_chain_and_log_their_digest(caplog):
    make_trail(3)
    audit.record("ARTIFACT_ACCESSED", ACCESS)
    with caplog.at_level("INFO", logger="observability_app.audit.integrity"):
        integrity.seal()
    first, second = AuditSeal.objects.order_by("id")
    assert second.previous_digest == first.digest
    assert any(getattr(r, "seal_digest", None) == second.digest for r in caplog.records)
    assert integrity.seal().seals == []  # nothing new: no empty seal


def test_event_seal_status_for_the_admin():
    events = make_trail(2)
    status = integrity.event_seal_status(AuditEvent.objects.get(pk=events[0].pk))
    assert status["sealed"] and status["summary"] == "sealed and intact"
    later = audit.record("ARTIFACT_ACCESSED", ACCESS)
    assert integrity.event_seal_status(AuditEvent.objects.get(pk=later.pk))["summary"] == "not sealed yet"


def test_changing_the_key_makes_every_seal_fail_verification():
    make_trail(2)
    with override_settings(OBSERVABILITY={"AUDIT_SIGNING_KEY": "another-key"}):
        report = integrity.verify(record_run=False)
    assert ("seal_forged", None) in kinds(report)


def test_seal_audit_command(capsys):
    audit.record("ARTIFACT_ACCESSED", ACCESS)
    call_command("seal_audit")
    assert "sealed 1 event(s) in 1 seal(s)" in capsys.readouterr().out
    with transaction.atomic():
        assert AuditSeal.objects.count() == 1


def test_a_late_sealed_event_removed_behind_the_apps_back_is_reported():
    first = audit.record("ARTIFACT_ACCESSED", ACCESS)
    insert_with_id(first.pk + 10)
    integrity.seal()
    insert_with_id(first.pk + 3)
    assert integrity.seal().late == 1
    with superuser_tampering() as cursor:
        cursor.execute(f"DELETE FROM {TABLE} WHERE id = %s", [first.pk + 3])
    assert kinds(integrity.verify()) == {("removed", first.pk + 3)}


ODD = 'quote " backslash \\ newline \n tab \t control \x01 \x1f slash / é 😀 \u2028'


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("subject", "b/other@1"),
        ("actor", "mallory"),
        ("outcome", "failure"),
        ("user_agent", ODD),
        ("environment", "production"),
        ("event_type", "ARTIFACT_DELETED"),
    ],
)
def test_changing_any_digest_column_is_reported(column, value):
    assert column in DIGEST_FIELDS
    events = make_trail(3)
    with superuser_tampering() as cursor:
        cursor.execute(f"UPDATE {TABLE} SET {column} = %s WHERE id = %s", [value, events[1].pk])
    assert kinds(integrity.verify()) == {("changed", events[1].pk)}


def test_changing_the_time_or_the_event_id_is_reported():
    events = make_trail(3)
    with superuser_tampering() as cursor:
        cursor.execute(
            f"UPDATE {TABLE} SET occurred_at = %s WHERE id = %s",
            [
                events[0].occurred_at.replace(microsecond=(events[0].occurred_at.microsecond + 1) % 1_000_000),
                events[0].pk,
            ],
        )
        cursor.execute(f"UPDATE {TABLE} SET event_id = %s WHERE id = %s", ["0" * 31 + "1", events[2].pk])
    assert kinds(integrity.verify()) == {("changed", events[0].pk), ("changed", events[2].pk)}


def test_columns_and_payloads_that_need_escaping_verify_and_their_changes_are_found():
    events = [
        audit.record(
            "ARTIFACT_ACCESSED",
            {**ACCESS, "reader": ODD, "nested": {"z": [1, 2.5, None], ODD: True}},
            subject=ODD,
            user_agent=ODD,
            route=ODD,
        ),
        audit.record("ARTIFACT_ACCESSED", {**ACCESS, "ratio": 1e-07, "big": 10**30, "float": 1e16}),
    ]
    integrity.seal()
    assert integrity.verify().ok
    with superuser_tampering() as cursor:
        cursor.execute(f"UPDATE {TABLE} SET route = %s WHERE id = %s", [ODD + "!", events[0].pk])
    assert kinds(integrity.verify()) == {("changed", events[0].pk)}


def test_a_payload_stored_with_other_spacing_and_key_order_is_the_same_content():
    """Only content counts: a superuser rewriting the same JSON differently has changed nothing."""
    events = make_trail(2)
    reordered = dict(reversed(list({**ACCESS, "n": 1}.items())))
    with superuser_tampering() as cursor:
        cursor.execute(
            f"UPDATE {TABLE} SET payload = %s WHERE id = %s", [json.dumps(reordered, indent=2), events[1].pk]
        )
    assert integrity.verify().ok


def test_a_payload_that_is_not_an_object_any_more_is_reported():
    events = make_trail(2)
    with superuser_tampering() as cursor:
        cursor.execute(f"UPDATE {TABLE} SET payload = %s WHERE id = %s", [json.dumps([ACCESS]), events[0].pk])
    assert kinds(integrity.verify()) == {("changed", events[0].pk)}


def test_verification_reads_in_chunks_across_seals():
    """Several seals and several fetched chunks: every event is checked against its own seal's leaf."""
    audit.record_many([("ARTIFACT_ACCESSED", {**ACCESS, "n": i}) for i in range(23)])
    integrity.seal(max_events=5)
    assert AuditSeal.objects.count() == 5
    report = integrity.verify(chunk_size=4)
    assert report.ok and report.events_checked == 23 and report.seals_checked == 5
    victim = AuditEvent.objects.order_by("id").values_list("id", flat=True)[11]
    with superuser_tampering() as cursor:
        cursor.execute(f"UPDATE {TABLE} SET payload = %s WHERE id = %s", [json.dumps({**ACCESS, "n": -1}), victim])
    assert kinds(integrity.verify(chunk_size=4)) == {("changed", victim)}


def test_the_fast_digest_path_agrees_with_the_canonical_form(monkeypatch):
    """Every genuine row verifies on the fast path (C encoders, server-built columns on PostgreSQL) without the
    exact fallback: the two give the same bytes, escaping included."""
    from observability_app.audit import canonical

    audit.record("ARTIFACT_ACCESSED", {**ACCESS, "reader": ODD, "list": [1, 2.5, None, {"b": 1, "a": 2}]}, subject=ODD)
    audit.record("ARTIFACT_ACCESSED", {**ACCESS, "ratio": 1e-07, "big": 10**30, "float": 1e16}, user_agent=ODD)
    integrity.seal()

    def refuse(*args):
        raise AssertionError("fell back to the exact digest for a genuine row")

    monkeypatch.setattr(canonical, "_exact_row_digest", refuse)
    assert integrity.verify(record_run=False).ok


def test_a_purge_record_forged_without_the_key_does_not_explain_a_deletion():
    from datetime import UTC, datetime

    from observability_app.audit.models import AuditPurgeRecord

    events = make_trail(4)
    seal = AuditSeal.objects.get()
    with superuser_tampering() as cursor:
        cursor.execute(f"DELETE FROM {TABLE} WHERE id = %s", [events[2].pk])
    removed = events[2].pk.to_bytes(8, "big")
    AuditPurgeRecord.objects.create(
        run_id="forged",
        seal=seal,
        created_at=datetime.now(UTC),
        removed=removed,
        removed_count=1,
        digest=integrity.purge_digest(seal.digest, "forged", removed, None),  # no key: what an attacker can compute
    )
    assert kinds(integrity.verify()) == {("purge_forged", None), ("removed", events[2].pk)}


@pytest.mark.parametrize("odd", ["unit \x1f separator", "literal \\u001f escape", "both \x1f\\u001f"])
def test_values_with_unit_separators_and_literal_escapes_verify_and_their_changes_are_found(odd):
    events = [audit.record("ARTIFACT_ACCESSED", {**ACCESS, "reader": odd}, subject=odd, actor=odd) for _ in range(2)]
    integrity.seal()
    assert integrity.verify().ok
    with superuser_tampering() as cursor:
        cursor.execute(f"UPDATE {TABLE} SET actor = %s WHERE id = %s", [odd + "\x1f", events[1].pk])
    assert kinds(integrity.verify()) == {("changed", events[1].pk)}
