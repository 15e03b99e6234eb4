"""Who may read /metrics: an optional network allowlist and an optional bearer token (both when both are set).

The network test uses ``REMOTE_ADDR`` only, never ``X-Forwarded-For``: a header anyone can send must not open the
endpoint. Put the scraper on the allowlist by the address it connects from (or the proxy's, when the proxy itself
restricts who may reach it).
"""

from __future__ import annotations

import hmac
import ipaddress
from functools import lru_cache

from ..conf import settings

ALLOWED = "allowed"
UNAUTHORIZED = "unauthorized"  # token missing or wrong: 401
FORBIDDEN = "forbidden"  # address not on the allowlist: 403


@lru_cache(maxsize=16)
def _networks(entries: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            continue  # reported by the system check observability_app.E005
    return tuple(networks)


def address_allowed(remote_addr: str, entries: tuple[str, ...]) -> bool:
    try:
        address = ipaddress.ip_address(remote_addr)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in _networks(entries))


def token_matches(authorization: str, token: str) -> bool:
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() != "bearer" or not credentials:
        return False
    return hmac.compare_digest(credentials.strip().encode("utf-8", "replace"), token.encode("utf-8"))


def decide(remote_addr: str, authorization: str) -> str:
    """ALLOWED, FORBIDDEN or UNAUTHORIZED for one request."""
    entries = tuple(settings.METRICS_ALLOWED_NETWORKS or ())
    if entries and not address_allowed(remote_addr, entries):
        return FORBIDDEN
    token = settings.METRICS_TOKEN
    if token and not token_matches(authorization, str(token)):
        return UNAUTHORIZED
    return ALLOWED
