"""HTTP RED metrics: ``observe_request()``, called by the middleware once per request.

The hot path is one dict look-up, a bisection and three additions under one lock (about 0.5 us): for each
(method, route, status) the counter's value, the histogram's sum and its bucket values are resolved once and cached.
prometheus_client would validate the labels, take three locks and scan the buckets linearly on every call (about
2 us). The values are only ever written here, so one module lock is enough for them; in multi-process mode (values
backed by files) each value's own ``inc()`` is used instead. Method and route are normalized before the look-up so
that hostile input (random methods, unmatched paths) cannot grow the cache or the series.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from typing import Any

from prometheus_client.values import MutexValue

from .families import HTTP_DURATION, HTTP_REQUESTS
from .labels import HTTP_METHODS, OTHER_METHOD, method_label, route_label, status_label
from .priming import prime_http

#: (method, route, status) -> (counter value, histogram sum, bucket values, upper bounds, plain floats?)
_children: dict[tuple[Any, Any, Any], tuple[Any, Any, Any, Any, bool]] = {}
_lock = threading.Lock()
#: Above this many cached combinations new ones are resolved on every call instead of cached (memory stays flat).
MAX_CACHED = 4096


def observe_request(method: str, route: str, status: int, duration_s: float) -> None:
    """Count one request and observe its duration; ``route`` is the URL pattern, ``""`` when none matched."""
    if method not in HTTP_METHODS:
        method = OTHER_METHOD
    key = (method, route, status)
    fast = _children.get(key)
    if fast is None:
        fast = _resolve(key)
    bucket = fast[2][bisect_left(fast[3], duration_s)]
    if fast[4]:
        with _lock:
            fast[0]._value += 1.0
            fast[1]._value += duration_s
            bucket._value += 1.0
    else:
        fast[0].inc(1.0)
        fast[1].inc(duration_s)
        bucket.inc(1.0)


class _Nothing:
    __slots__ = ()

    def inc(self, amount: float) -> None:
        return None


_NOTHING = _Nothing()


def _parts(counter: Any, histogram: Any) -> tuple[Any, Any, Any, Any, bool]:
    bounds = HTTP_DURATION.metric._upper_bounds
    count = counter._value if counter is not HTTP_REQUESTS.dropped else counter
    if histogram is HTTP_DURATION.dropped:
        return count, _NOTHING, [histogram] * len(bounds), bounds, False
    values = [count, histogram._sum, *histogram._buckets]
    plain = all(type(value) is MutexValue and isinstance(value._value, float) for value in values)
    return count, histogram._sum, histogram._buckets, bounds, plain


def _resolve(key: tuple[Any, Any, Any]) -> tuple[Any, Any, Any, Any, bool]:
    prime_http()  # the first request of a process creates the known series at zero (once; a flag test after)
    method, route, status = key
    method, route = method_label(method), route_label(route)
    counter = HTTP_REQUESTS.child((method, route, status_label(status)))
    histogram = HTTP_DURATION.child((method, route))
    fast = _parts(counter, histogram)
    if len(_children) < MAX_CACHED and counter is not HTTP_REQUESTS.dropped:
        _children[key] = fast
    return fast


def clear_cache() -> None:
    _children.clear()
