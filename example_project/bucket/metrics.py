"""The bucket's storage gauges, read from the database when /metrics is scraped.

``bucket.storage.{used_bytes,capacity_bytes,object_count,backlog}.gauge``: one grouped query per scrape. The backlog
is the number of versions still waiting for their first safety scan.
"""

from __future__ import annotations

from collections.abc import Iterator

from django.conf import settings
from django.db.models import Count, Q, Sum

from observability_app.bucket_metrics import StorageSample

from .models import Artifact

DEFAULT_CAPACITY_BYTES = 10 * 1024**3


def storage_usage() -> Iterator[StorageSample]:
    capacity = getattr(settings, "BUCKET_CAPACITY_BYTES", DEFAULT_CAPACITY_BYTES)
    rows = (
        Artifact.objects.order_by()
        .values("bucket")
        .annotate(used=Sum("size_bytes"), objects=Count("id"), backlog=Count("id", filter=Q(safety_decision="")))
    )
    for row in rows:
        yield StorageSample(
            bucket=row["bucket"],
            used_bytes=row["used"] or 0,
            capacity_bytes=capacity,
            objects=row["objects"],
            backlog=row["backlog"],
        )
