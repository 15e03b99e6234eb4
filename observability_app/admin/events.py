"""Audit events in the Django admin: the compliance browser.

Read-only for everyone, superusers included: ``has_add_permission``, ``has_change_permission`` and
``has_delete_permission`` answer False, so Django neither offers nor accepts (403) an add, a change or a delete, and
there are no bulk actions. Viewing takes the ``view_auditevent`` permission (``manage.py create_auditor_group``).

Built for tables of millions of events; each part of the page has its own module:

* :mod:`.search`: exact search by correlation id, request id, subject and actor (index look-ups, never ``LIKE``);
* :mod:`.filters`: by event type (from the registry), actor and correlation id, without ``SELECT DISTINCT`` scans;
* :mod:`.dates`: the date drill-down by index probes;
* :mod:`.pagination`: no full ``COUNT(*)``, an estimate past ``ADMIN_COUNT_LIMIT``, deep pages by primary key;
* :mod:`.display`: long ids shortened to their column, whole on hover, with a copy button;
* :mod:`.chart`: events per day by type for the current selection, drawn as SVG;
* :mod:`.integrity`: the trail's verification state and unsealed tail, in words;
* :mod:`.timeline`: a correlation id's events in time order (``timeline/?correlation_id=``);
* :mod:`.lineage`: an artifact's upstream chain, safety decisions and readers (``lineage/?artifact=``);
* :mod:`.detail`: the payload as readable JSON, and the event's integrity in words (tampered, sealed and intact,
  not sealed yet).

Exports (``export/<fmt>/``) stream the current selection (filters, search, dates) or the ticked rows
(``?selection=1&id=...``), and each is recorded as an AUDIT_EXPORTED event (:mod:`observability_app.audit.export`).

Rows are listed newest first by time, then id (an index walk of (occurred_at, id)), and only filters that an index
serves are accepted in the query string: anything else (``?payload__contains=``, ``?subject__icontains=``) is
refused with 400.
"""

from __future__ import annotations

import html
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
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from .. import context as obs_context
from ..audit import export
from ..audit.canonical import format_time
from ..audit.models import AuditEvent
from . import chart, detail, lineage, timeline
from .dates import SMALL_SELECTION
from .display import event_type_label, short_id
from .filters import ActorFilter, CorrelationFilter, EventTypeFilter
from .integrity import trail_integrity
from .pagination import EstimatedCountPaginator
from .search import exact_search

__all__ = [
    "ARTIFACT_TYPES",
    "DATE_FIELD",
    "DATE_PARAMETERS",
    "FILTER_PARAMETERS",
    "LIST_DEFERRED",
    "MAX_PK",
    "MAX_SELECTED",
    "ORDERING",
    "AuditEventAdmin",
    "AuditEventChangeList",
]


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
#: The changelist's order: newest first by time; events of one instant newest recorded first.
ORDERING = ["-occurred_at", "-pk"]
#: At most this many ticked rows are exported at once (more than a page can show: 200).
MAX_SELECTED = 1000
#: Artifact events: their subject is an artifact id, linked to its lineage page.
ARTIFACT_TYPES = frozenset({*lineage.CHAIN_TYPES, lineage.ACCESSED, "ARTIFACT_DELETED", "INTEGRITY_CHECK_FAILED"})


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
        return list(ORDERING)  # an index walk; sorting by other columns would sort the selection

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

    # (Columns named after a model field would show the raw field: Django looks fields up before admin methods.)
    list_display = ("pick", "occurred", "kind", "subject_cell", "actor_cell", "outcome", "correlation")
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
        ("Integrity", {"fields": ("digest",)}),  # the checks in words: the headline and change_form.html
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
        extra_context = {**(extra_context or {}), "integrity": trail_integrity(self._db(request))}
        response = super().changelist_view(request, extra_context)
        context = getattr(response, "context_data", None)  # a redirect (a page that is not there) has none
        cl = context.get("cl") if isinstance(context, dict) else None
        if cl is not None:
            response.context_data["audit_chart"] = self._chart(cl)
        return response

    def _db(self, request: HttpRequest) -> str:
        return self.get_queryset(request).db

    def _chart(self, cl: Any) -> Any:
        """The picture of the selection (:mod:`.chart`); nothing when the selection holds no events."""
        paginator = getattr(cl, "paginator", None)
        if getattr(paginator, "count_is_exact", False) and cl.result_count <= SMALL_SELECTION:
            data = chart.small_selection_counts(cl.queryset, DATE_FIELD, cl.params)
        else:
            days = chart.window(cl.params, cl.queryset, DATE_FIELD)
            data = chart.daily_counts(cl.queryset, DATE_FIELD, *days) if days is not None else None
        if data is None or not data.counts:
            return ""

        # The query string without page and date, built once (cl.get_query_string per bar is a third of the chart).
        dates = [f"{DATE_FIELD}__year", f"{DATE_FIELD}__month", f"{DATE_FIELD}__day"]
        base = cl.get_query_string(remove=[PAGE_VAR, *dates])
        base += "&" if len(base) > 1 else ""

        def day_link(day: Any) -> str:
            return f"{base}{dates[0]}={day.year}&{dates[1]}={day.month}&{dates[2]}={day.day}"

        return chart.render(data, day_link)

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

    def _view_url(self, view: str, **params: str) -> str:
        url = reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_{view}", current_app=self.admin_site.name)
        return f"{url}?{urlencode(params)}"

    @admin.display(
        description=mark_safe(
            '<input type="checkbox" id="obs-pick-all" form="obs-export-selected"'
            ' title="select every event on this page" aria-label="select every event on this page">'
        )
    )
    def pick(self, event: AuditEvent) -> str:
        """A tick box for "export the selected events" (a GET form of its own: the changelist accepts no POST)."""
        return format_html(
            '<input type="checkbox" class="obs-pick" name="id" value="{}" form="obs-export-selected"'
            ' aria-label="select event {}">',
            event.pk,
            event.pk,
        )

    @admin.display(description="event type")
    def kind(self, event: AuditEvent) -> str:
        return event_type_label(event.event_type)

    @admin.display(description="subject")
    def subject_cell(self, event: AuditEvent) -> str:
        cell = short_id(event.subject, kind="subject", what="subject")
        if event.subject and event.event_type in ARTIFACT_TYPES and len(event.subject) <= 255:
            return format_html(
                '{}<a class="obs-lineage-link" href="{}" title="lineage of this artifact">lineage</a>',
                cell,
                self._view_url("lineage", artifact=event.subject),
            )
        return cell

    @admin.display(description="actor")
    def actor_cell(self, event: AuditEvent) -> str:
        return short_id(event.actor, kind="actor", what="actor")

    @admin.display(description="correlation id")
    def correlation(self, event: AuditEvent) -> str:
        if not event.correlation_id:
            return format_html('<span class="obs-empty">{}</span>', "-")
        return format_html(
            '{}<a class="obs-timeline-link" href="{}" title="timeline of this correlation id">timeline</a>',
            short_id(
                event.correlation_id,
                href=self._changelist_url(correlation_id=event.correlation_id),
                kind="correlation",
                what="correlation id",
            ),
            self._view_url("timeline", correlation_id=event.correlation_id),
        )

    @admin.display(description="payload")
    def payload_json(self, event: AuditEvent) -> str:
        return detail.pretty_json(event.payload)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        extra_context = dict(extra_context or {})
        event = self.get_object(request, object_id)
        if event is not None:  # the integrity headline and the checks behind it (:mod:`.detail`), read once
            state = detail.seal_state(event)
            extra_context["integrity_headline"] = detail.render_headline(state)
            extra_context["integrity_findings"] = detail.render_findings(state)
        if event is not None and event.correlation_id:
            extra_context["correlation_url"] = self._changelist_url(correlation_id=event.correlation_id)
            extra_context["timeline_url"] = self._view_url("timeline", correlation_id=event.correlation_id)
        if event is not None and event.subject and event.event_type in ARTIFACT_TYPES:
            extra_context["lineage_url"] = self._view_url("lineage", artifact=event.subject)
        return super().change_view(request, object_id, form_url, extra_context)

    # -- timeline and lineage ----------------------------------------------------------------------------------------

    def _read_only_page(self, request: HttpRequest) -> None:
        if request.method not in ("GET", "HEAD"):
            raise PermissionDenied("audit events are read-only: this page accepts no POST")
        if not self.has_view_permission(request):
            raise PermissionDenied("this page takes the view_auditevent permission")

    def _page_context(self, request: HttpRequest, title: str) -> dict[str, Any]:
        return {
            **self.admin_site.each_context(request),
            "title": title,
            "opts": self.opts,
            "app_label": self.opts.app_label,
            "changelist_url": self._changelist_url(),
        }

    def timeline_view(self, request: HttpRequest) -> HttpResponse:
        """All events of one correlation id in time order (:mod:`.timeline`)."""
        self._read_only_page(request)
        correlation_id = str(request.GET.get("correlation_id", "")).strip()
        line = timeline.correlation_timeline(self.get_queryset(request), correlation_id)
        context = self._page_context(request, "Correlation timeline")
        context.update(
            {
                "correlation_id": correlation_id,
                "timeline": line,
                "count": len(line.entries),
                "rows_html": self._timeline_rows(line),
                "filtered_url": self._changelist_url(correlation_id=correlation_id) if correlation_id else "",
                "trace_ui": bool(timeline.settings.ADMIN_TRACE_URL),
                "max_events": timeline.MAX_EVENTS,
            }
        )
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/observability_app/auditevent/timeline.html", context)

    def _timeline_rows(self, line: Any) -> str:
        """The timeline's rows, built here in one pass over escaped values (``html.escape``): a template loop over
        1,000 events costs 300 ms, and ``format_html`` per cell most of what is left."""
        change_url = reverse(
            f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=[0], current_app=self.admin_site.name
        ).replace("/0/", "/{}/")
        lineage_url = self._view_url("lineage")  # "...?": the artifact is appended per row
        e = html.escape
        rows = []
        for entry in line.entries:
            event = entry.event
            lineage_link = ""
            if event.subject and event.event_type in ARTIFACT_TYPES:
                href = e(lineage_url + urlencode({"artifact": event.subject}))
                lineage_link = f'<a class="obs-lineage-link" href="{href}">lineage</a>'
            outcome = e(event.outcome or "")
            rows.append(
                f'<tr class="obs-timeline-event obs-outcome-{outcome or "none"}" data-event-id="{event.pk}">'
                f'<td class="obs-offset" title="since the previous event: {e(timeline.format_offset(entry.gap))}">'
                f"{e(timeline.format_offset(entry.offset))}</td>"
                f'<td class="obs-time"><a href="{e(change_url.format(event.pk))}">'
                f'<time datetime="{e(format_time(event.occurred_at))}">'
                f"{e(event.occurred_at.astimezone(UTC).strftime('%Y-%m-%d %H:%M:%S.%f')[:23])}</time></a></td>"
                f'<td class="obs-type-cell">{event_type_label(event.event_type)}</td>'
                f'<td class="obs-source">{e(event.source or "-")}</td>'
                f"<td>{short_id(event.actor, kind='actor', what='actor')}</td>"
                f'<td class="obs-outcome">{outcome or "-"}</td>'
                f"<td>{short_id(event.subject, kind='subject', what='subject')}{lineage_link}</td>"
                f"<td>{short_id(event.request_id, kind='request', what='request id')}</td>"
                f'<td class="obs-trace">{short_id(event.trace_id, href=entry.trace_url, kind="trace", what="trace id")}'
                "</td></tr>"
            )
        return mark_safe("".join(rows))  # every value escaped above (short_id and event_type_label escape theirs)

    def lineage_view(self, request: HttpRequest) -> HttpResponse:
        """An artifact's upstream chain, decisions and readers (:mod:`.lineage`)."""
        self._read_only_page(request)
        artifact_id = str(request.GET.get("artifact", "")).strip()
        found = lineage.artifact_lineage(self.get_queryset(request), artifact_id)
        context = self._page_context(request, "Artifact lineage")
        context.update(
            {
                "artifact_id": artifact_id,
                "lineage": found,
                "graph": lineage.render_graph(found, lambda name: self._view_url("lineage", artifact=name)),
                "chain": [
                    {
                        "node": node,
                        "decisions": lineage.decision_rows(node),
                        "url": self._view_url("lineage", artifact=node.artifact_id),
                        "events_url": self._changelist_url(q=f"subject:{node.artifact_id}"),
                    }
                    for node in found.chain()
                ],
                "max_nodes": lineage.MAX_NODES,
                "max_accesses": lineage.MAX_ACCESSES,
            }
        )
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/observability_app/auditevent/lineage.html", context)

    # -- export ----------------------------------------------------------------------------------------------------

    def get_urls(self) -> list:
        info = self.opts.app_label, self.opts.model_name
        export_view = self.admin_site.admin_view(self.export_view)
        return [
            path("export/<str:fmt>/", export_view, name="{}_{}_export".format(*info)),
            path("timeline/", self.admin_site.admin_view(self.timeline_view), name="{}_{}_timeline".format(*info)),
            path("lineage/", self.admin_site.admin_view(self.lineage_view), name="{}_{}_lineage".format(*info)),
            *super().get_urls(),
        ]

    def export_view(self, request: HttpRequest, fmt: str) -> HttpResponse:
        """The current selection (the changelist's filters, search and dates), or with ``selection`` the ticked
        events (``id=`` values) only, as a streamed CSV or JSON Lines file, recorded as an AUDIT_EXPORTED event."""
        if request.method not in ("GET", "HEAD"):
            return HttpResponseNotAllowed(["GET", "HEAD"])
        if not self.has_view_permission(request):
            raise PermissionDenied("exporting audit events takes the view_auditevent permission")
        if fmt not in export.FORMATS:
            return _text_response(f"Unknown export format; use one of: {', '.join(export.FORMATS)}.", 404)
        if "selection" in request.GET or "id" in request.GET:
            ids = _selected_ids(request.GET.getlist("id"))
            if isinstance(ids, str):
                return _text_response(ids, 400)
            queryset = self.get_queryset(request).filter(pk__in=ids).order_by(*ORDERING)
            filters: dict[str, Any] = {"selected_ids": [str(pk) for pk in ids]}
        else:
            request.GET = request.GET.copy()
            request.GET.pop(PAGE_VAR, None)  # the whole selection, not a page: no page query either
            try:
                cl = self.get_changelist_instance(request)
            except IncorrectLookupParameters as exc:
                return _text_response(f"Invalid filter: {exc}", 400)
            queryset = cl.queryset
            filters = {name: values if len(values) > 1 else values[0] for name, values in request.GET.lists()}
        who = request.user.get_username()
        logger.info(
            "audit events exported",
            extra={"export_format": fmt, "export_filters": str(filters)[:2000], "actor": who},
        )
        lines = export.recorded_export_lines(
            queryset, fmt, exported_by=who, filters=filters, source="admin", **_request_context()
        )
        return export.export_response(queryset, fmt, lines=lines)


def _text_response(text: str, status: int) -> HttpResponse:
    return HttpResponse(text, status=status, content_type="text/plain; charset=utf-8")


def _selected_ids(values: list[str]) -> list[int] | str:
    """The ticked event ids, or the reason they cannot be exported."""
    if not values:
        return "No events selected: tick the events to export, or use the export of the whole selection."
    if len(values) > MAX_SELECTED:
        return f"At most {MAX_SELECTED} events can be exported by ticking them; use a filter instead."
    ids = []
    for value in values:
        text = value.strip()
        if not (text.isascii() and text.isdigit() and 0 < int(text) <= MAX_PK):
            return f"Not an event id: {text[:40]!r}."
        ids.append(int(text))
    return sorted(set(ids))


def _request_context() -> dict[str, str]:
    """The request's ids for the AUDIT_EXPORTED event: it is recorded once the download ends, after the request's
    context is gone."""
    ctx = obs_context.current()
    if ctx is None:
        return {}
    return {
        "correlation_id": ctx.correlation_id,
        "request_id": ctx.request_id,
        "trace_id": ctx.trace_id,
        "span_id": ctx.span_id,
        "client_ip": ctx.ip,
        "user_agent": ctx.user_agent,
        "route": ctx.route,
    }
