"""The bucket's business operations; each one emits its audit event through the app's signals.

Views are doorways to these functions; the seed command and the tests call them directly too.
"""

from __future__ import annotations

import hashlib
import re

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.utils import timezone
from opentelemetry import trace

from observability_app import bucket_metrics
from observability_app.audit import signals

from .models import Artifact
from .scanner import SCANNER, SCANNER_VERSION, scan

DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
PROVENANCE_REF_RE = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,127}/[A-Za-z0-9][A-Za-z0-9._\-]{0,127}@[A-Za-z0-9][A-Za-z0-9._\-]{0,127}$"
)
MAX_UPSTREAM_REFS = 100
#: Versions up to this size are kept in Django's cache after a read (versions are immutable; a hit is checked
#: against the row, so a delete in another process is seen); the read metric says hit or miss.
CACHE_MAX_BYTES = 256 * 1024
CACHE_SECONDS = 300
#: Overturn reason codes the API accepts (the metric's label); the free-text reason goes to the audit event only.
OVERTURN_REASON_CODES = ("manual_review", "scanner_bug", "policy_change", "allowlisted")
#: The API's tracer provider once tracing is installed (a no-op until then): spans cost nothing when it is off.
_tracer = trace.get_tracer("example_project.bucket")


class BucketError(Exception):
    status = 400


class BadRequest(BucketError):
    status = 400


class DigestMismatch(BucketError):
    status = 400

    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(f"digest mismatch: client sent {expected}, stored content is {actual}")
        self.expected = expected
        self.actual = actual


class VersionConflict(BucketError):
    status = 409


class NotFound(BucketError):
    status = 404


class TransientError(Exception):
    """A failure worth retrying (storage briefly unavailable); jobs retry on it."""


def sha256_digest(content: bytes) -> str:
    return "sha256:" + hashlib.sha256(content).hexdigest()


def artifact_id(bucket: str, name: str, version: str) -> str:
    return f"{bucket}/{name}@{version}"


def parse_client_digest(header: str | None) -> str:
    if not header:
        raise BadRequest("X-Content-Digest header is required: sha256:<64 lowercase hex>")
    value = header.strip().lower()
    if not DIGEST_RE.match(value):
        raise BadRequest("X-Content-Digest must be sha256:<64 lowercase hex>")
    return value


def bucket_type(bucket: str) -> str:
    """The design's bucket type (model, dataset, generic) from ``settings.BUCKET_TYPES``, generic by default."""
    return getattr(settings, "BUCKET_TYPES", {}).get(bucket, "generic")


def store_artifact(
    bucket: str, name: str, version: str, content: bytes, client_digest: str, client: str | None = None
) -> Artifact:
    """Store a new version; verify its digest after storage; ARTIFACT_CREATED or INTEGRITY_CHECK_FAILED."""
    with bucket_metrics.artifact_write(bucket, bucket_type=bucket_type(bucket), client=client) as write:
        write.size = len(content)
        return _store_artifact(bucket, name, version, content, client_digest)


def _store_artifact(bucket: str, name: str, version: str, content: bytes, client_digest: str) -> Artifact:
    aid = artifact_id(bucket, name, version)
    try:
        with transaction.atomic():
            artifact = Artifact.objects.create(
                bucket=bucket,
                name=name,
                version=version,
                digest=client_digest,
                size_bytes=len(content),
                content=content,
            )
            with bucket_metrics.integrity_verify(bucket) as verify:
                stored = bytes(Artifact.objects.values_list("content", flat=True).get(pk=artifact.pk))
                stored_digest = sha256_digest(stored)
                verify.result = "match" if stored_digest == client_digest else "mismatch"
            if stored_digest != client_digest:
                raise DigestMismatch(client_digest, stored_digest)
            signals.artifact_created.send(
                sender=Artifact,
                artifact_id=aid,
                version=version,
                client_digest=client_digest,
                stored_digest=stored_digest,
                size_bytes=len(stored),
                bucket_id=bucket,
            )
    except IntegrityError:
        existing = Artifact.objects.filter(bucket=bucket, name=name, version=version).values_list("digest", flat=True)
        bucket_metrics.version_conflict(bucket, "identical" if client_digest in existing else "rejected")
        raise VersionConflict(f"{aid} already exists; versions are immutable, publish a new one") from None
    except DigestMismatch as exc:
        bucket_metrics.digest_mismatch(bucket, stage="upload")
        signals.integrity_check_failed.send(
            sender=Artifact, artifact_id=aid, expected_digest=exc.expected, actual_digest=exc.actual, stage="upload"
        )
        raise
    return artifact


def get_artifact(bucket: str, name: str, version: str) -> Artifact:
    try:
        return Artifact.objects.get(bucket=bucket, name=name, version=version)
    except Artifact.DoesNotExist:
        raise NotFound(f"{artifact_id(bucket, name, version)} does not exist") from None


def _cache_key(bucket: str, name: str, version: str) -> str:
    return "bucket:artifact:" + hashlib.sha256(artifact_id(bucket, name, version).encode()).hexdigest()


def read_artifact(bucket: str, name: str, version: str, reader: str, purpose: str) -> Artifact:
    with bucket_metrics.artifact_read(bucket) as read:
        key = _cache_key(bucket, name, version)
        artifact = cache.get(key)
        # A hit is validated by one indexed query without the bytes: another worker may have deleted the version.
        if artifact is not None and not Artifact.objects.filter(pk=artifact.pk, digest=artifact.digest).exists():
            artifact = None
        read.cache = "miss" if artifact is None else "hit"
        if artifact is None:
            artifact = get_artifact(bucket, name, version)
            if artifact.size_bytes <= CACHE_MAX_BYTES:
                cache.set(key, artifact, CACHE_SECONDS)
        read.size = artifact.size_bytes
        signals.artifact_accessed.send(
            sender=Artifact, artifact_id=artifact.artifact_id, version=version, reader=reader, purpose=purpose
        )
    return artifact


def read_metadata(bucket: str, name: str, version: str) -> Artifact:
    """Digest, size and decision without the bytes (HEAD)."""
    with bucket_metrics.metadata_read(bucket):
        try:
            return Artifact.objects.defer("content").get(bucket=bucket, name=name, version=version)
        except Artifact.DoesNotExist:
            raise NotFound(f"{artifact_id(bucket, name, version)} does not exist") from None


def delete_artifact(bucket: str, name: str, version: str, reason: str) -> None:
    cache.delete(_cache_key(bucket, name, version))
    with transaction.atomic():
        artifact = get_artifact(bucket, name, version)
        artifact.delete()
        signals.artifact_deleted.send(sender=Artifact, artifact_id=artifact.artifact_id, version=version, reason=reason)


def scan_artifact(bucket: str, name: str, version: str) -> dict:
    """Scan one version and record SAFETY_DECISION_RECORDED, in a ``bucket.safety_scan`` span when tracing."""
    with _tracer.start_as_current_span(
        "bucket.safety_scan", attributes={"artifact.id": artifact_id(bucket, name, version)}
    ):
        return _scan_artifact(bucket, name, version)


def _scan_artifact(bucket: str, name: str, version: str) -> dict:
    with transaction.atomic():
        artifact = get_artifact(bucket, name, version)
        if not artifact.safety_decision:  # first scan: how long the upload waited in the scan backlog
            bucket_metrics.queue_delay(bucket, (timezone.now() - artifact.created_at).total_seconds())
        with bucket_metrics.safety_scan(bucket, scanner_version=SCANNER_VERSION) as scanning:
            result = scan(bytes(artifact.content))
            scanning.decision = result.decision
        if result.decision == "rejected":
            bucket_metrics.safety_rejection(bucket, reason=result.reason, scanner=SCANNER)
        artifact.safety_decision = result.decision
        artifact.save(update_fields=["safety_decision"])
        signals.safety_decision_recorded.send(
            sender=Artifact,
            artifact_id=artifact.artifact_id,
            decision=result.decision,
            scanner=SCANNER,
            scanner_version=SCANNER_VERSION,
            confidence=result.confidence,
            reason=result.reason,
        )
    return {
        "artifact_id": artifact.artifact_id,
        "decision": result.decision,
        "confidence": result.confidence,
        "scanner": SCANNER,
        "scanner_version": SCANNER_VERSION,
        "reason": result.reason,
    }


def overturn_decision(
    bucket: str, name: str, version: str, new_decision: str, reason: str, reason_code: str = "manual_review"
) -> dict:
    if new_decision not in ("approved", "rejected", "quarantined"):
        raise BadRequest("decision must be approved, rejected or quarantined")
    if not reason or len(reason) > 1000:
        raise BadRequest("reason is required (at most 1000 characters)")
    with transaction.atomic():
        artifact = get_artifact(bucket, name, version)
        previous = artifact.safety_decision
        if not previous:
            raise BadRequest("the artifact has no safety decision to overturn; scan it first")
        artifact.safety_decision = new_decision
        artifact.save(update_fields=["safety_decision"])
        if previous in ("rejected", "quarantined") and new_decision == "approved":
            bucket_metrics.safety_false_positive(
                bucket, reason_code if reason_code in OVERTURN_REASON_CODES else "other"
            )
        signals.safety_decision_overturned.send(
            sender=Artifact,
            artifact_id=artifact.artifact_id,
            previous_decision=previous,
            new_decision=new_decision,
            overturn_reason=reason,
        )
    return {"artifact_id": artifact.artifact_id, "previous_decision": previous, "decision": new_decision}


def verify_provenance(bucket: str, name: str, version: str, upstream_refs: object) -> dict:
    """Every upstream ref (``bucket/name@version``) must exist in the bucket service: verified, else failed."""
    if not isinstance(upstream_refs, list) or not all(isinstance(ref, str) for ref in upstream_refs):
        raise BadRequest("upstream_refs must be a list of strings 'bucket/name@version'")
    if len(upstream_refs) > MAX_UPSTREAM_REFS:
        raise BadRequest(f"at most {MAX_UPSTREAM_REFS} upstream_refs")
    bad = [ref for ref in upstream_refs if not PROVENANCE_REF_RE.match(ref)]
    if bad:
        raise BadRequest("upstream_refs must look like 'bucket/name@version'")
    artifact = get_artifact(bucket, name, version)
    missing = []
    with bucket_metrics.provenance_verify(bucket) as check:
        for ref in upstream_refs:
            ref_bucket, rest = ref.split("/", 1)
            ref_name, ref_version = rest.rsplit("@", 1)
            if not Artifact.objects.filter(bucket=ref_bucket, name=ref_name, version=ref_version).exists():
                missing.append(ref)
        check.result = "failed" if missing else "verified"
    if missing:
        bucket_metrics.version_orphan(bucket, len(missing))
    result = "failed" if missing else "verified"
    signals.provenance_chain_verified.send(
        sender=Artifact,
        artifact_id=artifact.artifact_id,
        upstream_refs=upstream_refs,
        result=result,
        missing=missing,
        outcome="success" if result == "verified" else "failure",
    )
    return {"artifact_id": artifact.artifact_id, "result": result, "missing": missing}
