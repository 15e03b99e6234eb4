"""Date drill-down (year, month, day) without scanning the selection.

Django's ``date_hierarchy`` lists the years, months or days that hold events with ``SELECT DISTINCT
date_trunc(...)`` over every selected row: on millions of events, a full scan per page view. Here each level is found
by "skip scanning" the time index: the earliest event at or after the start of the range, then the earliest at or
after the next year (month, day) that follows it, and so on. Each step is one index probe (``MIN(occurred_at)``),
so a level costs one probe per year, month or day that holds events, plus one.

A small selection (an exact count of at most :data:`SMALL_SELECTION` rows, e.g. a search) is bucketed from its own
timestamps instead: the planner would serve ``MIN(occurred_at) WHERE <rare match>`` by walking the time index until
the first match, which for a rare match is most of the table.

The result has the shape Django's ``admin/date_hierarchy.html`` template expects.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Callable
from typing import Any

from django.conf import settings as django_settings
from django.db.models import Min, QuerySet
from django.utils import formats, timezone
from django.utils.text import capfirst

__all__ = ["MAX_YEARS", "SMALL_SELECTION", "date_hierarchy", "periods_of", "skip_scan"]


#: At most this many years are listed (events back-dated across centuries must not cost a probe per year).
MAX_YEARS = 100
#: Selections counted exactly at up to this many rows are bucketed from their timestamps (one query).
SMALL_SELECTION = 10_000


def _aware(value: dt.datetime) -> dt.datetime:
    return timezone.make_aware(value) if django_settings.USE_TZ else value


def _local(value: dt.datetime) -> dt.datetime:
    return timezone.localtime(value) if timezone.is_aware(value) else value


def _first_at_or_after(queryset: QuerySet, field: str, start: dt.datetime | None, end: dt.datetime | None) -> Any:
    if start is not None:
        queryset = queryset.filter(**{f"{field}__gte": start})
    if end is not None:
        queryset = queryset.filter(**{f"{field}__lt": end})
    return queryset.aggregate(first=Min(field))["first"]


def skip_scan(
    queryset: QuerySet,
    field: str,
    start: dt.datetime | None,
    end: dt.datetime | None,
    truncate: Callable[[dt.datetime], dt.datetime],
    following: Callable[[dt.datetime], dt.datetime | None],
    limit: int,
) -> list[dt.datetime]:
    """The starts (local time) of the periods in [start, end) that hold rows, oldest first, at most ``limit``.

    ``truncate`` maps a local time to the start of its period; ``following`` a period start to the next one's
    (None past the calendar's end).
    """
    found: list[dt.datetime] = []
    cursor = start
    while len(found) < limit:
        first = _first_at_or_after(queryset, field, cursor, end)
        if first is None:
            break
        period = truncate(_local(first))
        found.append(period)
        following_start = following(period)
        if following_start is None:
            break
        cursor = _aware(following_start)
    return found


def periods_of(queryset: QuerySet, field: str, kind: str, limit: int) -> list[dt.datetime]:
    """The same as :func:`skip_scan` for a small selection: ``SELECT DISTINCT`` of its truncated timestamps.

    ``kind`` is ``year``, ``month`` or ``day``; the truncation happens in the current time zone, as the drill-down's
    own ranges do.
    """
    method = queryset.datetimes if django_settings.USE_TZ else queryset.dates
    starts = []
    for value in method(field, kind)[:limit]:
        if isinstance(value, dt.datetime):
            value = _local(value)
        starts.append(dt.datetime(value.year, value.month, value.day))
    return starts


def _year_start(value: dt.datetime) -> dt.datetime:
    return dt.datetime(value.year, 1, 1)


def _month_start(value: dt.datetime) -> dt.datetime:
    return dt.datetime(value.year, value.month, 1)


def _day_start(value: dt.datetime) -> dt.datetime:
    return dt.datetime(value.year, value.month, value.day)


def _next_year(value: dt.datetime) -> dt.datetime | None:
    return value.replace(year=value.year + 1) if value.year < dt.MAXYEAR else None


def _next_month(value: dt.datetime) -> dt.datetime | None:
    if value.month == 12:
        return _next_year(value.replace(month=1))
    return value.replace(month=value.month + 1)


def _next_day(value: dt.datetime) -> dt.datetime | None:
    try:
        return value + dt.timedelta(days=1)
    except OverflowError:
        return None


_STEPS = {"year": (_year_start, _next_year), "month": (_month_start, _next_month), "day": (_day_start, _next_day)}


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def date_hierarchy(cl: Any) -> dict[str, Any]:
    """Context for ``admin/date_hierarchy.html`` for the ChangeList ``cl`` (its ``date_hierarchy`` is a field)."""
    field = cl.date_hierarchy
    year_field, month_field, day_field = f"{field}__year", f"{field}__month", f"{field}__day"
    year = _int(cl.params.get(year_field))
    month = _int(cl.params.get(month_field)) if year is not None else None
    day = _int(cl.params.get(day_field)) if month is not None else None
    queryset = cl.queryset.order_by()
    paginator = getattr(cl, "paginator", None)
    small = getattr(paginator, "count_is_exact", False) and cl.result_count <= SMALL_SELECTION

    def periods(kind: str, start: Any, end: Any, limit: int) -> list[dt.datetime]:
        if small:
            return periods_of(queryset, field, kind, limit)  # cl.queryset is already narrowed to [start, end)
        truncate, following = _STEPS[kind]
        return skip_scan(queryset, field, start, end, truncate, following, limit)

    def link(filters: dict[str, Any]) -> str:
        return cl.get_query_string(filters, [f"{field}__"])

    if year is None:
        years = periods("year", None, None, MAX_YEARS)
        if not years:
            return {"show": True, "back": None, "choices": []}
        if len(years) > 1:
            return {
                "show": True,
                "back": None,
                "choices": [{"link": link({year_field: str(y.year)}), "title": str(y.year)} for y in years],
            }
        year = years[0].year  # a single year: open it, as Django does
    if day is not None:
        day_date = dt.date(year, month, day)
        return {
            "show": True,
            "back": {
                "link": link({year_field: year, month_field: month}),
                "title": capfirst(formats.date_format(day_date, "YEAR_MONTH_FORMAT")),
            },
            "choices": [{"title": capfirst(formats.date_format(day_date, "MONTH_DAY_FORMAT"))}],
        }
    if month is not None:
        start = _aware(dt.datetime(year, month, 1))
        following = _next_month(dt.datetime(year, month, 1))
        end = _aware(following) if following else None
        days = periods("day", start, end, calendar.monthrange(year, month)[1])
        return {
            "show": True,
            "back": {"link": link({year_field: year}), "title": str(year)},
            "choices": [
                {
                    "link": link({year_field: year, month_field: month, day_field: d.day}),
                    "title": capfirst(formats.date_format(d.date(), "MONTH_DAY_FORMAT")),
                }
                for d in days
            ],
        }
    start = _aware(dt.datetime(year, 1, 1))
    following = _next_year(dt.datetime(year, 1, 1))
    end = _aware(following) if following else None
    months = periods("month", start, end, 12)
    return {
        "show": True,
        "back": {"link": link({}), "title": "All dates"},
        "choices": [
            {
                "link": link({year_field: year, month_field: m.month}),
                "title": capfirst(formats.date_format(m.date(), "YEAR_MONTH_FORMAT")),
            }
            for m in months
        ],
    }
