"""Incremental verification: what is new since the last pass, a random sample of older seals, the chain's links,
and ``--full``. Each test tampers for real (triggers off, as a superuser) and asserts what each mode names."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.test import override_settings

from observability_app import audit
from observability_app.audit import integrity
from observability_app.audit.models import AuditSeal, AuditVerification
from tests.attacker import triggers_off

pytestmark = pytest.mark.django_db(transaction=True)
ACCESS = {"artifact_id": "b/a@1", "version": "1", "reader": "r", "purpose": "p"}
KEYED = override_settings(OBSERVABILITY={"AUDIT_SIGNING_KEY": "k" * 32})


@pytest.fixture(autouse=True)
def _keyed():
    with KEYED:
        yield


def history(seals: int, per_seal: int = 5) -> list[int]:
    ids = []
    for n in range(seals):
        ids += [audit.record("ARTIFACT_ACCESSED", {**ACCESS, "n": n, "i": i}).pk for i in range(per_seal)]
        integrity.seal()
    return ids


def kinds(report) -> set[str]:
    return {p.kind for p in report.problems}


def tamper(pk: int) -> None:
    with triggers_off() as cursor:
        cursor.execute("UPDATE observability_audit_event SET actor = 'mallory' WHERE id = %s", [pk])


def test_the_first_run_is_full_and_the_next_starts_from_it():
    history(4)
    first = integrity.verify()
    assert first.ok and first.full and first.events_checked == 20
    audit.record("ARTIFACT_ACCESSED", ACCESS)
    integrity.seal()
    second = integrity.verify(sample=0)
    assert second.ok and not second.full
    assert second.baseline == AuditVerification.objects.order_by("id").first().pk
    assert second.events_checked == 1 and second.seals_checked == 1


def test_tampering_after_the_baseline_is_found_by_the_incremental_run():
    history(3)
    assert integrity.verify().ok
    new = history(1)
    tamper(new[2])
    report = integrity.verify(sample=0)
    assert not report.full and ("changed" in kinds(report))


def test_old_tampering_is_found_by_full_and_by_a_sample_that_reaches_it_not_by_new_events_alone():
    ids = history(3)
    assert integrity.verify().ok
    history(1)
    tamper(ids[0])
    assert integrity.verify(sample=0, record_run=False).ok  # documented: only --full or the sample reach history
    assert "changed" in kinds(integrity.verify(sample=3, record_run=False))  # every older seal drawn
    assert "changed" in kinds(integrity.verify(full=True))


def test_after_a_failed_run_the_next_one_checks_everything():
    history(3)
    assert integrity.verify().ok
    new = history(1)
    tamper(new[0])
    assert not integrity.verify(sample=0).ok  # the tampered event is in a seal after the baseline
    report = integrity.verify(sample=0)
    assert report.full and "changed" in kinds(report)


def test_a_broken_link_anywhere_in_history_is_found_without_reading_old_leaves():
    history(4)
    assert integrity.verify().ok
    history(1)
    second = AuditSeal.objects.order_by("id")[1]
    with triggers_off() as cursor:
        cursor.execute("DELETE FROM observability_audit_seal WHERE id = %s", [second.pk])
    report = integrity.verify(sample=0)
    assert not report.full and "chain_broken" in kinds(report)


def test_a_forged_verified_through_claim_is_named_and_the_run_goes_full():
    ids = history(3)
    assert integrity.verify().ok
    tamper(ids[0])
    run = AuditVerification.objects.order_by("-id").first()
    with triggers_off() as cursor:  # claim a later pass, without the key
        cursor.execute("UPDATE observability_audit_verification SET digest = %s WHERE id = %s", ["0" * 64, run.pk])
    report = integrity.verify(sample=0)
    assert report.full
    assert {"verification_forged", "changed"} <= kinds(report)


def test_a_rewritten_baseline_seal_sends_the_run_full():
    history(3)
    assert integrity.verify().ok
    newest = AuditSeal.objects.order_by("-id").first()
    with triggers_off() as cursor:
        cursor.execute("UPDATE observability_audit_seal SET digest = %s WHERE id = %s", ["f" * 64, newest.pk])
    report = integrity.verify(sample=0)
    assert report.full and "seal_forged" in kinds(report)


def test_without_a_signing_key_every_run_is_full():
    with override_settings(OBSERVABILITY={}):
        history(2)
        assert integrity.verify().full
        assert integrity.verify().full


def test_purges_of_old_history_keep_incremental_runs_passing():
    from datetime import UTC, datetime, timedelta

    from observability_app.audit.retention import purge_expired

    old = datetime.now(UTC) - timedelta(days=3000)
    for n in range(3):
        audit.record_many(
            [("ARTIFACT_ACCESSED", {**ACCESS, "n": n})] * 0
            or [
                {"event_type": "ARTIFACT_ACCESSED", "payload": {**ACCESS, "n": n, "i": i}, "occurred_at": old}
                for i in range(4)
            ]
        )
        integrity.seal()
    assert integrity.verify().ok
    assert purge_expired().total == 12
    report = integrity.verify(sample=0)
    assert report.ok and not report.full, [str(p) for p in report.problems]


def test_the_command_says_which_mode_ran(capsys):
    history(2)
    call_command("verify_audit")
    assert "full run" in capsys.readouterr().out
    call_command("verify_audit", "--sample", "1")
    out = capsys.readouterr().out
    assert "incremental run since verification" in out and "1 older seal(s) at random" in out
    call_command("verify_audit", "--full")
    assert "full run" in capsys.readouterr().out


def test_a_failed_run_counts_in_the_metrics_through_the_signal_and_a_passing_one_does_not():
    from observability_app.metrics.registry import REGISTRY

    def failures() -> float:
        return REGISTRY.get_sample_value("audit_verification_failures_total") or 0.0

    ids = history(1)
    before = failures()
    assert integrity.verify().ok
    assert failures() == before
    tamper(ids[0])
    assert not integrity.verify(full=True).ok
    assert failures() == before + 1
