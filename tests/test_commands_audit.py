"""export_audit and the legal-hold admin: filters, formats, hostile options."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError

from observability_app import audit
from observability_app.audit import holds
from observability_app.audit.exceptions import AppendOnlyViolation, InvalidAuditEvent
from observability_app.audit.models import AuditEvent, LegalHold

pytestmark = pytest.mark.django_db
ACCESS = {"artifact_id": "b/a@1", "version": "1", "reader": "r", "purpose": "p"}


def test_export_jsonl_and_csv_with_filters(tmp_path, capsys):
    old = datetime(2025, 1, 1, tzinfo=UTC)
    audit.record("ARTIFACT_ACCESSED", ACCESS, occurred_at=old, correlation_id="c-1")
    audit.record("ARTIFACT_ACCESSED", {**ACCESS, "artifact_id": "b/other@2"}, correlation_id="c-2")
    audit.record("AUTH_LOGIN_FAILED", {"username": "=cmd|' /C calc'!A0"})
    call_command("export_audit", "--format", "jsonl", "--event-type", "ARTIFACT_ACCESSED", "--subject", "b/a@1")
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 1 and lines[0]["payload"] == ACCESS and lines[0]["correlation_id"] == "c-1"
    call_command("export_audit", "--since", (old + timedelta(days=1)).isoformat(), "--correlation-id", "c-2")
    assert len(capsys.readouterr().out.splitlines()) == 1
    target = tmp_path / "out.csv"
    call_command("export_audit", "--format", "csv", "--output", str(target))
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert [row["event_type"] for row in rows] == ["ARTIFACT_ACCESSED"] * 2 + ["AUTH_LOGIN_FAILED"] + [
        "AUDIT_EXPORTED"
    ] * 2  # the two exports before this one are in the trail too
    assert all(not row["payload"].startswith("=") for row in rows)  # spreadsheet formulas are neutralized


def test_every_export_is_recorded_with_who_which_filter_how_many_and_format(tmp_path, capsys):
    audit.record("ARTIFACT_ACCESSED", ACCESS, correlation_id="c-1")
    audit.record("ARTIFACT_ACCESSED", ACCESS, correlation_id="c-1")
    audit.record("ARTIFACT_ACCESSED", ACCESS, correlation_id="c-2")
    call_command("export_audit", "--correlation-id", "c-1", "--event-type", "ARTIFACT_ACCESSED")
    assert len(capsys.readouterr().out.splitlines()) == 2
    target = tmp_path / "all.csv"
    call_command("export_audit", "--format", "csv", "--output", str(target))
    first, second = AuditEvent.objects.filter(event_type="AUDIT_EXPORTED").order_by("pk")
    assert first.payload["count"] == 2 and first.payload["format"] == "jsonl" and first.payload["complete"] is True
    assert first.payload["filter"] == {"event_types": ["ARTIFACT_ACCESSED"], "correlation_id": "c-1"}
    assert first.source == "command" and first.actor == first.payload["exported_by"] != ""
    assert second.payload["count"] == 4 and second.payload["format"] == "csv"  # three events and the first export
    assert second.payload["filter"] == {}
    assert audit.retention_for("AUDIT_EXPORTED") == 7 * 365


def test_an_export_by_time_and_subject_records_those_options(capsys):
    old = datetime(2025, 1, 1, tzinfo=UTC)
    audit.record("ARTIFACT_ACCESSED", ACCESS, occurred_at=old)
    audit.record("ARTIFACT_ACCESSED", ACCESS, occurred_at=old + timedelta(days=2))
    audit.record("ARTIFACT_ACCESSED", {**ACCESS, "artifact_id": "b/other@2"}, occurred_at=old + timedelta(days=2))
    since, until = (old + timedelta(days=1)).isoformat(), (old + timedelta(days=3)).isoformat()
    call_command("export_audit", "--format", "csv", "--since", since, "--until", until, "--subject", "b/a@1")
    assert len(capsys.readouterr().out.splitlines()) == 2  # the header and one event
    (exported,) = AuditEvent.objects.filter(event_type="AUDIT_EXPORTED")
    assert exported.payload["filter"] == {"since": since, "until": until, "subject": "b/a@1"}
    assert exported.payload["count"] == 1 and exported.payload["format"] == "csv"
    assert exported.payload["exported_by"] == exported.actor and exported.source == "command"


def test_refused_exports_record_nothing():
    for args in (["--format", "xml"], ["--output", "/nonexistent-dir/out.jsonl"], ["--since", "never"]):
        with pytest.raises(CommandError):
            call_command("export_audit", *args)
    assert not AuditEvent.objects.filter(event_type="AUDIT_EXPORTED").exists()


def test_an_export_stopped_early_is_recorded_as_incomplete():
    from observability_app.audit.export import recorded_export_lines

    for n in range(5):
        audit.record("ARTIFACT_ACCESSED", {**ACCESS, "version": str(n)})
    lines = recorded_export_lines(
        AuditEvent.objects.order_by("pk"), "jsonl", exported_by="ann", filters={"q": "x" * 100_000}, chunk_size=2
    )
    assert next(lines) and next(lines)
    lines.close()  # the reader went away after two events
    (event,) = AuditEvent.objects.filter(event_type="AUDIT_EXPORTED")
    assert event.payload["complete"] is False and event.payload["count"] == 2 and event.actor == "ann"
    assert len(event.payload["filter"]["q"]) < 600  # a huge filter is cut, never too large to record


@pytest.mark.parametrize(
    "args",
    [
        ["--format", "xml"],
        ["--event-type", "NOT_A_TYPE"],
        ["--since", "last tuesday"],
        ["--since", "2026-01-02", "--until", "2026-01-01"],
        ["--subject", "x" * 300],
        ["--output", "/nonexistent-dir/out.jsonl"],
    ],
)
def test_export_refuses_bad_options(args):
    with pytest.raises(CommandError):
        call_command("export_audit", *args)


def test_holds_validate_and_are_never_deleted():
    with pytest.raises(InvalidAuditEvent, match="subject, an event type"):
        holds.place(reason="r", placed_by="u")
    with pytest.raises(audit.UnknownEventType):
        holds.place(event_type="NOPE", reason="r", placed_by="u")
    with pytest.raises(InvalidAuditEvent, match="reason"):
        holds.place(subject="b/a@1", reason="  ", placed_by="u")
    hold = holds.place(subject="b/a@1", reason="case 7", placed_by="u")
    with pytest.raises(AppendOnlyViolation):
        hold.delete()
    holds.release(hold, released_by="u", reason="closed")
    with pytest.raises(InvalidAuditEvent, match="already lifted"):
        holds.release(hold, released_by="u", reason="again")


def test_legal_hold_admin_places_and_lifts_and_never_deletes(client):
    User.objects.create_superuser("legal", password="pw-123456789")
    client.login(username="legal", password="pw-123456789")
    response = client.post(
        "/admin/observability_app/legalhold/add/", {"subject": "b/a@1", "event_type": "", "reason": "case 9"}
    )
    assert response.status_code == 302
    hold = LegalHold.objects.get()
    assert hold.placed_by == "legal" and hold.active
    assert AuditEvent.objects.filter(event_type="LEGAL_HOLD_PLACED", actor="legal").exists()
    bad = client.post("/admin/observability_app/legalhold/add/", {"subject": "", "event_type": "", "reason": "x"})
    assert bad.status_code == 200 and LegalHold.objects.count() == 1
    bad_type = client.post("/admin/observability_app/legalhold/add/", {"event_type": "<script>", "reason": "x"})
    assert bad_type.status_code == 200 and b"&lt;script&gt;" in bad_type.content
    changelist = "/admin/observability_app/legalhold/"
    client.post(changelist, {"action": "lift_holds", "_selected_action": [hold.pk]})
    hold.refresh_from_db()
    assert hold.released_by == "legal" and not hold.active
    assert client.post(f"{changelist}{hold.pk}/delete/", {"post": "yes"}).status_code == 403
    assert LegalHold.objects.filter(pk=hold.pk).exists()
