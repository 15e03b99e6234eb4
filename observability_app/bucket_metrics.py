"""The bucket catalog's recording API (the public name of :mod:`observability_app.metrics.bucket.recording`).

Usage and every helper: that module's docstring and docs/metrics.md.
"""

from __future__ import annotations

from .metrics.bucket.recording import *  # noqa: F403
from .metrics.bucket.recording import __all__, _enable, _state  # noqa: F401  (metrics.setup, the tests)
