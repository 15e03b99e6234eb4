"""Exemplars: the trace id of a recent request per latency bucket, for the drill-down from a panel to the trace.

With tracing on (``TRACING_ENABLED``), :func:`offer` keeps, per (method, route, ``le`` bucket) of
``http_request_duration_seconds``, the last request's trace id, duration and time. A scraper that asks for
OpenMetrics (``Accept: application/openmetrics-text``; Prometheus does, and stores them with
``--enable-feature=exemplar-storage``) gets them on the bucket lines::

    http_request_duration_seconds_bucket{method="GET",route="...",le="0.5"} 7.0 # {trace_id="4bf9..."} 0.31 1.7e9

prometheus_client keeps no exemplars in multi-process mode, so the store is the app's own: a dict per process and,
under gunicorn (``PROMETHEUS_MULTIPROC_DIR``), a small JSON file per process in that directory, rewritten at most
once a second from the request path; the process that answers the scrape reads every file and keeps the newest
exemplar per bucket. Files of processes gone for more than :data:`STALE_SECONDS` are removed then. With tracing off
nothing here runs: one flag test per request.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import threading
import time
from typing import Any

#: (method, route, bucket index) -> (trace_id, value, unix time)
_store: dict[tuple[str, str, int], tuple[str, float, float]] = {}
_lock = threading.Lock()
_state: dict[str, Any] = {"on": False, "flushed": 0.0, "dirty": False}
#: Most buckets kept per process (routes x methods x 12 bounds stays far below).
MAX_ENTRIES = 4096
FLUSH_SECONDS = 1.0
STALE_SECONDS = 600.0
PREFIX = "exemplars_"


def enabled() -> bool:
    return bool(_state["on"])


def configure(on: bool) -> None:
    """Called by ``metrics.setup()`` and on settings changes: exemplars follow ``TRACING_ENABLED``."""
    _state["on"] = bool(on)


def offer(method: str, route: str, index: int, value: float) -> None:
    """Keep the current request's trace id as the exemplar of its bucket (no-op without a trace id)."""
    from ..context import current

    ctx = current()
    trace_id = getattr(ctx, "trace_id", "") if ctx is not None else ""
    if not trace_id:
        return
    key = (method, route, index)
    now = time.time()
    with _lock:
        if key in _store or len(_store) < MAX_ENTRIES:
            _store[key] = (trace_id, value, now)
            _state["dirty"] = True
    if now - _state["flushed"] >= FLUSH_SECONDS:
        flush(now)


def _directory() -> str | None:
    from .multiprocess import directory

    return directory()


def flush(now: float | None = None) -> None:
    """Write this process's exemplars to its file in the multi-process directory (nothing in single-process mode)."""
    path = _directory()
    now = time.time() if now is None else now
    _state["flushed"] = now
    if not path or not _state["dirty"]:
        return
    with _lock:
        rows = [[method, route, index, *entry] for (method, route, index), entry in _store.items()]
        _state["dirty"] = False
    target = os.path.join(path, f"{PREFIX}{os.getpid()}.json")
    with contextlib.suppress(OSError):
        temporary = f"{target}.tmp"
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(rows, handle)
        os.replace(temporary, target)


def collected() -> dict[tuple[str, str, int], tuple[str, float, float]]:
    """Every process's exemplars, the newest per bucket."""
    merged = dict(_store)
    path = _directory()
    if not path:
        return merged
    flush()
    now = time.time()
    for name in glob.glob(os.path.join(path, f"{PREFIX}*.json")):
        try:
            with open(name, encoding="utf-8") as handle:
                rows = json.load(handle)
            if now - os.path.getmtime(name) > STALE_SECONDS and not name.endswith(f"_{os.getpid()}.json"):
                os.remove(name)
        except (OSError, ValueError):
            continue
        for row in rows if isinstance(rows, list) else ():
            try:
                method, route, index, trace_id, value, at = row
                key = (str(method), str(route), int(index))
                entry = (str(trace_id), float(value), float(at))
            except (TypeError, ValueError):
                continue
            if key not in merged or merged[key][2] < entry[2]:
                merged[key] = entry
    return merged


def annotate(out: list[str], prefix: Any, name: str, bounds: list[str]) -> None:
    """Append the exemplars to the bucket lines of ``name`` already written into ``out`` (OpenMetrics only).

    ``out`` holds each line as its cached label prefix followed by its value text (as both writers emit it), so the
    line of a bucket is found by its prefix.
    """
    from .render import format_value, label_text

    found = collected()
    if not found:
        return
    positions = {text: index for index, text in enumerate(out)}
    for (method, route, index), (trace_id, value, at) in found.items():
        if index >= len(bounds):
            continue
        pairs = (("method", method), ("route", route), ("le", bounds[index]))
        where = positions.get(prefix(name + "_bucket", pairs))
        if where is None or where + 1 >= len(out) or not out[where + 1].endswith("\n"):
            continue
        exemplar = f" # {label_text((('trace_id', trace_id),))} {format_value(value)} {at:.3f}"
        out[where + 1] = out[where + 1][:-1] + exemplar + "\n"


def reset() -> None:
    with _lock:
        _store.clear()
