"""Series that the alerts and panels read exist from start-up, at zero, for every label value that can be known.

Why: Prometheus computes ``rate()`` and ``increase()`` from the difference between samples. A series that appears
only with its first event (``status="500"`` showing up with the value 49 after a burst) has no earlier sample, so
the first increase is lost: after a restart a burst of 49 errors read as ``increase(...) = 17.5`` and the 5xx
alert computed a third of the real ratio. Panels showed "No data" instead of 0 for the same reason.

What is seeded (each at 0, once per process, before the first scrape or the first counted request):

* ``http_requests_total{method,route,status}`` and ``http_request_duration_seconds{method,route}`` for every route of
  the URLconf outside ``EXCLUDED_PATHS`` and the admin, for the methods of ``METRICS_SEED_METHODS`` and the status
  codes of ``METRICS_SEED_STATUSES`` (one or more per status class: the rules match ``status=~"5.."``);
* every catalog counter for every bucket bin (``bin-00`` ..) times every documented value of its labels;
* the app's own counters with known label values (dropped log lines per target).

The series cap still holds: seeding uses at most half of ``METRICS_MAX_SERIES_PER_METRIC`` per metric, so real
traffic always keeps room, and stops (logging once) where a metric would pass that budget.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Iterator

from ..conf import settings
from . import catalog
from .bounded import Family

logger = logging.getLogger("observability_app.metrics")

_state = {"done": False}
_lock = threading.Lock()


def ensure() -> None:
    """Seed once per process (idempotent and cheap after the first call)."""
    if _state["done"]:
        return
    with _lock:
        if _state["done"]:
            return
        _state["done"] = True  # before seeding: a URLconf that fails to import must not retry on every request
        try:
            seed()
        except Exception as exc:  # seeding is a help to the rules, never a reason to fail a request or a scrape
            logger.warning("metrics: seeding zero-valued series failed: %s: %s", type(exc).__name__, exc)


def forget() -> None:
    """After a settings change (new standard labels, seeds or cap): seed again on the next use."""
    _state["done"] = False


def budget() -> int:
    return max(0, int(settings.METRICS_MAX_SERIES_PER_METRIC) // 2)


def _fill(family: Family, keys: Iterator[tuple[str, ...]]) -> int:
    """Create the children of ``keys`` in ``family`` within the seed budget; returns how many exist afterwards."""
    limit = budget()
    for key in keys:
        if family.series() >= limit:
            logger.info("metrics: %s: stopped seeding at %d series (half of the series cap)", family.name, limit)
            break
        family.child(key)
    return family.series()


def routes() -> list[str]:
    """Route templates of the URLconf, as ``request.resolver_match.route`` spells them, outside excluded paths."""
    from django.urls import URLPattern, URLResolver, get_resolver

    excluded = tuple(path.lstrip("/") for path in settings.EXCLUDED_PATHS)
    found: list[str] = []

    def walk(patterns: list, prefix: str) -> None:
        for pattern in patterns:
            text = str(pattern.pattern)
            route = prefix + (text.removeprefix("^") if prefix else text)
            if isinstance(pattern, URLResolver):
                if pattern.app_name == "admin" or pattern.namespace == "admin":
                    continue
                walk(pattern.url_patterns, route)
            elif (
                isinstance(pattern, URLPattern)
                and route
                and not any(route.startswith(path) for path in excluded if path)
            ):
                found.append(route)

    walk(get_resolver().url_patterns, "")
    return list(dict.fromkeys(found))


def seed() -> None:
    from .families import CATALOG, HTTP_DURATION, HTTP_REQUESTS, LOG_LINES_DROPPED, LOG_TARGETS
    from .labels import method_label, route_label, status_label

    methods = [method_label(method) for method in settings.METRICS_SEED_METHODS]
    statuses = [status_label(int(status)) for status in settings.METRICS_SEED_STATUSES]
    paths = [route_label(route) for route in routes()]
    _fill(HTTP_DURATION, ((method, route) for route in paths for method in methods))
    _fill(HTTP_REQUESTS, ((method, route, status) for route in paths for method in methods for status in statuses))
    bins = bin_values()
    for entry in catalog.CATALOG:
        if entry.kind != "counter" or len(entry.values) != len(entry.labels):
            continue
        values = [sorted(allowed) for allowed in entry.values]
        _fill(CATALOG[entry.dotted], ((bin_, *combo) for bin_ in bins for combo in itertools.product(*values)))
    for target in LOG_TARGETS:
        LOG_LINES_DROPPED.labels(target)


def bin_values() -> list[str]:
    """Every value the ``bucket`` label can take (``hashed_id`` of any id is one of them)."""
    bins = int(settings.METRICS_ID_BUCKETS)
    width = len(str(bins - 1))
    return [f"bin-{index:0{width}d}" for index in range(bins)]
