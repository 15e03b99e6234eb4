"""The app's own registry: its metrics are kept apart from prometheus_client's default registry.

/metrics serves both (the default registry carries the project's own metrics and the process and runtime
collectors); keeping the app's apart lets the exposition read them through the fast path of
:mod:`observability_app.metrics.render` without writing anything twice.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

REGISTRY = CollectorRegistry(auto_describe=False)


def metrics() -> list:
    """The metric objects registered here, in registration order."""
    with REGISTRY._lock:
        return list(REGISTRY._collector_to_names)
