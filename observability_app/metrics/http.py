"""HTTP RED metrics: ``observe_request()``, called by the middleware once per request; in-flight requests.

The hot path is one dict look-up, a bisection and three additions under one lock (about 0.5 us): for each
(method, route, status) the counter's value, the histogram's sum and its bucket values are resolved once and cached.
prometheus_client would validate the labels, take three locks and scan the buckets linearly on every call (about
2 us). The values are only ever written here, so one module lock is enough for them; in multi-process mode (values
backed by files) each value's own ``inc()`` is used instead. Method and route are normalized before the look-up so
that hostile input (random methods, unmatched paths) cannot grow the cache or the series.

The response size (``http_response_size_bytes``) is observed with the same look-up when the middleware passes it.
``http_requests_in_flight`` follows Django's ``request_started`` / ``request_finished`` signals (:func:`connect`), so
it counts every request, excluded paths too, from the handler's start to the response's close.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from typing import Any

from prometheus_client.values import MutexValue

from . import exemplars
from .families import HTTP_DURATION, HTTP_IN_FLIGHT, HTTP_REQUESTS, HTTP_RESPONSE_SIZE
from .labels import HTTP_METHODS, OTHER_METHOD, method_label, route_label, status_label
from .priming import prime_http

#: (method, route, status) -> (counter value, histogram sum, bucket values, upper bounds, plain floats?, size child,
#: (method label, route label))
_children: dict[tuple[Any, Any, Any], tuple[Any, ...]] = {}
_lock = threading.Lock()
_exemplars_state = exemplars._state  # {"on": TRACING_ENABLED}: one dict look-up per request when off
#: Above this many cached combinations new ones are resolved on every call instead of cached (memory stays flat).
MAX_CACHED = 4096


def observe_request(
    method: str, route: str, status: int, duration_s: float, response: Any = None, size: int | None = None
) -> None:
    """Count one request, observe its duration and (when known) its body size in bytes.

    ``route`` is the URL pattern, ``""`` when none matched. The size is ``size``, else that of ``response``'s body
    (:func:`body_size`; none for a streaming response).
    """
    if size is None and response is not None:
        size = body_size(response)
    if method not in HTTP_METHODS:
        method = OTHER_METHOD
    key = (method, route, status)
    fast = _children.get(key)
    if fast is None:
        fast = _resolve(key)
    index = bisect_left(fast[3], duration_s)
    bucket = fast[2][index]
    sized = size is not None and size >= 0
    if sized:
        size_bucket = fast[6][bisect_left(fast[7], size)]
    if fast[4]:
        with _lock:
            fast[0]._value += 1.0
            fast[1]._value += duration_s
            bucket._value += 1.0
            if sized:
                fast[5]._value += size
                size_bucket._value += 1.0
    else:
        fast[0].inc(1.0)
        fast[1].inc(duration_s)
        bucket.inc(1.0)
        if sized:
            fast[5].inc(size)
            size_bucket.inc(1.0)
    if _exemplars_state["on"]:
        exemplars.offer(fast[8][0], fast[8][1], index, duration_s)


def body_size(response: Any) -> int | None:
    """Bytes of a non-streaming body; None for streaming responses (their size is unknown until sent).

    ``response.content`` of a one-chunk body (what ``HttpResponse(content)`` holds) is that chunk, not a copy; an
    empty body with a numeric ``Content-Length`` (a view answering HEAD) says what that header says.
    """
    if getattr(response, "streaming", True):
        return None
    size = len(response.content)
    if size == 0:
        length = response.get("Content-Length")
        if length is not None and length.isdigit():
            return int(length)
    return size


class _Nothing:
    __slots__ = ()

    def inc(self, amount: float) -> None:
        return None


_NOTHING = _Nothing()


def _parts(counter: Any, histogram: Any, size: Any, labels: tuple[str, str]) -> tuple[Any, ...]:
    """(count, sum, buckets, bounds, plain, size sum, size buckets, size bounds, (method, route) labels)."""
    bounds = HTTP_DURATION.metric._upper_bounds
    size_bounds = HTTP_RESPONSE_SIZE.metric._upper_bounds
    count = counter._value if counter is not HTTP_REQUESTS.dropped else counter
    if size is HTTP_RESPONSE_SIZE.dropped:
        size_sum, size_buckets = _NOTHING, [size] * len(size_bounds)
    else:
        size_sum, size_buckets = size._sum, size._buckets
    if histogram is HTTP_DURATION.dropped:
        buckets = [histogram] * len(bounds)
        return count, _NOTHING, buckets, bounds, False, size_sum, size_buckets, size_bounds, labels
    values = [count, histogram._sum, *histogram._buckets, size_sum, *size_buckets]
    plain = all(type(value) is MutexValue and isinstance(value._value, float) for value in values)
    return count, histogram._sum, histogram._buckets, bounds, plain, size_sum, size_buckets, size_bounds, labels


def _resolve(key: tuple[Any, Any, Any]) -> tuple[Any, ...]:
    prime_http()  # the first request of a process creates the known series at zero (once; a flag test after)
    method, route, status = key
    method, route = method_label(method), route_label(route)
    counter = HTTP_REQUESTS.child((method, route, status_label(status)))
    histogram = HTTP_DURATION.child((method, route))
    fast = _parts(counter, histogram, HTTP_RESPONSE_SIZE.child((method, route)), (method, route))
    if len(_children) < MAX_CACHED and counter is not HTTP_REQUESTS.dropped:
        _children[key] = fast
    return fast


def clear_cache() -> None:
    _children.clear()


def _started(sender: Any, **kwargs: Any) -> None:
    HTTP_IN_FLIGHT.inc()


def _finished(sender: Any, **kwargs: Any) -> None:
    HTTP_IN_FLIGHT.dec()


def connect() -> None:
    """Follow Django's request signals for ``http_requests_in_flight`` (idempotent)."""
    from django.core.signals import request_finished, request_started

    request_started.connect(_started, dispatch_uid="observability_app.metrics.in_flight")
    request_finished.connect(_finished, dispatch_uid="observability_app.metrics.in_flight")


def disconnect() -> None:
    from django.core.signals import request_finished, request_started

    request_started.disconnect(dispatch_uid="observability_app.metrics.in_flight")
    request_finished.disconnect(dispatch_uid="observability_app.metrics.in_flight")
