"""The bucket catalog: every metric recorded through the helper API by the example project, binned, labelled."""

from __future__ import annotations

import hashlib
import json
import math

import pytest
from django.test import Client
from hypothesis import given
from hypothesis import strategies as st

from example_project.bucket import metrics as example_metrics
from observability_app import bucket_metrics
from observability_app.metrics.bucket import catalog
from observability_app.metrics.labels import hashed_id
from observability_app.metrics.registry import REGISTRY
from tests.servers import parse, series, total

EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
STANDARD = {"environment": "development", "region": "local", "service_version": "0.0.0"}


def digest(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


def put(client: Client, bucket: str, name: str, version: str, body: bytes, claimed: str | None = None):
    return client.put(
        f"/api/v1/buckets/{bucket}/artifacts/{name}/{version}",
        data=body,
        content_type="application/octet-stream",
        HTTP_X_CONTENT_DIGEST=claimed or digest(body),
    )


def value(name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels`` (labels not named are summed over)."""
    return sum(
        sample.value
        for family in REGISTRY.collect()
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(key) == wanted for key, wanted in labels.items())
    )


def catalog_value(prometheus: str, bucket: str, **labels: str) -> float:
    from observability_app.conf import settings

    return value(prometheus, bucket=hashed_id(bucket), **labels, **STANDARD, node=settings.node)


def test_the_example_project_records_every_catalog_metric(client, db, django_capture_on_commit_callbacks):
    bucket = "catalog-bucket"
    body = b"model weights" * 100
    before = parse(client.get("/metrics").content.decode())
    with django_capture_on_commit_callbacks(execute=True):
        assert put(client, bucket, "model", "1", body).status_code == 201
        assert put(client, bucket, "model", "1", body).status_code == 409
        assert put(client, bucket, "model", "2", body, claimed="sha256:" + "0" * 64).status_code == 400
        assert put(client, bucket, "bad", "1", EICAR).status_code == 201
        assert client.get(f"/api/v1/buckets/{bucket}/artifacts/model/1").status_code == 200
        assert client.get(f"/api/v1/buckets/{bucket}/artifacts/model/404").status_code == 404
        assert client.post(f"/api/v1/buckets/{bucket}/artifacts/model/1/scan").json()["decision"] == "approved"
        assert client.post(f"/api/v1/buckets/{bucket}/artifacts/bad/1/scan").json()["decision"] == "rejected"
        overturn = client.post(
            f"/api/v1/buckets/{bucket}/artifacts/bad/1/overturn",
            data=json.dumps({"decision": "approved", "reason": "test file, not malware", "reason_code": "scanner_bug"}),
            content_type="application/json",
        )
        assert overturn.status_code == 200
        provenance = client.post(
            f"/api/v1/buckets/{bucket}/artifacts/model/1/provenance",
            data=json.dumps({"upstream_refs": [f"{bucket}/bad@1", "gone/base@1", "gone/other@2"]}),
            content_type="application/json",
        )
        assert provenance.json()["result"] == "failed"
    response = client.get("/metrics")
    text = response.content.decode()
    samples = parse(text)
    b = hashed_id(bucket)
    for entry in catalog.CATALOG:
        name = entry.prometheus + ("_count" if entry.kind == "histogram" else "")
        # (series primed under other settings by earlier tests stay exported: only the current labels count)
        found = [
            labels
            for labels in series(samples, name)
            if labels.get("bucket", b) == b and {key: labels[key] for key in STANDARD} == STANDARD
        ]
        assert found, f"{entry.dotted} ({entry.prometheus}) was not recorded"
        assert all(labels["node"] for labels in found)
    assert bucket not in text

    def delta(name: str, **labels: str) -> float:
        return total(samples, name, **labels) - total(before, name, **labels)

    assert delta("bucket_artifact_write_total", bucket=b, outcome="success") == 2
    assert delta("bucket_artifact_write_total", bucket=b, outcome="failure") == 2
    assert delta("bucket_artifact_write_total", bucket=b, status="201", bucket_type="generic") == 2
    assert delta("bucket_artifact_write_total", bucket=b, status="409") == 1
    assert delta("bucket_artifact_write_total", bucket=b, status="400") == 1
    assert delta("bucket_client_writes_total") == 4  # every write, by client bin (the test client's address)
    assert delta("bucket_artifact_write_size_bytes_count", bucket=b) == 2
    assert delta("bucket_artifact_write_size_bytes_sum", bucket=b) == len(body) + len(EICAR)
    assert delta("bucket_artifact_read_total", bucket=b, outcome="success", cache="miss", status="200") == 1
    assert delta("bucket_artifact_read_total", bucket=b, outcome="failure", cache="miss", status="404") == 1
    assert delta("bucket_artifact_read_size_bytes_sum", bucket=b) == len(body)
    assert delta("bucket_integrity_verify_total", bucket=b, result="match") == 2
    assert delta("bucket_integrity_verify_total", bucket=b, result="mismatch") == 1
    assert delta("bucket_integrity_digest_mismatch_total", bucket=b, stage="upload") == 1
    assert delta("bucket_version_conflict_total", bucket=b, resolution="identical") == 1
    assert delta("bucket_version_orphan_total", bucket=b) == 2
    assert delta("bucket_safety_scan_total", bucket=b, decision="approved", outcome="success") == 1
    assert delta("bucket_safety_scan_total", bucket=b, decision="rejected", outcome="success") == 1
    assert delta("bucket_safety_scan_total", bucket=b, scanner_version="1.2.0") == 2
    assert (
        delta("bucket_safety_rejection_total", bucket=b, reason="test-malware signature", scanner="example-scanner")
        == 1
    )
    assert delta("bucket_safety_false_positive_total", bucket=b, reason="scanner_bug") == 1
    assert delta("bucket_provenance_verify_total", bucket=b, result="failed") == 1
    assert delta("bucket_provenance_verify_duration_seconds_count", bucket=b) == 1
    assert delta("bucket_queue_delay_seconds_count", bucket=b) == 2
    assert total(samples, "bucket_storage_objects", bucket=b) == 2
    assert total(samples, "bucket_storage_used_bytes", bucket=b) == len(body) + len(EICAR)
    assert total(samples, "bucket_storage_backlog", bucket=b) == 0
    assert total(samples, "bucket_storage_capacity_bytes", bucket=b) == 10 * 1024**3
    assert delta("audit_events_recorded_total", event_type="ARTIFACT_CREATED") == 2


def test_storage_gauges_add_up_per_bin(client, db):
    names = ["s-one", "s-two", "s-three", "s-four"]
    for index, bucket in enumerate(names):
        for version in range(index + 1):
            assert put(client, bucket, "m", str(version), b"z" * (10 + index)).status_code == 201
    samples = parse(client.get("/metrics").content.decode())
    expected_objects: dict[str, float] = {}
    expected_bytes: dict[str, float] = {}
    for index, bucket in enumerate(names):
        expected_objects[hashed_id(bucket)] = expected_objects.get(hashed_id(bucket), 0) + index + 1
        expected_bytes[hashed_id(bucket)] = expected_bytes.get(hashed_id(bucket), 0) + (index + 1) * (10 + index)
    for bin_, objects in expected_objects.items():
        assert total(samples, "bucket_storage_objects", bucket=bin_) == objects
        assert total(samples, "bucket_storage_used_bytes", bucket=bin_) == expected_bytes[bin_]
        assert total(samples, "bucket_storage_backlog", bucket=bin_) == objects  # none scanned yet


def test_a_failing_storage_reporter_does_not_break_the_scrape(client, db):
    def broken():
        raise RuntimeError("storage backend down")

    def hostile():
        yield bucket_metrics.StorageSample("h", used_bytes=float("nan"), objects=-3, backlog=math.inf)
        yield "not a sample"
        yield bucket_metrics.StorageSample("h", used_bytes=7)

    bucket_metrics.register_storage_reporter(broken)
    bucket_metrics.register_storage_reporter(hostile)
    try:
        response = client.get("/metrics")
    finally:
        bucket_metrics.unregister_storage_reporter(broken)
        bucket_metrics.unregister_storage_reporter(hostile)
    assert response.status_code == 200
    samples = parse(response.content.decode())
    assert total(samples, "bucket_storage_used_bytes", bucket=hashed_id("h")) == 7
    assert total(samples, "bucket_storage_objects", bucket=hashed_id("h")) == 0
    assert total(samples, "health_ready") == 1


def test_operations_record_failures_and_errors(settings):
    bucket = "ops-bucket"
    before = {
        "write_failure": catalog_value("bucket_artifact_write_total", bucket, outcome="failure"),
        "write_size": catalog_value("bucket_artifact_write_size_bytes_count", bucket),
        "write_duration": catalog_value("bucket_artifact_write_duration_seconds_count", bucket),
        "read_failure": catalog_value("bucket_artifact_read_total", bucket, outcome="failure"),
        "scan_error": catalog_value("bucket_safety_scan_total", bucket, decision="none", outcome="error"),
        "verify_error": catalog_value("bucket_integrity_verify_total", bucket, result="error"),
    }
    with pytest.raises(ValueError), bucket_metrics.artifact_write(bucket) as write:
        write.size = 100
        raise ValueError("storage refused")
    assert catalog_value("bucket_artifact_write_total", bucket, outcome="failure") == before["write_failure"] + 1
    # failed writes have no size
    assert catalog_value("bucket_artifact_write_size_bytes_count", bucket) == before["write_size"]
    assert catalog_value("bucket_artifact_write_duration_seconds_count", bucket) == before["write_duration"] + 1
    with bucket_metrics.artifact_read(bucket) as read:
        read.fail()
    assert catalog_value("bucket_artifact_read_total", bucket, outcome="failure") == before["read_failure"] + 1
    with pytest.raises(OSError), bucket_metrics.safety_scan(bucket) as scan:
        scan.decision = "approved"
        raise OSError("scanner crashed")
    assert (
        catalog_value("bucket_safety_scan_total", bucket, decision="none", outcome="error") == before["scan_error"] + 1
    )
    with pytest.raises(OSError), bucket_metrics.integrity_verify(bucket):
        raise OSError("disk")
    assert catalog_value("bucket_integrity_verify_total", bucket, result="error") == before["verify_error"] + 1


def test_label_values_outside_their_set_become_other(settings):
    bucket = "other-bucket"
    names = (
        ("bucket_integrity_digest_mismatch_total", {"stage": "other"}),
        ("bucket_integrity_digest_mismatch_total", {"stage": "read"}),
        ("bucket_safety_scan_total", {"decision": "other", "outcome": "success"}),
        ("bucket_integrity_verify_total", {"result": "other"}),
    )
    before = [catalog_value(name, bucket, **labels) for name, labels in names]
    bucket_metrics.digest_mismatch(bucket, stage="'; DROP TABLE x; --")
    bucket_metrics.digest_mismatch(bucket, stage="read")
    with bucket_metrics.safety_scan(bucket) as scan:
        scan.decision = "maybe"
    with bucket_metrics.integrity_verify(bucket) as verify:
        verify.result = "probably fine"
    after = [catalog_value(name, bucket, **labels) for name, labels in names]
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1, 1, 1]


@given(
    bucket=st.one_of(st.text(max_size=3000), st.integers(), st.none(), st.binary(max_size=64)),
    amount=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 5), st.booleans()),
)
def test_hostile_ids_and_amounts(bucket, amount):
    bucket_metrics.queue_delay(bucket, amount)
    bucket_metrics.version_orphan(bucket, amount)
    with bucket_metrics.artifact_write(bucket) as write:
        write.size = amount
    label = hashed_id(bucket)
    assert label == "none" or (label.startswith("bin-") and 0 <= int(label[4:]) < 64)
    for family in REGISTRY.collect():
        for metric_sample in family.samples:
            if "bucket" in metric_sample.labels:
                found = metric_sample.labels["bucket"]
                assert found == "none" or (found.startswith("bin-") and len(found) == 6)
                assert math.isfinite(metric_sample.value)


def test_disabled_helpers_do_nothing(settings):
    bucket = "disabled-bucket"
    before = (
        catalog_value("bucket_artifact_write_total", bucket, outcome="failure"),
        catalog_value("bucket_version_conflict_total", bucket),
        catalog_value("bucket_queue_delay_seconds_count", bucket),
    )
    settings.OBSERVABILITY = {"METRICS_ENABLED": False}
    with bucket_metrics.artifact_write(bucket) as write:
        write.size = 5
        write.fail()
    bucket_metrics.version_conflict(bucket)
    bucket_metrics.queue_delay(bucket, 1.0)
    assert list(bucket_metrics.storage_samples()) == []
    settings.OBSERVABILITY = {}
    assert (
        catalog_value("bucket_artifact_write_total", bucket, outcome="failure"),
        catalog_value("bucket_version_conflict_total", bucket),
        catalog_value("bucket_queue_delay_seconds_count", bucket),
    ) == before
    bucket_metrics.version_conflict(bucket)
    assert catalog_value("bucket_version_conflict_total", bucket) == before[1] + 1


def test_the_example_reporter_counts_the_backlog(db):
    from example_project.bucket import services

    body = b"abc"
    services.store_artifact("rep", "m", "1", body, digest(body))
    services.store_artifact("rep", "m", "2", body, digest(body))
    services.scan_artifact("rep", "m", "1")
    samples = list(example_metrics.storage_usage())
    assert samples == [
        bucket_metrics.StorageSample("rep", used_bytes=6, capacity_bytes=10 * 1024**3, objects=2, backlog=1)
    ]


def test_catalog_names_follow_prometheus_rules():
    for entry in catalog.CATALOG:
        assert entry.dotted.startswith("bucket.") and entry.dotted.split(".")[-1] in (
            "count",
            "duration",
            "size",
            "gauge",
        )
        if entry.kind == "counter":
            assert entry.prometheus.endswith("_total")
        if entry.dotted.endswith(".duration"):
            assert entry.prometheus.endswith("_seconds")
            assert set(catalog.DURATION_BUCKETS) <= set(entry.buckets)
        if entry.dotted.endswith(".size"):
            assert entry.prometheus.endswith("_bytes") and entry.buckets == catalog.SIZE_BUCKETS
    assert catalog.DURATION_BUCKETS == (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
    assert catalog.SIZE_BUCKETS[0] == 1024 and catalog.SIZE_BUCKETS[-1] == 1024**3


def test_every_catalog_entry_and_label_is_documented():
    from tests.servers import ROOT

    text = (ROOT / "docs" / "metrics.md").read_text(encoding="utf-8")
    for entry in catalog.CATALOG:
        row = next((line for line in text.splitlines() if line.startswith(f"| `{entry.dotted}` |")), None)
        assert row is not None, f"{entry.dotted} is not in docs/metrics.md"
        assert f"`{entry.prometheus}`" in row
        for label in entry.labels:
            assert f"`{label}`" in row, (entry.dotted, label)
    assert "104857600" in text and 104857600 in catalog.SIZE_BUCKETS


def test_open_labels_stay_bounded_and_declared_values_are_kept():
    bucket = "open-labels"
    for index in range(100):
        bucket_metrics.safety_rejection(bucket, reason=f"rule {index}", scanner="example-scanner")
    reasons = {
        sample.labels["reason"]
        for family in REGISTRY.collect()
        for sample in family.samples
        if sample.name == "bucket_safety_rejection_total" and sample.labels["bucket"] == hashed_id(bucket)
    }
    declared = set(bucket_metrics.declared_values("reason"))
    assert len(reasons - declared - {"other"}) <= catalog.OPEN_LABEL_VALUES
    assert "other" in reasons
    assert catalog_value("bucket_safety_rejection_total", bucket, reason="other") >= 100 - catalog.OPEN_LABEL_VALUES
    bucket_metrics.safety_rejection(bucket, reason="test-malware signature", scanner="example-scanner")
    assert catalog_value("bucket_safety_rejection_total", bucket, reason="test-malware signature") >= 1


def test_conflict_resolution_tells_an_identical_re_upload_from_a_real_conflict(client, db):
    bucket = "conflicts"
    before = {
        r: catalog_value("bucket_version_conflict_total", bucket, resolution=r) for r in ("identical", "rejected")
    }
    assert put(client, bucket, "m", "1", b"one").status_code == 201
    assert put(client, bucket, "m", "1", b"one").status_code == 409
    assert put(client, bucket, "m", "1", b"two").status_code == 409
    for resolution in ("identical", "rejected"):
        assert catalog_value("bucket_version_conflict_total", bucket, resolution=resolution) == before[resolution] + 1


def test_reads_say_cache_hit_or_miss_and_head_is_a_metadata_read(client, db):
    bucket = "cached"
    assert put(client, bucket, "m", "1", b"cached bytes").status_code == 201
    path = f"/api/v1/buckets/{bucket}/artifacts/m/1"
    hits = catalog_value("bucket_artifact_read_total", bucket, cache="hit")
    metadata = catalog_value("bucket_metadata_read_total", bucket, outcome="success")
    assert client.get(path).content == b"cached bytes"
    assert client.get(path).content == b"cached bytes"
    assert catalog_value("bucket_artifact_read_total", bucket, cache="hit") == hits + 1
    head = client.head(path)
    assert head.status_code == 200 and head["X-Content-Digest"] == digest(b"cached bytes")
    assert head["Content-Length"] == str(len(b"cached bytes"))
    assert catalog_value("bucket_metadata_read_total", bucket, outcome="success") == metadata + 1
