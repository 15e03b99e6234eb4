"""Label values: every one bounded, whatever the request or the caller sends.

A label value that comes from outside (an HTTP method, a bucket name, a user id) would let a client create one time
series per distinct value and exhaust Prometheus. Each helper here maps such input onto a small, fixed set:

* HTTP methods outside :data:`HTTP_METHODS` become ``OTHER``;
* a request that matched no URL pattern gets the route ``<unmatched>`` (never the raw path);
* bucket, user and client ids are hashed into ``METRICS_ID_BUCKETS`` bins (``bin-00`` .. ``bin-63``): stable across
  processes and restarts (BLAKE2b, not Python's salted ``hash()``), never the raw id;
* enumerated labels (outcome, decision, stage, ...) accept their documented values and map the rest to ``other``.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

from ..conf import settings

#: Methods that keep their own label value; anything else (including WebDAV verbs and garbage) is ``OTHER``.
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "OTHER"
UNMATCHED_ROUTE = "<unmatched>"
OTHER = "other"
#: Longest route label kept; URL patterns are developer-written, this only guards against a pathological one.
MAX_ROUTE_LENGTH = 200
NO_ID = "none"


def method_label(method: object) -> str:
    """``GET`` .. ``OPTIONS`` as sent, everything else ``OTHER``."""
    return method if method in HTTP_METHODS else OTHER_METHOD  # type: ignore[return-value]


def route_label(route: object) -> str:
    """The URL pattern the request matched, or ``<unmatched>``; never the raw path."""
    if not route or not isinstance(route, str):
        return UNMATCHED_ROUTE
    return route if len(route) <= MAX_ROUTE_LENGTH else route[:MAX_ROUTE_LENGTH]


def status_label(status: object) -> str:
    """A three-digit HTTP status, or ``other`` for anything outside 100..599."""
    if isinstance(status, int) and not isinstance(status, bool) and 100 <= status <= 599:
        return _STATUS_TEXT[status]
    return OTHER


_STATUS_TEXT = {code: str(code) for code in range(100, 600)}


def choice(value: object, allowed: frozenset[str]) -> str:
    """``value`` when it is one of ``allowed``, else ``other``."""
    return value if value in allowed else OTHER  # type: ignore[return-value]


@lru_cache(maxsize=8192)
def _bin(value: str, bins: int) -> str:
    digest = hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    width = len(str(bins - 1))
    return f"bin-{int.from_bytes(digest, 'big') % bins:0{width}d}"


def hashed_id(value: object, bins: int | None = None) -> str:
    """The bin of a bucket, user or client id: ``bin-NN``, one of ``METRICS_ID_BUCKETS`` values.

    The same id always lands in the same bin, in every process and after restarts, so a bin's series is a stable
    aggregate. ``None`` and ``""`` are ``none``. Ids are hashed, not encrypted: binning bounds cardinality, it does not
    make a bucket name secret (64 bins share many names each).
    """
    if value is None or value == "":
        return NO_ID
    if bins is None:
        bins = settings.METRICS_ID_BUCKETS
    text = value if isinstance(value, str) else str(value)
    if len(text) > 1024:  # hashing a megabyte per call would be a denial of service of its own
        text = text[:1024]
    return _bin(text, bins)


def standard_labels() -> tuple[str, str, str, str]:
    """(environment, region, service_version, node) from the settings: the catalog's standard labels."""
    return (
        str(settings.ENVIRONMENT),
        str(settings.REGION),
        str(settings.SERVICE_VERSION),
        str(settings.node),
    )


STANDARD_LABEL_NAMES = ("environment", "region", "service_version", "node")
