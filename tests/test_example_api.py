"""The example bucket service end to end: every endpoint records the right audit event."""

from __future__ import annotations

import hashlib
import json

import pytest
from django.core.management import call_command
from hypothesis import given
from hypothesis import strategies as st

from example_project.bucket.models import Artifact
from observability_app.audit.models import AuditEvent

pytestmark = pytest.mark.django_db

URL = "/api/v1/buckets/models/artifacts/classifier/1.0.0"


def digest(content: bytes) -> str:
    return "sha256:" + hashlib.sha256(content).hexdigest()


def put(client, content=b"weights", url=URL, header=None, **extra):
    return client.put(
        url,
        content,
        content_type="application/octet-stream",
        HTTP_X_CONTENT_DIGEST=header if header is not None else digest(content),
        **extra,
    )


def only(event_type):
    (event,) = AuditEvent.objects.filter(event_type=event_type)
    return event


def test_put_stores_and_records_artifact_created(client):
    response = put(client, HTTP_X_CORRELATION_ID="abc-123")
    assert response.status_code == 201
    body = response.json()
    assert body == {"artifact_id": "models/classifier@1.0.0", "digest": digest(b"weights"), "size_bytes": 7}
    event = only("ARTIFACT_CREATED")
    assert event.payload["client_digest"] == event.payload["stored_digest"] == digest(b"weights")
    assert event.payload["bucket_id"] == "models" and event.payload["size_bytes"] == 7
    assert event.correlation_id == "abc-123" and response["X-Correlation-Id"] == "abc-123"
    assert event.request_id == response["X-Request-Id"]
    assert event.source == "api" and event.route.startswith("api/v1/buckets/")


def test_digest_mismatch_is_400_with_integrity_event_and_nothing_stored(client):
    response = put(client, header="sha256:" + "0" * 64)
    assert response.status_code == 400
    assert not Artifact.objects.exists()
    event = only("INTEGRITY_CHECK_FAILED")
    assert event.payload["expected_digest"] == "sha256:" + "0" * 64
    assert event.payload["actual_digest"] == digest(b"weights")
    assert event.outcome == "failure"
    assert not AuditEvent.objects.filter(event_type="ARTIFACT_CREATED").exists()


def test_existing_version_is_409(client):
    assert put(client).status_code == 201
    response = put(client, content=b"other")
    assert response.status_code == 409
    assert AuditEvent.objects.filter(event_type="ARTIFACT_CREATED").count() == 1
    assert bytes(Artifact.objects.get().content) == b"weights"


def test_get_returns_bytes_and_records_access(client):
    put(client)
    response = client.get(URL, HTTP_X_READER="eval-job", HTTP_X_PURPOSE="benchmark")
    assert response.status_code == 200 and response.content == b"weights"
    event = only("ARTIFACT_ACCESSED")
    assert event.payload == {
        "artifact_id": "models/classifier@1.0.0",
        "version": "1.0.0",
        "reader": "eval-job",
        "purpose": "benchmark",
    }
    assert client.get(URL.replace("1.0.0", "9.9.9")).status_code == 404


def test_delete_records_artifact_deleted(client):
    put(client)
    assert client.delete(URL, HTTP_X_REASON="retired").status_code == 204
    assert only("ARTIFACT_DELETED").payload["reason"] == "retired"
    assert client.delete(URL).status_code == 404


def test_scan_overturn_and_provenance(client):
    put(client)
    put(client, content=b"data", url="/api/v1/buckets/data/artifacts/reviews/1")
    scan = client.post(URL + "/scan").json()
    assert scan["decision"] == "approved"
    assert only("SAFETY_DECISION_RECORDED").payload["scanner"] == "example-scanner"
    overturn = client.post(
        URL + "/overturn", {"decision": "quarantined", "reason": "manual review"}, content_type="application/json"
    )
    assert overturn.status_code == 200
    assert only("SAFETY_DECISION_OVERTURNED").payload["previous_decision"] == "approved"
    good = client.post(URL + "/provenance", {"upstream_refs": ["data/reviews@1"]}, content_type="application/json")
    bad = client.post(URL + "/provenance", {"upstream_refs": ["data/missing@1"]}, content_type="application/json")
    assert good.json()["result"] == "verified" and bad.json()["result"] == "failed"
    results = sorted(e.payload["result"] for e in AuditEvent.objects.filter(event_type="PROVENANCE_CHAIN_VERIFIED"))
    assert results == ["failed", "verified"]


def test_scanner_decisions_are_deterministic(client):
    eicar = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
    put(client, content=eicar)
    first = client.post(URL + "/scan").json()
    second = client.post(URL + "/scan").json()
    assert first == second and first["decision"] == "rejected"


@pytest.mark.parametrize(
    "header",
    [
        "",
        "md5:abc",
        "sha256:xyz",
        "sha256:" + "a" * 63,
        "sha256:" + "a" * 65,
        "sha256: " + "a" * 64,
        "sha256:" + "a" * 32 + "\n" + "a" * 31,
    ],
)
def test_malformed_digest_header_is_400_and_stores_nothing(client, header):
    response = put(client, header=header)
    assert response.status_code == 400
    assert not Artifact.objects.exists()
    assert not AuditEvent.objects.exists()


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/provenance", b"not json"),
        ("/provenance", b"[1,2]"),
        ("/provenance", json.dumps({"upstream_refs": "data/reviews@1"}).encode()),
        ("/provenance", json.dumps({"upstream_refs": [1, 2]}).encode()),
        ("/provenance", json.dumps({"upstream_refs": ["../etc/passwd"]}).encode()),
        ("/provenance", json.dumps({"upstream_refs": ["a/b@1"] * 101}).encode()),
        ("/provenance", b"{" + b'"x":' * 10 + b"}"),
        ("/overturn", json.dumps({"decision": "maybe", "reason": "x"}).encode()),
        ("/overturn", json.dumps({"decision": "approved", "reason": ""}).encode()),
        ("/overturn", b"\xff\xfe"),
    ],
)
def test_hostile_json_bodies_get_400(client, path, body):
    put(client)
    before = AuditEvent.objects.count()
    response = client.post(URL + path, body, content_type="application/json")
    assert response.status_code == 400
    assert "error" in response.json()
    assert AuditEvent.objects.count() == before


def test_unknown_routes_and_methods(client):
    assert client.get("/api/v1/buckets/models/artifacts/..%2Fetc/1").status_code == 404
    assert client.post(URL).status_code == 405
    assert client.get(URL + "/scan").status_code == 405


def test_oversized_artifact_is_refused_before_reading(client, settings):
    settings.ARTIFACT_MAX_BYTES = 10
    response = put(client, content=b"x" * 11)
    assert response.status_code == 413
    assert not AuditEvent.objects.exists()


@given(name=st.text(min_size=1, max_size=300))
def test_any_artifact_name_is_either_routed_or_404(client, name):
    from urllib.parse import quote

    response = client.get(f"/api/v1/buckets/models/artifacts/{quote(name, safe='')}/1")
    assert response.status_code in (404, 400)


def test_seed_demo_is_idempotent_and_covers_every_artifact_event():
    call_command("seed_demo", old_events=40, verbosity=0)
    count = AuditEvent.objects.count()
    call_command("seed_demo", verbosity=0)
    assert AuditEvent.objects.count() == count
    types = set(AuditEvent.objects.values_list("event_type", flat=True))
    assert {
        "ARTIFACT_CREATED",
        "ARTIFACT_ACCESSED",
        "SAFETY_DECISION_RECORDED",
        "PROVENANCE_CHAIN_VERIFIED",
        "ARTIFACT_DELETED",
        "INTEGRITY_CHECK_FAILED",
        "SAFETY_DECISION_OVERTURNED",
    } <= types
    decisions = set(
        AuditEvent.objects.filter(event_type="SAFETY_DECISION_RECORDED").values_list("payload__decision", flat=True)
    )
    assert decisions == {"approved", "rejected", "quarantined"}
