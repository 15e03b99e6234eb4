"""Fill the example bucket with realistic data for the tour: artifacts, reads, scans, provenance, a digest
mismatch, a deletion, logins, and old events that the retention purge will remove.

Idempotent: a second run sees the demo bucket and does nothing.
"""

from __future__ import annotations

import contextlib
import pickle
import random
import uuid
from datetime import UTC, datetime, timedelta

from django.core.management.base import BaseCommand

from observability_app import audit
from observability_app.context import bound

from ... import services
from ...models import Artifact

DEMO_BUCKET = "demo-models"


class Command(BaseCommand):
    help = "Load demo data into the example artifact bucket (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--history-days", type=int, default=1100, help="spread old events over this many days")
        parser.add_argument("--old-events", type=int, default=300, help="how many back-dated events to add")

    def handle(self, *args, **options):
        if Artifact.objects.filter(bucket=DEMO_BUCKET).exists():
            self.stdout.write("demo data already loaded")
            return
        rng = random.Random(42)
        created = 0
        artifacts = [
            (
                "demo-models",
                "sentiment-classifier",
                "1.0.0",
                b"weights:" + bytes(rng.getrandbits(8) for _ in range(2048)),
            ),
            (
                "demo-models",
                "sentiment-classifier",
                "1.1.0",
                b"weights:" + bytes(rng.getrandbits(8) for _ in range(4096)),
            ),
            ("demo-datasets", "reviews-2025", "2025.10", b"text,label\n" + b"great,1\nawful,0\n" * 200),
            ("demo-configs", "training-config", "7", b'{"lr": 0.001, "epochs": 10}'),
            ("demo-models", "untrusted-upload", "0.1", pickle.dumps(("os", "system")) + b"os\nsystem"),
            (
                "demo-models",
                "eicar-sample",
                "1",
                b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*",
            ),
        ]
        for bucket, name, version, content in artifacts:
            with bound(source="job", correlation_id=f"seed-{uuid.uuid4().hex[:12]}", request_id=uuid.uuid4().hex):
                services.store_artifact(bucket, name, version, content, services.sha256_digest(content))
                services.scan_artifact(bucket, name, version)
                for reader, purpose in (("ci-pipeline", "evaluation"), ("alice", "fine-tuning")):
                    services.read_artifact(bucket, name, version, reader=reader, purpose=purpose)
                created += 1
        with bound(source="api", correlation_id="demo-provenance-1", request_id=uuid.uuid4().hex):
            services.verify_provenance(
                "demo-models",
                "sentiment-classifier",
                "1.1.0",
                ["demo-datasets/reviews-2025@2025.10", "demo-configs/training-config@7"],
            )
            services.verify_provenance("demo-models", "sentiment-classifier", "1.0.0", ["demo-datasets/missing@1"])
        with (
            bound(source="api", correlation_id="demo-mismatch-1", request_id=uuid.uuid4().hex),
            contextlib.suppress(services.DigestMismatch),
        ):
            services.store_artifact("demo-models", "corrupted-upload", "1", b"payload", "sha256:" + "0" * 64)
        with bound(
            source="admin", correlation_id="demo-overturn-1", request_id=uuid.uuid4().hex, user="compliance-lead"
        ):
            services.overturn_decision(
                "demo-models", "untrusted-upload", "0.1", "rejected", "confirmed unsafe by review"
            )
        with bound(source="api", correlation_id="demo-delete-1", request_id=uuid.uuid4().hex):
            services.store_artifact("demo-configs", "obsolete-config", "1", b"{}", services.sha256_digest(b"{}"))
            services.delete_artifact("demo-configs", "obsolete-config", "1", reason="superseded by training-config@7")
        audit.record("AUTH_LOGIN_FAILED", {"username": "mallory"}, actor="mallory", source="api")
        self._old_events(rng, options["history_days"], options["old_events"])
        self.stdout.write(self.style.SUCCESS(f"demo data loaded: {created} artifacts and their audit trail"))

    def _old_events(self, rng: random.Random, days: int, count: int) -> None:
        """Back-dated reads and logins: some older than their 2-year retention, for the purge tour."""
        now = datetime.now(UTC)
        readers = ["alice", "bob", "ci-pipeline", "nightly-eval", "carol"]
        events = []
        for index in range(count):
            occurred = now - timedelta(days=rng.randint(1, days), seconds=rng.randint(0, 86399))
            correlation = f"hist-{index // 3:05d}"
            if index % 4 == 0:
                user = rng.choice(readers)
                events.append(
                    {
                        "event_type": "AUTH_LOGIN_SUCCEEDED",
                        "payload": {"username": user},
                        "actor": user,
                        "occurred_at": occurred,
                        "source": "api",
                        "correlation_id": correlation,
                    }
                )
            else:
                events.append(
                    {
                        "event_type": "ARTIFACT_ACCESSED",
                        "payload": {
                            "artifact_id": "demo-models/sentiment-classifier@1.0.0",
                            "version": "1.0.0",
                            "reader": rng.choice(readers),
                            "purpose": rng.choice(["evaluation", "serving"]),
                        },
                        "occurred_at": occurred,
                        "source": "api",
                        "correlation_id": correlation,
                    }
                )
        audit.record_many(events)
