"""The bucket's Celery tasks: the safety scan, and a task that always fails (for the retry and dead-letter tour).

No observability code here: ``example_project/celery.py`` installs the integration, which carries the request's
ids and trace into the worker, writes the task's line and counts it.
"""

from __future__ import annotations

import logging

from example_project.celery import app

from . import services

logger = logging.getLogger(__name__)


@app.task(bind=True, name="bucket.scan_artifact", max_retries=3, default_retry_delay=0.2)
def scan_artifact(self, bucket: str, name: str, version: str, fail_times: int = 0) -> dict:
    """Scan one version and record SAFETY_DECISION_RECORDED; retried on :class:`services.TransientError`.

    ``fail_times`` makes the first attempts fail with a transient error (what a storage outage looks like), to
    show retries keeping the request's ids; ``fail_times`` above ``max_retries`` exhausts them.
    """
    try:
        if self.request.retries < fail_times:
            raise services.TransientError(f"storage busy (attempt {self.request.retries + 1})")
        return services.scan_artifact(bucket, name, version)
    except services.TransientError as exc:
        logger.warning("scan of %s/%s@%s must be retried: %s", bucket, name, version, exc)
        raise self.retry(exc=exc) from None


def enqueue_scan(bucket: str, name: str, version: str, *, fail_times: int = 0) -> str:
    """Publish the scan (call it from ``transaction.on_commit``: the worker must find the committed row)."""
    return scan_artifact.apply_async((bucket, name, version), {"fail_times": fail_times}, queue=SCAN_QUEUE).id


SCAN_QUEUE = "scans"
