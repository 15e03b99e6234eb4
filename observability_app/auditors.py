"""Deprecated alias of :mod:`observability_app.admin.permissions` (the auditor group), kept for projects that
imported it before 0.2. Importing it warns; it will go in 1.0.

Import ``ensure_auditor_group`` and the rest from ``observability_app.admin.permissions`` instead.
"""

from __future__ import annotations

import warnings

from .admin.permissions import (
    AUDITOR_GROUP,
    AuditorGroupError,
    AuditorGroupResult,
    ensure_auditor_group,
    view_permissions,
)

__all__ = ["AUDITOR_GROUP", "AuditorGroupError", "AuditorGroupResult", "ensure_auditor_group", "view_permissions"]

warnings.warn(
    "observability_app.auditors is deprecated: import from observability_app.admin.permissions instead",
    DeprecationWarning,
    stacklevel=2,
)
