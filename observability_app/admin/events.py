"""Audit events in the Django admin: the compliance browser.

Read-only for everyone, superusers included: ``has_add_permission``, ``has_change_permission`` and
``has_delete_permission`` answer False, so Django neither offers nor accepts (403) an add, a change or a delete, and
there are no bulk actions. Viewing takes the ``view_auditevent`` permission (``manage.py create_auditor_group``).

Built for tables of millions of events; each part of the page has its own module:

* :mod:`.search`: exact search by correlation id, request id, subject and actor (index look-ups, never ``LIKE``);
* :mod:`.filters`: by event type (from the registry), actor and correlation id, without ``SELECT DISTINCT`` scans;
* :mod:`.dates`: the date drill-down by index probes;
* :mod:`.pagination`: no full ``COUNT(*)``, an estimate past ``ADMIN_COUNT_LIMIT``, deep pages by primary key;
* :mod:`.export`: the current selection streamed as CSV or JSON Lines;
* :mod:`.detail`: the payload as readable JSON, the digest check and the seal state.

Rows are listed newest first by primary key (an index walk), and only filters that an index serves are accepted in
the query string: anything else (``?payload__contains=``, ``?subject__icontains=``) is refused with 400.
"""

from __future__ import annotations

import logging
from datetime import UTC
from typing import Any
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import PAGE_VAR, ChangeList
from django.core.exceptions import PermissionDenied
from django.core.paginator import InvalidPage
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.urls import path, reverse
from django.utils.html import format_html

from ..audit import export
from ..audit.canonical import format_time
from ..audit.models import AuditEvent
from . import detail
from .filters import ActorFilter, CorrelationFilter, EventTypeFilter
from .pagination import EstimatedCountPaginator
from .search import exact_search

logger = logging.getLogger("observability_app.admin")

DATE_FIELD = "occurred_at"
#: Query-string filters the changelist accepts: those its list filters and date drill-down read. Each is an exact
#: match (or a date range) that an index serves.
FILTER_PARAMETERS = frozenset({"event_type", "actor", "correlation_id"})
#: Date drill-down parameters and the values they may take (the year stays below 9999: Django adds one to it).
DATE_PARAMETERS = {f"{DATE_FIELD}__year": (1, 9998), f"{DATE_FIELD}__month": (1, 12), f"{DATE_FIELD}__day": (1, 31)}
#: Columns the changelist does not show; left out of its query.
LIST_DEFERRED = ("payload", "user_agent", "digest")
MAX_PK = 2**63 - 1


class AuditEventChangeList(ChangeList):
    """The admin's ChangeList with a fixed, index-backed order and a page depth that is clamped, not an error."""

    def get_filters_params(self, params: Any = None) -> Any:
        lookup_params = super().get_filters_params(params)
        # A month or day without its year would become an EXTRACT() over every row; the drill-down never sends it.
        if f"{DATE_FIELD}__year" not in lookup_params:
            lookup_params.pop(f"{DATE_FIELD}__month", None)
        if f"{DATE_FIELD}__month" not in lookup_params:
            lookup_params.pop(f"{DATE_FIELD}__day", None)
        return lookup_params

    def get_ordering(self, request: HttpRequest, queryset: Any) -> list[str]:
        return ["-pk"]  # newest first along the primary key; sorting by other columns would sort the selection

    def get_queryset(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        # (Django 5 passes exclude_parameters for facets; 4.2 takes the request only.)
        return super().get_queryset(request, *args, **kwargs).defer(*LIST_DEFERRED)

    def get_results(self, request: HttpRequest) -> None:
        """Django's ChangeList.get_results, told apart from it where the count may be an estimate.

        An estimated count is never taken as small: a selection it could not count is always paged, never listed
        whole ("show all"), however low the estimate. A page past ``ADMIN_MAX_PAGE_DEPTH`` shows the deepest one.
        """
        paginator = self.model_admin.get_paginator(request, self.queryset, self.list_per_page)
        if self.page_num > paginator.max_page:
            messages.warning(
                request,
                f"Pages deeper than {paginator.max_depth:,} events are not served; this is the deepest one. Narrow"
                " the selection with a filter, a search or the date drill-down.",
            )
            self.page_num = paginator.max_page
        result_count = paginator.count
        exact = paginator.count_is_exact
        self.can_show_all = exact and result_count <= self.list_max_show_all
        self.multi_page = not exact or result_count > self.list_per_page
        if (self.show_all and self.can_show_all) or not self.multi_page:
            self.result_list = self.queryset._clone()
        else:
            try:
                self.result_list = paginator.page(self.page_num).object_list
            except InvalidPage:
                raise IncorrectLookupParameters from None
        self.result_count = result_count
        self.show_full_result_count = False
        self.full_result_count = None
        self.show_admin_actions = False
        self.paginator = paginator


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """The compliance browser. Read-only; see the module docstring."""

    list_display = ("occurred", "event_type", "subject", "actor", "outcome", "correlation")
    list_display_links = ("occurred",)
    list_filter = (EventTypeFilter, ActorFilter, CorrelationFilter)
    date_hierarchy = DATE_FIELD
    search_fields = ("correlation_id", "request_id", "subject", "actor")  # shown by the search box; see search.py
    search_help_text = (
        "Exact match on correlation id, request id, subject, actor or event id. Prefix with correlation:, request:,"
        " subject:, actor: or event: to search one of them."
    )
    sortable_by = ()
    list_per_page = 100
    list_max_show_all = 200
    show_full_result_count = False
    actions = None
    fieldsets = (
        (None, {"fields": ("id", "event_id", "event_type", "occurred", "outcome", "subject", "actor")}),
        ("Payload", {"fields": ("payload_json",)}),
        (
            "Captured context",
            {
                "fields": (
                    "source",
                    "correlation",
                    "request_id",
                    "trace_id",
                    "span_id",
                    "client_ip",
                    "user_agent",
                    "route",
                    "service",
                    "environment",
                )
            },
        ),
        ("Integrity", {"fields": ("digest", "digest_check", "seal")}),
    )
    readonly_fields = tuple(name for _title, options in fieldsets for name in options["fields"])  # all of them

    if hasattr(admin, "ShowFacets"):  # Django 5.0+: facet counts are a COUNT per filter choice
        show_facets = admin.ShowFacets.NEVER

    # -- read-only for everyone ------------------------------------------------------------------------------------

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_actions(self, request: HttpRequest) -> dict:
        return {}

    # -- the changelist --------------------------------------------------------------------------------------------

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return AuditEventChangeList

    def get_paginator(self, request: HttpRequest, queryset: Any, per_page: int, *args: Any, **kwargs: Any) -> Any:
        return EstimatedCountPaginator(queryset, per_page)

    def get_search_results(self, request: HttpRequest, queryset: Any, search_term: str) -> tuple[Any, bool]:
        return exact_search(queryset, search_term), False

    def lookup_allowed(self, lookup: str, value: Any, request: HttpRequest | None = None) -> bool:
        if lookup in DATE_PARAMETERS:
            low, high = DATE_PARAMETERS[lookup]
            try:
                return low <= int(value) <= high
            except (TypeError, ValueError):
                return False
        return lookup in FILTER_PARAMETERS

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        if request.method not in ("GET", "HEAD"):
            raise PermissionDenied("audit events are read-only: the changelist accepts no POST (no actions, no edits)")
        return super().changelist_view(request, extra_context)

    def get_object(self, request: HttpRequest, object_id: str, from_field: Any = None) -> Any:
        text = str(object_id)
        if from_field is None and not (text.isascii() and text.isdigit() and int(text) <= MAX_PK):
            return None  # not an event id; Django answers "doesn't exist" (and no integer overflow on 4.2)
        return super().get_object(request, object_id, from_field)

    # -- columns and detail fields ---------------------------------------------------------------------------------

    def _changelist_url(self, **params: str) -> str:
        url = reverse(
            f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist", current_app=self.admin_site.name
        )
        return f"{url}?{urlencode(params)}" if params else url

    @admin.display(description="time (UTC)")
    def occurred(self, event: AuditEvent) -> str:
        return format_html(
            '<time datetime="{}">{}</time>',
            format_time(event.occurred_at),
            event.occurred_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
        )

    @admin.display(description="correlation id")
    def correlation(self, event: AuditEvent) -> str:
        if not event.correlation_id:
            return "-"
        return format_html(
            '<a class="obs-correlation" href="{}" title="all events of this correlation id">{}</a>',
            self._changelist_url(correlation_id=event.correlation_id),
            event.correlation_id,
        )

    @admin.display(description="payload")
    def payload_json(self, event: AuditEvent) -> str:
        return detail.pretty_json(event.payload)

    @admin.display(description="digest check")
    def digest_check(self, event: AuditEvent) -> str:
        if detail.digest_matches(event):
            return format_html('<span class="obs-digest-ok">{}</span>', "matches the stored content")
        return format_html(
            '<strong class="obs-digest-mismatch">{}</strong>',
            "does NOT match the stored content: changed behind the app's back, or signed with another key",
        )

    @admin.display(description="seal / verification")
    def seal(self, event: AuditEvent) -> str:
        return detail.render_seal_state(detail.seal_state(event))

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        extra_context = dict(extra_context or {})
        event = self.get_object(request, object_id)
        if event is not None and event.correlation_id:
            extra_context["correlation_url"] = self._changelist_url(correlation_id=event.correlation_id)
        return super().change_view(request, object_id, form_url, extra_context)

    # -- export ----------------------------------------------------------------------------------------------------

    def get_urls(self) -> list:
        info = self.opts.app_label, self.opts.model_name
        export_view = self.admin_site.admin_view(self.export_view)
        return [
            path("export/<str:fmt>/", export_view, name="{}_{}_export".format(*info)),
            *super().get_urls(),
        ]

    def export_view(self, request: HttpRequest, fmt: str) -> HttpResponse:
        """The current selection (the changelist's filters, search and dates) as a streamed CSV or JSON Lines file."""
        if request.method not in ("GET", "HEAD"):
            return HttpResponseNotAllowed(["GET", "HEAD"])
        if not self.has_view_permission(request):
            raise PermissionDenied("exporting audit events takes the view_auditevent permission")
        if fmt not in export.FORMATS:
            return HttpResponse(
                f"Unknown export format; use one of: {', '.join(export.FORMATS)}.",
                status=404,
                content_type="text/plain; charset=utf-8",
            )
        request.GET = request.GET.copy()
        request.GET.pop(PAGE_VAR, None)  # the whole selection, not a page: no page query either
        try:
            cl = self.get_changelist_instance(request)
        except IncorrectLookupParameters as exc:
            return HttpResponse(f"Invalid filter: {exc}", status=400, content_type="text/plain; charset=utf-8")
        logger.info(
            "audit events exported",
            extra={
                "export_format": fmt,
                "export_filters": request.GET.urlencode()[:2000],
                "actor": request.user.get_username(),
            },
        )
        return export.export_response(cl.queryset, fmt)
