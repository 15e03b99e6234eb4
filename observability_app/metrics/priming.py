"""Series that exist at zero before their first event, so that ``rate()`` and ``increase()`` see the first one.

Prometheus computes an increase from two samples of the same series. A series that appears with its first event
(``status="500"`` at the first error) has no earlier sample: the first burst is lost to ``increase()`` and
``rate()``, ratios such as HighHTTP5xxRate read too low, and panels show "No data" instead of 0. Creating the series
at zero for every label value that can be known in advance fixes both:

* HTTP: every route of the URLconf (paths under ``EXCLUDED_PATHS`` left out, the admin's routes after the others)
  and ``<unmatched>``, for the methods of :data:`PRIMED_METHODS`, with one status of each class the rules read
  (:data:`PRIMED_STATUSES`); the duration histogram per (method, route);
* the bucket catalog: every bucket bin (``bin-00`` .. ``bin-NN``) times every combination of the enumerated label
  values of each counter (:attr:`CatalogEntry.primed`), and every bin of each histogram.

The series cap is kept: a metric is primed only while its primed series stay within half of
``METRICS_MAX_SERIES_PER_METRIC``, so that real traffic always has the other half. Routes are read lazily (the
first request or scrape of a process), because the URLconf must not be imported while apps are still loading.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Iterable, Iterator
from typing import Any

from ..conf import settings
from .bounded import Family
from .bucket import catalog
from .labels import UNMATCHED_ROUTE, route_label

logger = logging.getLogger("observability_app.metrics")

#: Methods primed per route: what an HTTP API answers. Others (HEAD, OPTIONS, PATCH) get their series on first use.
PRIMED_METHODS = ("GET", "POST", "PUT", "DELETE")
#: The admin's pages are forms: GET and POST only.
PRIMED_ADMIN_METHODS = ("GET", "POST")
#: One status per class that the rules and panels read (2xx, 4xx, 5xx), plus the API's 201 and the 404 and 503 that
#: the alerts and runbooks single out.
PRIMED_STATUSES = ("200", "201", "400", "404", "500", "503")

_state = {"http": False, "catalog": False}
_lock = threading.Lock()


def budget() -> int:
    """Most series priming may create in one metric: half the cap, the rest is kept for real traffic."""
    return max(0, int(settings.METRICS_MAX_SERIES_PER_METRIC) // 2)


def _join(first: str, second: str) -> str:
    """Django's ``URLResolver._join_route``: how ``ResolverMatch.route`` is assembled."""
    if not first:
        return second
    return first + second.removeprefix("^")


def _walk(patterns: Iterable[Any], admin: bool) -> Iterator[tuple[bool, str]]:
    from django.urls import URLResolver

    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            inside_admin = admin or pattern.app_name == "admin"
            prefix = str(pattern.pattern)
            for is_admin, route in _walk(pattern.url_patterns, inside_admin):
                yield is_admin, _join(prefix, route)
        else:
            yield admin, str(pattern.pattern)


def routes() -> list[tuple[str, tuple[str, ...]]]:
    """(route label, methods) as the middleware records them: ``<unmatched>``, the project's, the admin's last."""
    from django.urls import get_resolver

    excluded = tuple(path.lstrip("/") for path in settings.EXCLUDED_PATHS)
    found: dict[str, bool] = {}
    for is_admin, route in _walk(get_resolver().url_patterns, False):
        label = route_label(route)
        if label.lstrip("^").startswith(excluded):
            continue
        found.setdefault(label, is_admin)
    ordered = sorted(found, key=lambda label: found[label])  # stable: URLconf order, admin after the rest
    return [(UNMATCHED_ROUTE, PRIMED_METHODS)] + [
        (label, PRIMED_ADMIN_METHODS if found[label] else PRIMED_METHODS) for label in ordered
    ]


def prime_http() -> None:
    """Create the HTTP series at zero once per process (called on the first request and on the first scrape)."""
    if _state["http"]:
        return
    with _lock:
        if _state["http"]:
            return
        _state["http"] = True
        try:
            found = routes()
        except Exception as exc:  # a broken URLconf is Django's error to report, not the metrics'
            logger.warning("metrics: routes not primed (%s)", type(exc).__name__)
            return
        from .families import HTTP_DURATION, HTTP_REQUESTS

        keep, used = budget(), 0
        for index, (route, methods) in enumerate(found):
            used += len(methods) * len(PRIMED_STATUSES)
            if used > keep:
                logger.info("metrics: %d of %d routes primed (METRICS_MAX_SERIES_PER_METRIC)", index, len(found))
                break
            for method in methods:
                HTTP_DURATION.child((method, route))
                for status in PRIMED_STATUSES:
                    HTTP_REQUESTS.child((method, route, status))


def bins() -> list[str]:
    """Every bucket bin label: ``bin-00`` .. ``bin-NN`` for ``METRICS_ID_BUCKETS`` bins."""
    count = int(settings.METRICS_ID_BUCKETS)
    width = len(str(count - 1))
    return [f"bin-{index:0{width}d}" for index in range(count)]


def combinations(entry: catalog.CatalogEntry) -> list[tuple[str, ...]]:
    """The label-value tuples (without ``bucket``) primed for ``entry``; [] when one cannot be known in advance.

    Enumerated labels take their values (or the entry's ``primed`` tuples), id labels every bin, open labels the
    values a project declared (``bucket_metrics.declare_label_values``); an open label with none declared leaves the
    entry unprimed.
    """
    if entry.kind != "counter":
        return [()]
    enumerated = len(entry.values)
    if entry.primed is not None:
        head = [tuple(combo) for combo in entry.primed]
    else:
        head = list(itertools.product(*(sorted(values) for values in entry.values)))
    tails: list[list[str]] = []
    for name in entry.labels[enumerated:]:
        values = bins() if name in entry.binned else catalog.declared_values(name)
        if not values:
            return []
        tails.append(values)
    return [(*first, *rest) for first in head for rest in itertools.product(*tails)]


def prime_catalog(families: dict[str, Family]) -> None:
    """Create every catalog series that can be known at zero (once per process; after a settings change again)."""
    with _lock:
        every_bin = bins()
        keep = budget()
        for entry in catalog.CATALOG:
            family = families.get(entry.dotted)
            if family is None:
                continue
            combos = combinations(entry)
            prefixes = [(bin_,) for bin_ in every_bin] if entry.per_bucket else [()]
            if not combos or len(combos) * len(prefixes) > keep:
                continue
            for prefix in prefixes:
                for combo in combos:
                    family.child((*prefix, *combo))
        _state["catalog"] = True


def reset() -> None:
    """After a settings change: prime again on the next request or scrape (new routes, bins or cap)."""
    _state["http"] = False
    _state["catalog"] = False


__all__ = ["PRIMED_METHODS", "PRIMED_STATUSES", "bins", "budget", "prime_catalog", "prime_http", "routes"]
