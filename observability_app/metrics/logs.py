"""``observability_log_lines_dropped_total{handler}``: log lines a full or unwritable target would not take.

The batching handlers of :mod:`observability_app.access_log` drop such lines instead of failing the request, warn
once on stderr, and send :data:`~observability_app.access_log.lines_dropped`; this module counts them. Every
handler label exists from start-up at 0, so that ``increase()`` sees the first drop.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter

from ..access_log import lines_dropped
from .registry import REGISTRY

__all__ = ["LOG_LINES_DROPPED", "connect", "disconnect"]

#: The handlers' target names (``BatchingHandler.target_name``).
HANDLERS = ("stdout", "stderr", "file", "stream")

LOG_LINES_DROPPED = Counter(
    "observability_log_lines_dropped_total",
    "Log lines dropped because their target would not take them (full disk, closed pipe, unwritable file), by"
    " handler target (stdout, stderr, file, stream).",
    ["handler"],
    registry=REGISTRY,
)
for _name in HANDLERS:
    LOG_LINES_DROPPED.labels(_name)

_UID = "observability_app.metrics.logs"


def _on_lines_dropped(sender: Any, handler: str, count: int, **kwargs: Any) -> None:
    LOG_LINES_DROPPED.labels(handler if handler in HANDLERS else "stream").inc(count)


def connect() -> None:
    lines_dropped.connect(_on_lines_dropped, dispatch_uid=_UID)


def disconnect() -> None:
    lines_dropped.disconnect(dispatch_uid=_UID)
