"""``seal_audit`` (once and ``--every``) and ``verify_audit``: the unsealed tail, exit codes, hostile options."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from observability_app import audit
from observability_app.audit import integrity
from observability_app.audit.models import AuditSeal
from tests.attacker import triggers_off
from tests.servers import child_database_url

ACCESS = {"artifact_id": "b/a@1", "version": "1", "reader": "r", "purpose": "p"}


@pytest.mark.django_db
def test_verify_audit_reports_the_unsealed_tail_size_and_age(capsys):
    call_command("verify_audit")
    assert "unsealed tail: none; no seal yet" in capsys.readouterr().out
    audit.record("ARTIFACT_ACCESSED", ACCESS)
    integrity.seal()
    first = audit.record("ARTIFACT_ACCESSED", ACCESS)
    audit.record("ARTIFACT_ACCESSED", ACCESS)
    call_command("verify_audit")
    out = capsys.readouterr().out
    assert "2 not sealed yet; 0 problem(s)" in out
    assert f"unsealed tail: 2 event(s) from id {first.pk}, the oldest written {first.occurred_at.isoformat()}" in out
    assert "s ago); last seal 20" in out
    report = integrity.verify()
    assert report.unsealed_oldest_id == first.pk and report.unsealed_oldest_at == first.occurred_at


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("command", "argv"),
    [
        ("verify_audit", ["--max-problems", "-1"]),
        ("verify_audit", ["--database", "'; DROP TABLE x; --"]),
        ("seal_audit", ["--every", "0"]),
        ("seal_audit", ["--every", "1e9"]),
        ("seal_audit", ["--database", "nope"]),
    ],
)
def test_bad_options_exit_2_and_touch_nothing(command, argv):
    audit.record("ARTIFACT_ACCESSED", ACCESS)
    with pytest.raises(CommandError) as error:
        call_command(command, *argv)
    assert error.value.returncode == 2
    assert not AuditSeal.objects.exists()


@pytest.mark.django_db
def test_seal_audit_exits_1_and_seals_nothing_when_the_chain_lost_its_checkpoint(tmp_path, capsys):
    path = tmp_path / "checkpoints.jsonl"
    with override_settings(OBSERVABILITY={"AUDIT_SIGNING_KEY": "k" * 32, "AUDIT_CHECKPOINT_FILE": str(path)}):
        audit.record("ARTIFACT_ACCESSED", ACCESS)
        integrity.seal()
        with triggers_off() as cursor:  # the newest seal deleted: the file names a seal the DB lacks
            cursor.execute("DELETE FROM observability_audit_seal")
        audit.record("ARTIFACT_ACCESSED", ACCESS)
        with pytest.raises(SystemExit) as exit_info:
            call_command("seal_audit")
    assert exit_info.value.code == 1
    assert "refusing to seal" in capsys.readouterr().err
    assert not AuditSeal.objects.exists()


def _child_env() -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": child_database_url(), "DJANGO_SETTINGS_MODULE": "example_project.settings"}


@pytest.mark.django_db(transaction=True)
def test_seal_audit_every_keeps_the_tail_sealed_and_stops_cleanly_on_sigterm():
    child = subprocess.Popen(
        [sys.executable, "manage.py", "seal_audit", "--every", "0.2"],
        env=_child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for round_ in range(3):
            event = audit.record("ARTIFACT_ACCESSED", {**ACCESS, "round": round_})
            deadline = time.monotonic() + 30
            while integrity.seal_for(event.pk) is None:
                assert time.monotonic() < deadline and child.poll() is None, child.stderr.read()
                time.sleep(0.05)
        assert integrity.verify().unsealed == 0
        child.send_signal(signal.SIGTERM)
        out, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, err
    # JSON log lines share stdout and are written in batches (at exit the last one): the command's own lines only.
    out = "\n".join(line for line in out.splitlines() if not line.startswith("{"))
    assert "sealing every 0.2 s" in out and out.rstrip().endswith("stopped")
    assert out.count("sealed 1 event(s) in 1 seal(s)") == 3
