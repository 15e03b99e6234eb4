"""Changelist filters that stay cheap on millions of events.

Django's stock filters list their choices with ``SELECT DISTINCT column`` over the whole table, a full scan on every
page view. Here the event types come from the registry (no query at all), and actor and correlation id are typed in
(an exact, indexed match), with the actors of the latest events offered as quick picks.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet

from ..audit import registry
from .search import storable

__all__ = ["RECENT_ACTORS", "RECENT_WINDOW", "ActorFilter", "CorrelationFilter", "EventTypeFilter"]


#: How many of the newest events the actor quick picks are taken from (an index scan of this many rows).
RECENT_WINDOW = 500
#: How many actor quick picks are shown.
RECENT_ACTORS = 10


class _ExactFilter(admin.SimpleListFilter):
    """An exact match of one indexed column against the value in the query string."""

    column: str = ""

    def value(self) -> str | None:
        value = super().value()
        if isinstance(value, list):  # Django 4.2 keeps a string, 5.x the last of the values
            value = value[-1] if value else None
        if value is None:
            return None
        value = str(value).strip()
        return value or None

    def queryset(self, request: Any, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value is None:
            return queryset
        if not storable(self.column, value):
            return queryset.none()
        return queryset.filter(**{self.column: value})

    def choices(self, changelist: Any) -> Iterator[dict[str, Any]]:
        current = self.value()
        yield {
            "selected": current is None,
            "query_string": changelist.get_query_string(remove=[self.parameter_name]),
            "display": "All",
        }
        for lookup, title in self.lookup_choices:
            yield {
                "selected": current == str(lookup),
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }


class EventTypeFilter(_ExactFilter):
    """By event type: every registered type, plus the requested one if the registry no longer knows it."""

    title = "event type"
    parameter_name = "event_type"
    column = "event_type"

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, str]]:
        names = [event_type.name for event_type in registry.all_types()]
        current = self.value()
        if current is not None and current not in names:
            names.append(current)  # events of a type unregistered since stay findable
        return [(name, name) for name in names]


class _TypedExactFilter(_ExactFilter):
    """An exact filter with a text box (template ``exact_input_filter.html``)."""

    template = "admin/observability_app/exact_input_filter.html"
    placeholder = ""

    def has_output(self) -> bool:
        return True

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, str]]:
        current = self.value()
        return [(current, current)] if current is not None else []

    def choices(self, changelist: Any) -> Iterator[dict[str, Any]]:
        # The text box's form resubmits every other parameter of the current view (search, other filters, dates).
        self.hidden_params = sorted(
            (name, value) for name, value in changelist.params.items() if name != self.parameter_name
        )
        yield from super().choices(changelist)


class ActorFilter(_TypedExactFilter):
    """By actor: typed in, or picked from the actors of the newest events."""

    title = "actor"
    parameter_name = "actor"
    column = "actor"
    placeholder = "exact user name"

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, str]]:
        choices = super().lookups(request, model_admin)
        recent = model_admin.get_queryset(request).order_by("-pk").values_list("actor", flat=True)[:RECENT_WINDOW]
        seen = {value for value, _ in choices}
        picks: list[tuple[str, str]] = []
        for actor in recent:
            if actor and actor not in seen:
                seen.add(actor)
                picks.append((actor, actor))
                if len(picks) >= RECENT_ACTORS:
                    break
        return choices + picks


class CorrelationFilter(_TypedExactFilter):
    """By correlation id: what the "all events of this correlation id" links set."""

    title = "correlation id"
    parameter_name = "correlation_id"
    column = "correlation_id"
    placeholder = "exact correlation id"
