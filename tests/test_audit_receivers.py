"""Signals in, events out: built-in type signals, Django's auth signals, the admin's own log."""

from __future__ import annotations

import pytest
from django.contrib.admin import site
from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.auth import authenticate
from django.contrib.auth.models import Group, User
from django.contrib.contenttypes.models import ContentType

from observability_app import audit
from observability_app.audit import signals
from observability_app.audit.models import AuditEvent

pytestmark = pytest.mark.django_db


def events(event_type):
    return list(AuditEvent.objects.filter(event_type=event_type).order_by("id"))


def test_each_builtin_signal_records_its_type():
    signals.artifact_deleted.send(sender=None, artifact_id="b/a@1", version="1", reason="cleanup", actor="ops")
    (event,) = events("ARTIFACT_DELETED")
    assert event.payload == {"artifact_id": "b/a@1", "version": "1", "reason": "cleanup"}
    assert (event.subject, event.actor) == ("b/a@1", "ops")
    assert set(signals.SIGNAL_EVENT_TYPES.values()) <= {t.name for t in audit.all_types()}


def test_signal_with_bad_payload_raises_to_the_sender():
    with pytest.raises(audit.MissingPayloadFields):
        signals.artifact_deleted.send(sender=None, artifact_id="b/a@1")
    assert not AuditEvent.objects.exists()


def test_config_changed_redacts_secret_values():
    signals.config_changed.send(sender=None, key="STORAGE_API_TOKEN", old_value="abc", new_value="def")
    signals.config_changed.send(
        sender=None, key="MAX_UPLOAD_MB", old_value=10, new_value={"limit": 20, "password": "x"}
    )
    secret, plain = events("CONFIG_CHANGED")
    assert secret.payload["old_value"] == secret.payload["new_value"] == "[REDACTED]"
    assert plain.payload["old_value"] == 10
    assert plain.payload["new_value"] == {"limit": 20, "password": "[REDACTED]"}


def test_login_success_failure_and_logout_never_store_the_password(client):
    User.objects.create_user("alice", password="correct-horse-battery")
    assert client.login(username="alice", password="correct-horse-battery")
    client.logout()
    assert authenticate(username="alice", password="wrong-password-123") is None
    (ok,) = events("AUTH_LOGIN_SUCCEEDED")
    (failed,) = events("AUTH_LOGIN_FAILED")
    (logout,) = events("AUTH_LOGOUT")
    assert ok.payload == {"username": "alice"} and ok.actor == "alice"
    assert failed.payload == {"username": "alice"} and failed.outcome == "failure"
    assert logout.payload == {"username": "alice"}
    dumped = repr([e.payload for e in AuditEvent.objects.all()])
    assert "correct-horse" not in dumped and "wrong-password" not in dumped


def test_admin_log_entries_become_admin_actions(rf):
    admin = User.objects.create_superuser("root", password="pw-123456789")
    group = Group.objects.create(name="editors")
    request = rf.post("/admin/auth/group/add/")
    request.user = admin
    # ModelAdmin.log_addition is how the admin logs on every supported Django (4.2: LogEntry.log_action, 5.1+:
    # log_actions); the receiver must turn either into the event.
    model_admin = site._registry[Group]  # site.get_model_admin() is 5.0+
    model_admin.log_addition(request, group, [{"added": {}}])
    (event,) = events("ADMIN_ACTION")
    assert event.payload["object_type"] == "auth.group"
    assert event.payload["object_id"] == str(group.pk)
    assert event.payload["action"] == "addition"
    assert event.payload["change_message"] == "Added."
    assert (event.actor, event.source) == ("root", "admin")


def test_bulk_admin_deletion_log_is_audited_too(client):
    """The admin's "delete selected" action: one log entry per object (4.2: ``log_action`` each, saved one by
    one; 5.1+: ``log_actions``, one ``bulk_create``). Either way every deletion becomes an ADMIN_ACTION."""
    User.objects.create_superuser("root", password="pw-123456789")
    client.login(username="root", password="pw-123456789")
    groups = [Group.objects.create(name=f"g{i}") for i in range(3)]
    response = client.post(
        "/admin/auth/group/",
        {"action": "delete_selected", "post": "yes", "_selected_action": [g.pk for g in groups]},
    )
    assert response.status_code == 302
    assert not Group.objects.exists()
    assert LogEntry.objects.filter(action_flag=DELETION).count() == 3
    recorded = events("ADMIN_ACTION")
    assert sorted(e.payload["object_id"] for e in recorded) == sorted(str(g.pk) for g in groups)
    assert {e.payload["action"] for e in recorded} == {"deletion"}


def test_admin_changes_through_the_admin_site_are_audited(client):
    User.objects.create_superuser("root", password="pw-123456789")
    client.login(username="root", password="pw-123456789")
    response = client.post("/admin/auth/group/add/", {"name": "auditors-x"})
    assert response.status_code == 302
    (event,) = events("ADMIN_ACTION")
    assert event.payload["object_type"] == ContentType.objects.get_for_model(Group).app_label + ".group"
    assert event.route.startswith("admin/") and event.source == "admin"
    assert event.request_id and event.correlation_id
