"""Audit metrics.

* ``audit_events_recorded_total{event_type}``: counted from the ``event_recorded`` signal when the caller's
  transaction commits (a rolled-back business change recorded no event, so it counts none).
* ``audit_verification_failures_total``: :func:`count_verification` in the process that ran a verification.
* Read from the database at scrape time, so every worker and every host reports the same values whichever process
  ran the purge or the verification (usually a cron job, never the web workers):
  ``audit_events_purged_total{event_type}`` (the per-type counts of every AUDIT_PURGED event, summed),
  ``audit_purge_last_run_timestamp_seconds``, ``audit_verification_last_run_timestamp_seconds`` and
  ``audit_verification_last_problems``.

The retention and integrity modules provide ``retention.last_purge()`` and ``integrity.last_verification()``; until
they exist (or if they fail) the last purge falls back to the newest AUDIT_PURGED event and the verification gauges
are left out rather than invented.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from .families import AUDIT_RECORDED, AUDIT_VERIFICATION_FAILURES

logger = logging.getLogger("observability_app.metrics")

PURGE_EVENT = "AUDIT_PURGED"
MAX_EVENT_TYPE_LENGTH = 64


def _on_event_recorded(sender: Any, event_type: str = "", count: int = 1, **kwargs: Any) -> None:
    from django.db import router, transaction

    child = AUDIT_RECORDED.child((str(event_type)[:MAX_EVENT_TYPE_LENGTH],))
    amount = count if isinstance(count, int) and count > 0 else 1
    transaction.on_commit(lambda: child.inc(amount), using=router.db_for_write(sender) if sender else None)


def connect() -> None:
    from ..audit.recording import event_recorded
    from ..audit.verification import verification_finished

    event_recorded.connect(_on_event_recorded, dispatch_uid="observability_app.metrics.audit")
    verification_finished.connect(_on_verification_finished, dispatch_uid="observability_app.metrics.audit")


def disconnect() -> None:
    from ..audit.recording import event_recorded
    from ..audit.verification import verification_finished

    event_recorded.disconnect(dispatch_uid="observability_app.metrics.audit")
    verification_finished.disconnect(dispatch_uid="observability_app.metrics.audit")


def _on_verification_finished(sender: Any, report: Any = None, **kwargs: Any) -> None:
    count_verification(len(getattr(report, "problems", ()) or ()))


def count_verification(problems: int) -> None:
    """Report a verification run in this process; one that found problems counts as a failure."""
    if isinstance(problems, int) and problems > 0:
        AUDIT_VERIFICATION_FAILURES.inc()


class _PurgeTotals:
    """Per-type sums over AUDIT_PURGED events, read incrementally (only events newer than the last read)."""

    def __init__(self) -> None:
        self.last_id = 0
        self.totals: dict[str, float] = {}
        self.last_run: datetime | None = None
        self._lock = threading.Lock()

    def update(self, limit: int) -> None:
        from ..audit.models import AuditEvent

        with self._lock:
            rows = (
                AuditEvent.objects.filter(event_type=PURGE_EVENT, id__gt=self.last_id)
                .order_by("id")
                .values_list("id", "occurred_at", "payload")
            )
            for pk, occurred_at, payload in rows.iterator(chunk_size=500):
                self.last_id = pk
                if self.last_run is None or occurred_at > self.last_run:
                    self.last_run = occurred_at
                counts = payload.get("counts") if isinstance(payload, dict) else None
                if not isinstance(counts, dict):
                    continue
                for name, value in counts.items():
                    if not isinstance(name, str) or len(name) > MAX_EVENT_TYPE_LENGTH:
                        continue
                    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                        continue
                    if name not in self.totals and len(self.totals) >= limit:
                        continue
                    self.totals[name] = self.totals.get(name, 0.0) + float(value)


_purges = _PurgeTotals()


class AuditCollector:
    """Scrape-time audit values from the database."""

    def collect(self) -> Iterator[Metric]:
        from django.db import DatabaseError

        from ..audit import retention, verification  # direct: the audit package is always there with the app
        from ..conf import settings

        purged = CounterMetricFamily(
            "audit_events_purged", "Audit events removed by the retention purge, by event type.", labels=["event_type"]
        )
        try:
            _purges.update(settings.METRICS_MAX_SERIES_PER_METRIC)
        except DatabaseError as exc:
            logger.warning("audit metrics: AUDIT_PURGED events unreadable (%s)", type(exc).__name__)
        for name, value in sorted(_purges.totals.items()):
            purged.add_metric([name], value)
        yield purged

        last_purge = GaugeMetricFamily(
            "audit_purge_last_run_timestamp_seconds", "Unix time of the last retention purge run (any host)."
        )
        when = self._call(retention.last_purge)
        if when is _UNAVAILABLE:
            when = _purges.last_run
        if isinstance(when, datetime):
            last_purge.add_metric([], when.timestamp())
        yield last_purge

        last_verify = GaugeMetricFamily(
            "audit_verification_last_run_timestamp_seconds", "Unix time of the last verify_audit run (any host)."
        )
        problems = GaugeMetricFamily(
            "audit_verification_last_problems", "Problems (tampered, missing, forged) the last verify_audit run found."
        )
        result = self._call(verification.last_verification)
        if isinstance(result, tuple | list) and len(result) == 2 and isinstance(result[0], datetime):
            last_verify.add_metric([], result[0].timestamp())
            if isinstance(result[1], int | float) and not isinstance(result[1], bool):
                problems.add_metric([], float(result[1]))
        yield last_verify
        yield problems

    @staticmethod
    def _call(provider: Any) -> Any:
        """``provider()``, None when the database fails, ``_UNAVAILABLE`` when the provider itself fails."""
        from django.db import DatabaseError

        name = f"{provider.__module__}.{provider.__name__}"
        try:
            return provider()
        except DatabaseError as exc:
            logger.warning("audit metrics: %s() failed (%s)", name, type(exc).__name__)
            return None
        except Exception as exc:  # a bug in a provider must not take /metrics down
            logger.warning("audit metrics: %s() raised %s", name, type(exc).__name__)
            return _UNAVAILABLE


_UNAVAILABLE = object()
