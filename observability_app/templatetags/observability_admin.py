"""Template tags of the compliance browser's changelist: date drill-down, pagination and export links.

Each tag hands the work to the module that owns it (:mod:`observability_app.admin.dates`, ``.pagination``,
``.export``); the templates under ``admin/observability_app/`` only lay the results out.
"""

from __future__ import annotations

from typing import Any

from django import template
from django.contrib.admin.views.main import ALL_VAR, PAGE_VAR
from django.urls import reverse

__all__ = ["audit_date_hierarchy", "audit_export_url", "audit_integrity_glance", "audit_pagination", "register"]


register = template.Library()


@register.inclusion_tag("admin/date_hierarchy.html")
def audit_date_hierarchy(cl: Any) -> dict[str, Any]:
    """Django's date drill-down, found by index probes (see :mod:`observability_app.admin.dates`)."""
    from ..admin.dates import date_hierarchy  # imported when used: loading tag libraries must not load the admin

    return date_hierarchy(cl)


@register.simple_tag
def audit_export_url(cl: Any, fmt: str, selected: bool = False) -> str:
    """The export URL for format ``fmt`` carrying the changelist's current filters, search and dates; with
    ``selected``, the bare URL that the form of ticked events submits to."""
    opts = cl.opts
    name = f"admin:{opts.app_label}_{opts.model_name}_export"
    url = reverse(name, kwargs={"fmt": fmt}, current_app=cl.model_admin.admin_site.name)
    return url if selected else url + cl.get_query_string(remove=[PAGE_VAR])


@register.inclusion_tag("admin/observability_app/integrity_glance.html", takes_context=True)
def audit_integrity_glance(context: Any) -> dict[str, Any]:
    """The trail's integrity in words (:mod:`observability_app.admin.integrity`), for users who may view events."""
    from ..admin.integrity import trail_integrity

    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.has_perm("observability_app.view_auditevent"):
        return {"integrity": None}
    return {"integrity": trail_integrity()}


@register.inclusion_tag("admin/observability_app/auditevent/pagination.html")
def audit_pagination(cl: Any) -> dict[str, Any]:
    """Previous / next links and nearby pages; "about" when the count is an estimate, no "last" page then."""
    paginator = cl.paginator
    page = cl.page_num
    exact = paginator.count_is_exact
    required = cl.multi_page and not (cl.show_all and cl.can_show_all)
    last_known = min(paginator.num_pages, paginator.max_page) if exact else None
    # With an estimate, a full page is the sign that another may follow.
    full_page = len(cl.result_list) >= paginator.per_page
    has_next = page < last_known if exact else (full_page and page < paginator.max_page)
    highest = last_known if exact else (page + 2 if has_next else page)
    show_all = cl.can_show_all and not cl.show_all and cl.multi_page
    nearby = [number for number in range(max(1, page - 2), min(highest, page + 2) + 1)]
    limit = paginator.count_limit
    return {
        "cl": cl,
        "pagination_required": required,
        "page": page,
        "exact": exact,
        "num_pages": paginator.num_pages,
        "count": paginator.count,
        "lower_bound": not exact and paginator.count <= limit + 1,
        "count_limit": limit,
        "nearby": [(number, cl.get_query_string({PAGE_VAR: number})) for number in nearby],
        "first_url": cl.get_query_string({PAGE_VAR: 1}) if page > 1 else "",
        "previous_url": cl.get_query_string({PAGE_VAR: page - 1}) if page > 1 else "",
        "next_url": cl.get_query_string({PAGE_VAR: page + 1}) if has_next else "",
        "last_url": cl.get_query_string({PAGE_VAR: last_known}) if exact and page < last_known else "",
        "show_all_url": cl.get_query_string({ALL_VAR: ""}) if show_all else "",
        "verbose_name": cl.opts.verbose_name if paginator.count == 1 and exact else cl.opts.verbose_name_plural,
    }
