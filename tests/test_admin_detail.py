"""The event detail page tells the real integrity state in words (observability_app.admin.detail).

Each state is reached for real: events recorded and sealed by the app, then changed in the database the way a
database superuser can (``tests.attacker.triggers_off``), and the page is read as an auditor reads it. The tests
assert the page's words, never compare the page with the output of the function that made it.
"""

from __future__ import annotations

import hashlib
import html
import json
import re

import pytest
from django.test import override_settings

from observability_app import audit
from observability_app.admin import detail
from observability_app.admin.permissions import ensure_auditor_group
from observability_app.audit import integrity
from observability_app.audit.canonical import DIGEST_FIELDS, digest_material, dumps, normalize_payload
from observability_app.audit.models import AuditEvent, AuditSeal
from tests.attacker import triggers_off

pytestmark = pytest.mark.django_db(transaction=True)
CHANGELIST = "/admin/observability_app/auditevent/"
ACCESS = {"artifact_id": "b/a@1", "version": "1", "reader": "r", "purpose": "p"}
TABLE = "observability_audit_event"
#: Raw keys of ``event_seal_status``'s answer, which an auditor must never be shown.
RAW = ("sealed False", "sealed True", "content_matches_digest", "digest_matches_seal", "seal_signature_valid")


@pytest.fixture
def auditor_client(client, django_user_model):
    user = django_user_model.objects.create_user("audra")
    ensure_auditor_group(users=[user.username])
    client.force_login(user)
    return client


def read_page(client, event: AuditEvent) -> tuple[str, str, str]:
    """(headline, the explanation after it, the integrity checks' text) of the event's detail page, as text."""
    response = client.get(f"{CHANGELIST}{event.pk}/change/")
    assert response.status_code == 200
    page = response.content.decode()
    for raw in RAW:
        assert raw not in page, raw
    found = re.search(
        r'<div class="obs-event-integrity obs-event-([a-z-]+)" role="status">'
        r'<strong class="obs-seal-summary">(.*?)</strong> <span class="obs-event-why">(.*?)</span></div>',
        page,
        re.S,
    )
    assert found, "no integrity headline on the page"
    checks = re.search(r'<fieldset class="module aligned obs-integrity-checks">(.*?)</fieldset>', page, re.S)
    assert checks, "no integrity checks on the page"
    words = html.unescape(re.sub(r"<[^>]+>", " ", checks.group(1)))
    state, headline, why = found.group(1), html.unescape(found.group(2)), html.unescape(found.group(3))
    assert detail.HEADLINES[{"not-sealed": detail.NOT_SEALED}.get(state, state)] == headline
    return headline, why, " ".join(words.split())


def recorded(n: int = 3) -> list[AuditEvent]:
    return [audit.record("ARTIFACT_ACCESSED", {**ACCESS, "n": i}) for i in range(n)]


def unkeyed_digest(event: AuditEvent, payload: dict) -> str:
    """The digest a forger computes for a changed payload when the trail has no signing key."""
    columns = {name: getattr(event, name) for name in DIGEST_FIELDS}
    text = dumps(normalize_payload(payload))
    return hashlib.sha256(digest_material(event.event_id.hex, event.occurred_at, columns, text)).hexdigest()


def test_an_event_recorded_after_the_last_seal_is_not_sealed_yet(auditor_client):
    (event,) = recorded(1)
    headline, why, checks = read_page(auditor_client, event)
    assert headline == "Not sealed yet"
    assert "the next manage.py seal_audit run seals it" in why and "matches its digest" in why
    assert "Content against its digest matches" in checks and "Held by no seal yet" in checks
    assert "Sealed and intact" not in checks and "Tampered" not in why


def test_a_sealed_untouched_event_is_sealed_and_intact(auditor_client):
    events = recorded()
    integrity.seal()
    seal = AuditSeal.objects.get()
    headline, why, checks = read_page(auditor_client, events[1])
    assert headline == "Sealed and intact"
    assert f"Seal #{seal.pk} holds this event" in why
    assert f"Held by seal #{seal.pk}, written {seal.created_at:%Y-%m-%d}" in checks
    assert "Digest against the seal's copy matches the digest the seal holds" in checks
    assert "Seal's own digest verifies" in checks


def test_a_sealed_event_whose_payload_was_changed_reads_tampered(auditor_client):
    events = recorded()
    integrity.seal()
    with triggers_off() as cursor:
        cursor.execute(
            f"UPDATE {TABLE} SET payload = %s WHERE id = %s",
            [json.dumps({**ACCESS, "n": 1, "reader": "mallory"}), events[1].pk],
        )
    headline, why, checks = read_page(auditor_client, events[1])
    assert headline == "Tampered"
    assert "its content no longer matches its digest" in why and "verify_audit" in why
    assert "Content against its digest does not match: the event was changed after it was recorded" in checks
    assert "Sealed and intact" not in why
    # Its neighbours, untouched, still read intact.
    assert read_page(auditor_client, events[0])[0] == "Sealed and intact"


@override_settings(OBSERVABILITY={"AUDIT_SIGNING_KEY": None})
def test_without_a_key_a_recomputed_digest_still_reads_tampered_by_the_seal(auditor_client):
    """A forger without a key to beat can make payload and digest agree; the seal's copy of the digest cannot."""
    events = recorded()
    integrity.seal()
    forged = {**ACCESS, "n": 2, "reader": "mallory"}
    with triggers_off() as cursor:
        cursor.execute(
            f"UPDATE {TABLE} SET payload = %s, digest = %s WHERE id = %s",
            [json.dumps(forged), unkeyed_digest(events[2], forged), events[2].pk],
        )
    headline, why, checks = read_page(auditor_client, events[2])
    assert headline == "Tampered"
    assert "its digest is not the one its seal holds" in why
    assert "its content no longer matches" not in why  # payload and digest agree: only the seal tells
    assert "Content against its digest matches" in checks
    assert "Digest against the seal's copy differs from the digest the seal holds" in checks


def test_an_event_whose_seal_digest_was_changed_reads_tampered(auditor_client):
    events = recorded()
    integrity.seal()
    seal = AuditSeal.objects.get()
    with triggers_off() as cursor:
        cursor.execute("UPDATE observability_audit_seal SET digest = %s WHERE id = %s", ["f" * 64, seal.pk])
    headline, why, checks = read_page(auditor_client, events[0])
    assert headline == "Tampered"
    assert f"its seal (#{seal.pk}) does not verify" in why
    assert "Seal's own digest does not verify: the seal was altered or forged" in checks
    assert "Content against its digest matches" in checks


def test_an_unsealed_event_whose_payload_was_changed_reads_tampered_not_unsealed(auditor_client):
    events = recorded(2)
    with triggers_off() as cursor:
        cursor.execute(
            f"UPDATE {TABLE} SET payload = %s WHERE id = %s", [json.dumps({**ACCESS, "purpose": "x"}), events[0].pk]
        )
    headline, why, checks = read_page(auditor_client, events[0])
    assert headline == "Tampered"
    assert "its content no longer matches its digest" in why
    assert "Held by no seal yet" in checks
    assert read_page(auditor_client, events[1])[0] == "Not sealed yet"


def insert_copy_at(pk: int, source: AuditEvent) -> AuditEvent:
    """A superuser's forged event: a copy of ``source`` with a new event id, written at the free id ``pk``."""
    columns = [field.column for field in AuditEvent._meta.concrete_fields if field.column not in ("id", "event_id")]
    with triggers_off() as cursor:
        cursor.execute(
            f"INSERT INTO {TABLE} (id, event_id, {', '.join(columns)})"
            f" SELECT %s, %s, {', '.join(columns)} FROM {TABLE} WHERE id = %s",
            [pk, "0" * 31 + "1", source.pk],
        )
    return AuditEvent.objects.get(pk=pk)


def free_id_inside_a_seal() -> tuple[AuditEvent, int]:
    """(an event, a free id) inside the range of a seal that verifies: the second of three events is deleted
    before the seal is written, so the seal covers its id without holding it."""
    events = recorded()
    with triggers_off() as cursor:
        cursor.execute(f"DELETE FROM {TABLE} WHERE id = %s", [events[1].pk])
    integrity.seal()
    return events[0], events[1].pk


def test_an_event_inserted_inside_a_sealed_range_with_the_key_reads_tampered(auditor_client):
    first, gap = free_id_inside_a_seal()
    headline, why, checks = read_page(auditor_client, insert_copy_at(gap, first))
    assert headline == "Tampered"
    assert "its content no longer matches its digest" in why  # a copied digest does not fit a new event id
    seal = AuditSeal.objects.get()
    assert f"Held by no seal, though seal #{seal.pk}'s id range covers it" in checks


@override_settings(OBSERVABILITY={"AUDIT_SIGNING_KEY": None})
def test_an_event_inserted_with_a_recomputed_digest_is_not_called_sealed(auditor_client):
    """Without a key, a forger can give an inserted event a digest that fits: no seal holds it, and the page says
    what that can mean (a late commit or an insertion) instead of calling it sealed."""
    first, gap = free_id_inside_a_seal()
    inserted = insert_copy_at(gap, first)
    with triggers_off() as cursor:
        cursor.execute(
            f"UPDATE {TABLE} SET digest = %s WHERE id = %s", [unkeyed_digest(inserted, inserted.payload), gap]
        )
    headline, why, checks = read_page(auditor_client, AuditEvent.objects.get(pk=gap))
    assert headline == "Not sealed yet"
    last = AuditSeal.objects.get().last_id
    assert f"seals already reach past its id (up to event {last})" in why
    assert "inserted behind the app's back" in why and "verify_audit" in why
    assert "Content against its digest matches" in checks and "Sealed and intact" not in checks


def test_a_seal_whose_event_list_was_replaced_reads_tampered(auditor_client):
    events = recorded()
    integrity.seal()
    seal = AuditSeal.objects.get()
    with triggers_off() as cursor:
        cursor.execute("UPDATE observability_audit_seal SET leaves = %s WHERE id = %s", [b"", seal.pk])
    headline, why, checks = read_page(auditor_client, events[0])
    assert headline == "Tampered"
    assert f"the seal whose range covers it (#{seal.pk}) does not verify" in why
    assert f"seal #{seal.pk} does not verify: the seal was altered or forged" in checks
    assert not integrity.verify(record_run=False).ok  # verify names it too


def test_a_seal_that_cannot_be_read_is_never_called_intact(auditor_client):
    events = recorded()
    integrity.seal()
    with triggers_off() as cursor:
        cursor.execute("UPDATE observability_audit_seal SET leaves = %s", [b"\x00" * 7])  # not whole leaves
    headline, why, _checks = read_page(auditor_client, events[0])
    assert headline == "Tampered", headline
    assert "verify_audit" in why
