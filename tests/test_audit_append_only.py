"""Append-only at every level: model, queryset, raw SQL through triggers; the purge gate is the only opening."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction

from observability_app import audit
from observability_app.audit.db import purge_gate
from observability_app.audit.models import AuditEvent

ACCESS = {"artifact_id": "models/a@1", "version": "1", "reader": "ci", "purpose": "eval"}
TABLE = AuditEvent._meta.db_table

pytestmark = pytest.mark.django_db


@pytest.fixture
def event():
    return audit.record("ARTIFACT_ACCESSED", ACCESS)


def test_model_save_of_stored_event_is_refused(event):
    event.actor = "mallory"
    with pytest.raises(audit.AppendOnlyViolation, match="save"):
        event.save()
    fetched = AuditEvent.objects.get(pk=event.pk)
    fetched.payload = {}
    with pytest.raises(audit.AppendOnlyViolation):
        fetched.save()
    assert AuditEvent.objects.get(pk=event.pk).payload == ACCESS


def test_model_and_queryset_delete_and_update_are_refused(event):
    with pytest.raises(audit.AppendOnlyViolation):
        event.delete()
    with pytest.raises(audit.AppendOnlyViolation):
        AuditEvent.objects.filter(pk=event.pk).delete()
    with pytest.raises(audit.AppendOnlyViolation):
        AuditEvent.objects.all().update(actor="mallory")
    with pytest.raises(audit.AppendOnlyViolation):
        AuditEvent.objects.bulk_update([event], ["actor"])
    with pytest.raises(audit.AppendOnlyViolation):
        AuditEvent.objects.update_or_create(pk=event.pk, defaults={"actor": "x"})
    assert AuditEvent.objects.get(pk=event.pk).actor == event.actor


@pytest.mark.parametrize(
    "sql",
    [
        f"UPDATE {TABLE} SET actor = 'mallory'",
        f"UPDATE {TABLE} SET payload = '{{}}'",
        f"DELETE FROM {TABLE}",
        f"DELETE FROM {TABLE} WHERE id = (SELECT min(id) FROM {TABLE})",
    ],
)
def test_raw_sql_update_and_delete_fail(event, sql):
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql)
    stored = AuditEvent.objects.get(pk=event.pk)
    assert stored.actor == event.actor and stored.payload == ACCESS


def test_purge_gate_opens_delete_for_one_transaction_only(event):
    other = audit.record("ARTIFACT_ACCESSED", ACCESS)
    with transaction.atomic(), purge_gate(), connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {TABLE} WHERE id = %s", [event.pk])
    assert not AuditEvent.objects.filter(pk=event.pk).exists()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {TABLE} WHERE id = %s", [other.pk])
    assert AuditEvent.objects.filter(pk=other.pk).exists()


def test_purge_gate_never_allows_update(event):
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        purge_gate(),
        connection.cursor() as cursor,
    ):
        cursor.execute(f"UPDATE {TABLE} SET actor = 'mallory'")


@pytest.mark.django_db(transaction=True)
def test_purge_gate_requires_a_transaction():
    with pytest.raises(RuntimeError, match=r"inside transaction\.atomic"), purge_gate():
        pass


@pytest.mark.django_db(transaction=True)
def test_gate_closes_after_commit_in_autocommit_mode():
    kept = audit.record("ARTIFACT_ACCESSED", ACCESS)
    with transaction.atomic(), purge_gate():
        pass
    with pytest.raises(DatabaseError, match="append-only"), connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {TABLE} WHERE id = %s", [kept.pk])
    assert AuditEvent.objects.filter(pk=kept.pk).exists()
