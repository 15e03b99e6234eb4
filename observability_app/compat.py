"""Differences between the supported Django versions (4.2 LTS and 5.x), in one place."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

try:  # Django 5.1+
    from django.contrib.auth.decorators import login_not_required
except ImportError:  # Django 4.2: no LoginRequiredMiddleware; mark the view the way 5.1's middleware reads it

    def login_not_required(view_func: Callable[..., Any]) -> Callable[..., Any]:
        """Mark a view as open to anonymous users (``LoginRequiredMiddleware`` reads ``login_required``)."""
        view_func.login_required = False  # type: ignore[attr-defined]
        return view_func


__all__ = ["login_not_required"]
