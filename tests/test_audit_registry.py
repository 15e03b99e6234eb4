"""The event-type catalog: built-ins, project types, retention overrides."""

from __future__ import annotations

import pytest
from django.test import override_settings

from observability_app import audit
from observability_app.audit import registry
from observability_app.audit.models import AuditEvent

SPEC_TYPES = {
    "ARTIFACT_CREATED": 7 * 365,
    "ARTIFACT_ACCESSED": 2 * 365,
    "SAFETY_DECISION_RECORDED": audit.PERMANENT,
    "PROVENANCE_CHAIN_VERIFIED": audit.ARTIFACT_LIFETIME,
    "ARTIFACT_DELETED": 7 * 365,
    "INTEGRITY_CHECK_FAILED": 7 * 365,
    "SAFETY_DECISION_OVERTURNED": audit.PERMANENT,
    "AUTH_LOGIN_SUCCEEDED": 2 * 365,
    "AUTH_LOGIN_FAILED": 2 * 365,
    "AUTH_LOGOUT": 2 * 365,
    "ADMIN_ACTION": 7 * 365,
    "CONFIG_CHANGED": 7 * 365,
    "AUDIT_PURGED": audit.PERMANENT,
}


@pytest.mark.parametrize(("name", "retention"), SPEC_TYPES.items())
def test_builtin_types_have_spec_retention(name, retention):
    assert registry.get(name).retention == retention
    assert registry.retention_for(name) == retention


def test_spec_required_fields():
    assert set(registry.get("ARTIFACT_CREATED").required) == {
        "artifact_id",
        "version",
        "client_digest",
        "stored_digest",
        "size_bytes",
        "bucket_id",
    }
    assert set(registry.get("SAFETY_DECISION_RECORDED").required) == {
        "artifact_id",
        "decision",
        "scanner",
        "scanner_version",
        "confidence",
    }
    assert set(registry.get("PROVENANCE_CHAIN_VERIFIED").required) == {"artifact_id", "upstream_refs", "result"}
    assert set(registry.get("AUDIT_PURGED").required) == {"counts", "cutoffs", "run_id"}


def test_retention_override_from_settings_is_read_at_call_time():
    with override_settings(OBSERVABILITY={"AUDIT_RETENTION": {"ARTIFACT_ACCESSED": 5 * 365}}):
        assert registry.retention_for("ARTIFACT_ACCESSED") == 5 * 365
    assert registry.retention_for("ARTIFACT_ACCESSED") == 2 * 365
    with override_settings(OBSERVABILITY={"AUDIT_RETENTION": {"ARTIFACT_ACCESSED": None}}):
        assert registry.retention_for("ARTIFACT_ACCESSED") == audit.PERMANENT


@pytest.mark.django_db
def test_project_types_register_like_builtins():
    registry.register(
        "MODEL_PROMOTED", required={"artifact_id": str, "stage": str}, retention=30, subject_field="artifact_id"
    )
    try:
        event = audit.record("MODEL_PROMOTED", {"artifact_id": "m/a@2", "stage": "prod"})
        assert AuditEvent.objects.get(pk=event.pk).subject == "m/a@2"
        with pytest.raises(audit.MissingPayloadFields):
            audit.record("MODEL_PROMOTED", {"artifact_id": "m/a@2"})
        with pytest.raises(ValueError, match="already registered"):
            registry.register("MODEL_PROMOTED", required=["other"], retention=1)
    finally:
        registry.unregister("MODEL_PROMOTED")
    with pytest.raises(audit.UnknownEventType):
        audit.record("MODEL_PROMOTED", {"artifact_id": "m/a@2", "stage": "prod"})


def test_types_from_settings_are_registered():
    with override_settings(
        OBSERVABILITY={
            "AUDIT_EVENT_TYPES": [{"name": "DATASET_LICENSED", "required": ["license"], "retention_days": 90}]
        }
    ):
        registry.register_from_settings()
    try:
        assert registry.get("DATASET_LICENSED").retention == 90
    finally:
        registry.unregister("DATASET_LICENSED")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "lower_case", "retention": 1}, "UPPER_SNAKE_CASE"),
        ({"name": "X" * 65, "retention": 1}, "UPPER_SNAKE_CASE"),
        ({"name": "OK_NAME", "retention": 0}, "positive number of days"),
        ({"name": "OK_NAME", "retention": -5}, "positive number of days"),
        ({"name": "OK_NAME", "retention": "forever"}, "positive number of days"),
        ({"name": "OK_NAME", "retention": True}, "positive number of days"),
        ({"name": "OK_NAME", "retention": 1, "required": [""]}, "non-empty strings"),
        ({"name": "ARTIFACT_CREATED", "retention": 1}, "already registered"),
    ],
)
def test_bad_registrations_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        registry.register(**kwargs)
    assert "OK_NAME" not in {t.name for t in registry.all_types()}
