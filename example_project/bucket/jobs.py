"""Background work of the example bucket: an asynchronous safety scan in a plain thread.

``POST .../scan?async=1`` answers 202 at once; the scan runs in a thread through
:func:`observability_app.jobs.run`, so its log lines and its SAFETY_DECISION_RECORDED event carry the correlation
id of the request that asked for it, with ``source="job"``.
"""

from __future__ import annotations

import threading
from typing import Any

from django.db import close_old_connections

from observability_app import jobs

from . import services


def _scan(payload: dict[str, Any]) -> dict:
    return services.scan_artifact(payload["bucket"], payload["name"], payload["version"])


def scan_in_background(bucket: str, name: str, version: str) -> threading.Thread:
    """Start the scan job in a thread; returns the thread (tests join it)."""
    payload = jobs.carry({"bucket": bucket, "name": name, "version": version})

    def work() -> None:
        try:
            jobs.run("scan_artifact", _scan, payload, retry_on=(services.TransientError,), max_attempts=3)
        except Exception:  # logged by jobs.run with error.* fields; a thread has nobody to raise to
            pass
        finally:
            close_old_connections()

    thread = threading.Thread(target=work, name=f"scan-{bucket}-{name}-{version}", daemon=True)
    thread.start()
    return thread
