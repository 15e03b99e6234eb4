"""The compliance browser (observability_app.admin.events and the modules it is built from), through Django's test
client: read-only for everyone, exact search, cheap filters and date drill-down, no unbounded count, streamed export,
and hostile input (search strings, filter parameters, page numbers, object ids) that never reaches a 500.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from urllib.parse import urlencode

import pytest
from django.contrib.auth.models import Permission
from django.core.checks import Error, Warning
from django.core.paginator import EmptyPage, PageNotAnInteger
from django.db import connection
from django.http import StreamingHttpResponse
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from hypothesis import given
from hypothesis import strategies as st

from observability_app import audit
from observability_app.admin.events import AuditEventAdmin
from observability_app.admin.pagination import EstimatedCountPaginator, PageTooDeep, planner_estimate
from observability_app.admin.permissions import ensure_auditor_group
from observability_app.admin.search import exact_search, parse
from observability_app.audit import export
from observability_app.audit.models import AuditEvent
from observability_app.checks import check_admin_settings

CHANGELIST = "/admin/observability_app/auditevent/"
EXPORT = CHANGELIST + "export/{}/"
SCRIPT = "<script>window.obsPwned = 1</script>"


def accessed(artifact: str = "bkt/model@1", **fields):
    """Record one ARTIFACT_ACCESSED event; ``fields`` are record()'s options and context fields."""
    payload = {"artifact_id": artifact, "version": "1", "reader": "ci", "purpose": "eval"}
    return audit.record("ARTIFACT_ACCESSED", payload, **fields)


def listed(response) -> list[int]:
    """The primary keys of the events a changelist response shows, in page order."""
    return [event.pk for event in response.context["cl"].result_list]


def main_content(response) -> str:
    """The page without the admin's navigation sidebar (which offers other models' add links to a superuser)."""
    page = response.content.decode()
    return page[page.index('id="content-main"') :]


def streamed(response) -> str:
    assert isinstance(response, StreamingHttpResponse)
    return b"".join(response.streaming_content).decode("utf-8")


@pytest.fixture
def auditor(django_user_model):
    user = django_user_model.objects.create_user("audra")
    ensure_auditor_group(users=[user.username])
    return user


@pytest.fixture
def auditor_client(client, auditor):
    client.force_login(auditor)
    return client


@pytest.fixture
def superuser_client(client, django_user_model):
    user = django_user_model.objects.create_superuser("root", password=None)
    client.force_login(user)
    return client


@pytest.fixture
def trail(db):
    """A small trail: one correlation with three events, look-alike ids, two years, hostile text."""
    events = {
        "created": audit.record(
            "ARTIFACT_CREATED",
            {
                "artifact_id": "bkt/model@1",
                "version": "1",
                "client_digest": "sha256:aa",
                "stored_digest": "sha256:aa",
                "size_bytes": 10,
                "bucket_id": "bkt",
                "note": SCRIPT,
            },
            actor="alice",
            correlation_id="corr-1",
            request_id="req-1",
            client_ip="10.0.0.7",
            user_agent=f"agent {SCRIPT}",
            route="api/v1/buckets/<bucket>/artifacts/<name>/<version>",
            occurred_at=datetime(2024, 3, 5, 10, 0, tzinfo=UTC),
        ),
        "read": accessed(
            actor="bob",
            correlation_id="corr-1",
            request_id="req-2",
            occurred_at=datetime(2024, 3, 5, 10, 1, tzinfo=UTC),
        ),
        "scan": audit.record(
            "SAFETY_DECISION_RECORDED",
            {
                "artifact_id": "bkt/model@1",
                "decision": "approved",
                "scanner": "s",
                "scanner_version": "1",
                "confidence": 0.9,
            },
            actor="alice",
            correlation_id="corr-1",
            request_id="req-3",
            occurred_at=datetime(2024, 7, 9, 8, 0, tzinfo=UTC),
        ),
        "prefix": accessed(
            "bkt/model@10",
            actor="alicia",
            correlation_id="corr-10",
            request_id="req-10",
            occurred_at=datetime(2025, 1, 2, 3, 4, tzinfo=UTC),
        ),
        "suffix": accessed(
            "xbkt/model@1",
            actor="ALICE",
            correlation_id="xcorr-1",
            request_id="xreq-1",
            occurred_at=datetime(2025, 1, 2, 5, 6, tzinfo=UTC),
        ),
        "formula": accessed(
            '=HYPERLINK("http://evil")',
            actor="-2+3",
            correlation_id="@corr",
            occurred_at=datetime(2025, 2, 1, tzinfo=UTC),
        ),
    }
    return events


# -- read-only for everyone --------------------------------------------------------------------------------------------


def test_model_admin_answers_no_to_add_change_delete_even_for_a_superuser(django_user_model, trail):
    from django.contrib import admin

    request = RequestFactory().get(CHANGELIST)
    request.user = django_user_model.objects.create_superuser("root", password=None)
    model_admin = admin.site._registry[AuditEvent]
    assert isinstance(model_admin, AuditEventAdmin)
    assert model_admin.has_view_permission(request)
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request, trail["read"])
    assert not model_admin.has_delete_permission(request, trail["read"])
    assert model_admin.get_actions(request) == {}


@pytest.mark.parametrize("who", ["superuser_client", "auditor_client"])
def test_add_change_and_delete_are_refused_when_posted_directly(request, who, trail):
    client = request.getfixturevalue(who)
    event = trail["read"]
    before = AuditEvent.objects.count()
    form = {"event_type": "ARTIFACT_ACCESSED", "subject": "forged", "actor": "mallory", "payload": "{}"}

    assert client.get(CHANGELIST + "add/").status_code == 403
    assert client.post(CHANGELIST + "add/", form).status_code == 403
    assert client.post(f"{CHANGELIST}{event.pk}/change/", form).status_code == 403
    assert client.get(f"{CHANGELIST}{event.pk}/delete/").status_code == 403
    assert client.post(f"{CHANGELIST}{event.pk}/delete/", {"post": "yes"}).status_code == 403
    bulk = {"action": "delete_selected", "_selected_action": [event.pk], "post": "yes", "index": "0"}
    assert client.post(CHANGELIST, bulk).status_code == 403

    assert AuditEvent.objects.count() == before
    stored = AuditEvent.objects.get(pk=event.pk)
    assert (stored.subject, stored.actor, stored.digest) == (event.subject, event.actor, event.digest)


@pytest.mark.parametrize("who", ["superuser_client", "auditor_client"])
def test_no_page_offers_add_change_or_delete(request, who, trail):
    client = request.getfixturevalue(who)
    page = main_content(client.get(CHANGELIST))
    assert "addlink" not in page and CHANGELIST + "add/" not in page
    assert 'name="action"' not in page and "delete_selected" not in page
    assert 'name="_save"' not in page

    detail_page = main_content(client.get(f"{CHANGELIST}{trail['read'].pk}/change/"))
    assert "deletelink" not in detail_page and "/delete/" not in detail_page
    assert 'name="_save"' not in detail_page and 'name="_continue"' not in detail_page
    assert "<textarea" not in detail_page and 'name="subject"' not in detail_page  # every field read-only
    assert "closelink" in detail_page

    index = client.get("/admin/").content.decode()
    assert CHANGELIST in index and CHANGELIST + "add/" not in index


def test_staff_without_view_permission_is_refused_everything(client, django_user_model, trail):
    user = django_user_model.objects.create_user("staffer", is_staff=True)
    client.force_login(user)
    assert client.get(CHANGELIST).status_code == 403
    assert client.get(f"{CHANGELIST}{trail['read'].pk}/change/").status_code == 403
    assert client.get(EXPORT.format("csv")).status_code == 403
    assert client.get(EXPORT.format("jsonl")).status_code == 403


def test_anonymous_visitors_are_sent_to_the_login_page(client, trail):
    for url in (CHANGELIST, EXPORT.format("csv"), f"{CHANGELIST}{trail['read'].pk}/change/"):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")


def test_the_auditor_group_is_enough_to_browse(auditor_client, auditor, trail):
    assert auditor.has_perm("observability_app.view_auditevent")
    assert not auditor.has_perm("observability_app.change_auditevent")
    assert auditor_client.get(CHANGELIST).status_code == 200
    assert auditor_client.get(f"{CHANGELIST}{trail['scan'].pk}/change/").status_code == 200


# -- the changelist ----------------------------------------------------------------------------------------------------


def test_changelist_shows_the_auditors_columns_newest_first(auditor_client, trail):
    response = auditor_client.get(CHANGELIST)
    page = response.content.decode()
    for header in ("time (UTC)", "Event type", "Subject", "Actor", "Outcome", "correlation id"):
        assert header.lower() in page.lower()
    assert listed(response) == _by_time()  # newest first by time: a back-dated event is listed where it belongs
    assert f'href="{CHANGELIST}?{urlencode({"correlation_id": "corr-1"})}"' in page
    assert "2024-03-05 10:00:00" in page


def test_the_correlation_link_lists_exactly_that_correlation(auditor_client, trail):
    response = auditor_client.get(CHANGELIST, {"correlation_id": "corr-1"})
    assert sorted(listed(response)) == sorted(trail[name].pk for name in ("created", "read", "scan"))
    assert 'value="corr-1"' in response.content.decode()  # the filter box shows what is selected


def _by_time() -> list[int]:
    return list(AuditEvent.objects.order_by("-occurred_at", "-pk").values_list("pk", flat=True))


def test_changelist_sorting_is_fixed_to_time_newest_first(auditor_client, trail):
    for order in ("1", "-1", "2.3", "99", "x", "-0"):
        assert listed(auditor_client.get(CHANGELIST, {"o": order})) == _by_time()


# -- exact search ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("term", "expected"),
    [
        ("corr-1", {"created", "read", "scan"}),  # not corr-10, not xcorr-1
        ("req-1", {"created"}),  # not req-10, not xreq-1
        ("bkt/model@1", {"created", "read", "scan"}),  # subject
        ("alice", {"created", "scan"}),  # actor, case-sensitive: not ALICE, not alicia
        ("  alice  ", {"created", "scan"}),
        ("ALICE", {"suffix"}),
        ("lice", set()),
        ("corr", set()),
        ("%", set()),
        ("_", set()),
        ("actor:alice", {"created", "scan"}),
        ("Actor: alice", {"created", "scan"}),
        ("subject:alice", set()),
        ("correlation:corr-10", {"prefix"}),
        ("request:req-2", {"read"}),
        ("request:corr-1", set()),
        ("nosuchprefix:corr-1", set()),  # an unknown prefix is part of the value
    ],
)
def test_search_matches_whole_values_exactly(auditor_client, trail, term, expected):
    response = auditor_client.get(CHANGELIST, {"q": term})
    assert response.status_code == 200
    assert set(listed(response)) == {trail[name].pk for name in expected}


def test_search_by_event_id(auditor_client, trail):
    event = trail["scan"]
    for term in (str(event.event_id), event.event_id.hex, f"event:{event.event_id}"):
        assert listed(auditor_client.get(CHANGELIST, {"q": term})) == [event.pk]


def test_search_never_uses_like_or_upper(auditor_client, trail):
    with CaptureQueriesContext(connection) as queries:
        auditor_client.get(CHANGELIST, {"q": "corr-1"})
    event_queries = [q["sql"] for q in queries.captured_queries if "observability_audit_event" in q["sql"]]
    assert event_queries
    for sql in event_queries:
        assert " LIKE " not in sql.upper() and "UPPER(" not in sql.upper(), sql


def test_parse_splits_known_prefixes_only():
    assert parse("") is None and parse("   ") is None and parse(None) is None
    assert parse("actor:bob").column == "actor"
    assert parse("actor:").column is None  # nothing after the prefix: the whole text is the value
    assert parse("a:b:c").value == "a:b:c"
    assert parse("subject:config:key").value == "config:key"


@given(term=st.text(max_size=300))
def test_hostile_search_strings_match_only_equal_values(auditor_client, trail, term):
    response = auditor_client.get(CHANGELIST, {"q": term})
    assert response.status_code == 200
    search = parse(term)
    if search is None or "\x00" in term:  # blank, or refused by Django's search form: everything is listed
        assert len(listed(response)) == AuditEvent.objects.count()
        return
    for pk in listed(response):
        event = AuditEvent.objects.get(pk=pk)
        columns = [search.column] if search.column else ["correlation_id", "request_id", "subject", "actor"]
        assert any(str(getattr(event, column)) == search.value for column in columns if column != "event_id") or (
            str(event.event_id) == search.value or event.event_id.hex == search.value
        )


@pytest.mark.parametrize("term", ["a\x00b", "\x00", "corr-1\x00"])
def test_search_strings_with_nul_are_refused_by_the_search_form(auditor_client, trail, term):
    response = auditor_client.get(CHANGELIST, {"q": term})
    assert response.status_code == 200
    assert "Null characters are not allowed" in response.content.decode()  # Django's form; nothing searched
    assert len(listed(response)) == AuditEvent.objects.count()


@pytest.mark.parametrize(
    "term",
    [
        "x" * 100_000,
        "'; DROP TABLE observability_audit_event; --",
        "\u202e",
        "🙂" * 300,
    ],
)
def test_huge_and_injection_search_strings(auditor_client, trail, term):
    before = AuditEvent.objects.count()
    response = auditor_client.get(CHANGELIST, {"q": term})
    assert response.status_code == 200
    assert listed(response) == []
    assert AuditEvent.objects.count() == before
    assert list(exact_search(AuditEvent.objects.all(), term + "\x00")) == []  # NUL past the form: no query fails


def test_exact_search_refuses_values_a_column_cannot_hold(db, trail):
    queryset = AuditEvent.objects.all()
    assert list(exact_search(queryset, "correlation:" + "c" * 129)) == []
    assert list(exact_search(queryset, "event:not-a-uuid")) == []
    assert exact_search(queryset, "") is queryset


# -- filters and date drill-down ---------------------------------------------------------------------------------------


def test_type_filter_lists_registered_types_without_a_distinct_scan(auditor_client, trail):
    with CaptureQueriesContext(connection) as queries:
        response = auditor_client.get(CHANGELIST, {"event_type": "SAFETY_DECISION_RECORDED"})
    assert listed(response) == [trail["scan"].pk]
    page = response.content.decode()
    for name in ("AUDIT_PURGED", "LEGAL_HOLD_PLACED", "ARTIFACT_CREATED"):  # from the registry, events or not
        assert f"event_type={name}" in page
    assert not any("DISTINCT" in q["sql"] and "event_type" in q["sql"].split("FROM")[0] for q in queries)


def test_unknown_type_value_filters_to_nothing_and_is_shown(auditor_client, trail):
    response = auditor_client.get(CHANGELIST, {"event_type": "<b>NOPE</b>"})
    assert response.status_code == 200
    assert listed(response) == []
    assert "&lt;b&gt;NOPE&lt;/b&gt;" in response.content.decode()


def test_actor_filter_is_exact_and_offers_recent_actors(auditor_client, trail):
    response = auditor_client.get(CHANGELIST, {"actor": "alice"})
    assert sorted(listed(response)) == sorted([trail["created"].pk, trail["scan"].pk])
    page = auditor_client.get(CHANGELIST).content.decode()
    for actor in ("alice", "bob", "alicia"):
        assert f"?actor={actor}" in page
    assert listed(auditor_client.get(CHANGELIST, {"actor": "ali"})) == []


def test_filters_combine_with_search_and_each_other(auditor_client, trail):
    response = auditor_client.get(CHANGELIST, {"actor": "alice", "event_type": "ARTIFACT_CREATED", "q": "corr-1"})
    assert listed(response) == [trail["created"].pk]


def test_date_drill_down_lists_only_periods_with_events(auditor_client, trail):
    top = auditor_client.get(CHANGELIST).content.decode()
    assert "occurred_at__year=2024" in top and "occurred_at__year=2025" in top
    assert "occurred_at__year=2023" not in top

    year = auditor_client.get(CHANGELIST, {"occurred_at__year": 2024})
    assert sorted(listed(year)) == sorted(trail[name].pk for name in ("created", "read", "scan"))
    page = year.content.decode()
    assert "March 2024" in page and "July 2024" in page and "April 2024" not in page

    month = auditor_client.get(CHANGELIST, {"occurred_at__year": 2024, "occurred_at__month": 3})
    page = month.content.decode()
    assert "occurred_at__day=5" in page and "occurred_at__day=6" not in page

    day = auditor_client.get(CHANGELIST, {"occurred_at__year": 2025, "occurred_at__month": 1, "occurred_at__day": 2})
    assert sorted(listed(day)) == sorted([trail["prefix"].pk, trail["suffix"].pk])


def test_date_drill_down_of_a_big_selection_uses_index_probes(auditor_client, trail, settings):
    settings.OBSERVABILITY = {**settings.OBSERVABILITY, "ADMIN_COUNT_LIMIT": 2}  # the selection is "big"
    with CaptureQueriesContext(connection) as queries:
        page = auditor_client.get(CHANGELIST).content.decode()
    assert "occurred_at__year=2024" in page and "occurred_at__year=2025" in page
    assert not [q["sql"] for q in queries.captured_queries if "DISTINCT" in q["sql"].upper()]
    assert [q["sql"] for q in queries.captured_queries if "MIN(" in q["sql"].upper()]


@pytest.mark.parametrize(
    "params",
    [
        {"payload__contains": "x"},
        {"subject__contains": "model"},
        {"subject__icontains": "model"},
        {"actor__regex": ".*"},
        {"id__gt": "1"},
        {"digest": "x"},
        {"occurred_at__gte": "2020-01-01"},
        {"occurred_at__year": "abc"},
        {"occurred_at__year": "99999"},
        {"occurred_at__year": "0"},
        {"occurred_at__year": "2024", "occurred_at__month": "13"},
        {"occurred_at__year": "2024", "occurred_at__month": "1", "occurred_at__day": "32"},
        {"event_type__in": "A,B"},
        {"user__username": "x"},
    ],
)
def test_filters_an_index_does_not_serve_are_refused(auditor_client, trail, params):
    assert auditor_client.get(CHANGELIST, params).status_code == 400
    assert auditor_client.get(EXPORT.format("csv"), params).status_code == 400


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"occurred_at__year": "2024", "occurred_at__month": "2", "occurred_at__day": "30"}, 302),  # no such date
        ({"occurred_at__month": "3"}, 200),  # a month without its year is dropped
        ({"occurred_at__year": "2024", "occurred_at__day": "5"}, 200),  # a day without its month too
        ({"occurred_at__year": "9998", "occurred_at__month": "12", "occurred_at__day": "31"}, 200),
        ({"occurred_at__year": "1"}, 200),
        ({"actor": ""}, 200),
        ({"actor": "a\x00"}, 200),
        ({"correlation_id": "x" * 5000}, 200),
        ({"event_type": "\x00"}, 200),
    ],
)
def test_odd_filter_values_never_fail(auditor_client, trail, params, status):
    assert auditor_client.get(CHANGELIST, params).status_code == status


ACCEPTED = ["event_type", "actor", "correlation_id", "occurred_at__year", "occurred_at__month", "q", "p", "o"]


@given(name=st.sampled_from(ACCEPTED), value=st.text(max_size=200))
def test_hostile_values_of_accepted_parameters_never_fail(auditor_client, trail, name, value):
    params = {name: value}
    if name == "occurred_at__month":
        params["occurred_at__year"] = "2024"
    assert auditor_client.get(CHANGELIST, params).status_code in (200, 302, 400)


# -- counting and paging -----------------------------------------------------------------------------------------------


@pytest.fixture
def many(db):
    """250 events, oldest first."""
    audit.record_many(
        {
            "event_type": "ARTIFACT_ACCESSED",
            "payload": {"artifact_id": f"a{i % 7}", "version": "1", "reader": "r", "purpose": "p"},
            "actor": f"user-{i % 3}",
            "correlation_id": f"c{i // 5}",
        }
        for i in range(250)
    )
    return list(AuditEvent.objects.order_by("-pk").values_list("pk", flat=True))


def _full_counts(queries) -> list[str]:
    """COUNT queries that are not bounded by a LIMIT (nor by the chart's window: a GROUP BY over a time range)."""
    return [
        q["sql"]
        for q in queries.captured_queries
        if "COUNT(" in q["sql"].upper() and "LIMIT" not in q["sql"] and "GROUP BY" not in q["sql"]
    ]


def test_changelist_never_counts_the_whole_selection(auditor_client, many, settings):
    settings.OBSERVABILITY = {**settings.OBSERVABILITY, "ADMIN_COUNT_LIMIT": 100}
    for params in ({}, {"event_type": "ARTIFACT_ACCESSED"}, {"actor": "user-1"}, {"p": 2}, {"all": ""}):
        with CaptureQueriesContext(connection) as queries:
            response = auditor_client.get(CHANGELIST, params)
        assert response.status_code == 200
        assert _full_counts(queries) == [], params
        cl = response.context["cl"]
        assert cl.paginator.count_is_exact is (params == {"actor": "user-1"})  # 83 rows: counted
        assert cl.full_result_count is None
        assert len(listed(response)) == (83 if params == {"actor": "user-1"} else 100)  # never more than a page
    assert "more than 100 audit events" in auditor_client.get(CHANGELIST).content.decode()


def test_small_selections_are_counted_exactly(auditor_client, many):
    response = auditor_client.get(CHANGELIST, {"actor": "user-1"})
    assert response.context["cl"].paginator.count_is_exact is True
    assert "83 audit events" in response.content.decode()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL statistics")
def test_postgresql_estimates_from_statistics(auditor_client, many, settings):
    settings.OBSERVABILITY = {**settings.OBSERVABILITY, "ADMIN_COUNT_LIMIT": 100}
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE observability_audit_event")
    total = AuditEvent.objects.count()
    page = auditor_client.get(CHANGELIST).content.decode()
    assert "about" in page
    estimate = auditor_client.get(CHANGELIST).context["cl"].paginator.count
    assert total * 0.5 <= estimate <= total * 2
    assert 100 < planner_estimate(AuditEvent.objects.filter(event_type="ARTIFACT_ACCESSED")) <= total * 2


def test_pages_hold_the_right_rows_and_deep_pages_fetch_ids_first(auditor_client, many, settings):
    settings.OBSERVABILITY = {**settings.OBSERVABILITY, "ADMIN_COUNT_LIMIT": 100}
    everything = list(AuditEvent.objects.order_by("-pk").values_list("pk", flat=True))
    for number in (1, 2, 3):
        with CaptureQueriesContext(connection) as queries:
            response = auditor_client.get(CHANGELIST, {"p": number})
        assert listed(response) == everything[(number - 1) * 100 : number * 100]
        if number > 1:
            assert any('SELECT "observability_audit_event"."id"' in q["sql"] and "OFFSET" in q["sql"] for q in queries)


@pytest.mark.parametrize("limit", [10, 1000])  # estimated or exact count
@given(per_page=st.integers(1, 60), number=st.integers(-3, 40))
def test_paginator_pages_equal_slices_of_the_ordered_selection(many, limit, per_page, number):
    queryset = AuditEvent.objects.order_by("-pk")
    expected = many[(number - 1) * per_page : number * per_page] if number >= 1 else []
    paginator = EstimatedCountPaginator(queryset, per_page, count_limit=limit, max_depth=10_000)
    if number < 1 or (number > 1 and not expected):
        with pytest.raises(EmptyPage, match="less than 1" if number < 1 else "no results"):
            paginator.page(number)
        return
    assert [event.pk for event in paginator.page(number)] == expected


def test_paginator_refuses_pages_past_the_depth_limit(many):
    paginator = EstimatedCountPaginator(AuditEvent.objects.order_by("-pk"), 10, count_limit=5, max_depth=100)
    assert paginator.max_page == 11
    assert [e.pk for e in paginator.page(11)] == many[100:110]
    with pytest.raises(PageTooDeep, match="ADMIN_MAX_PAGE_DEPTH"):
        paginator.page(12)
    with pytest.raises(PageNotAnInteger, match="not an integer"):
        paginator.page("x")


@pytest.mark.parametrize(
    ("page", "status"), [("-1", 302), ("0", 302), ("abc", 200), ("1.5", 200), ("", 200), ("4", 302)]
)
def test_odd_page_numbers(auditor_client, many, page, status):
    response = auditor_client.get(CHANGELIST, {"p": page})
    assert response.status_code == status
    if status == 302:
        assert response["Location"].endswith("?e=1")  # Django's answer to a page that is not there


def test_a_page_past_the_depth_limit_shows_the_deepest_with_a_warning(auditor_client, many, settings):
    settings.OBSERVABILITY = {**settings.OBSERVABILITY, "ADMIN_MAX_PAGE_DEPTH": 100, "ADMIN_COUNT_LIMIT": 50}
    for page in ("3", "50", str(10**30)):
        response = auditor_client.get(CHANGELIST, {"p": page})
        assert response.status_code == 200
        assert response.context["cl"].page_num == 2
        assert listed(response) == many[100:200]
        assert "Pages deeper than 100 events are not served" in response.content.decode()


def test_next_link_of_an_estimated_count_follows_full_pages(auditor_client, many, settings):
    settings.OBSERVABILITY = {**settings.OBSERVABILITY, "ADMIN_COUNT_LIMIT": 10}
    page = auditor_client.get(CHANGELIST, {"p": 2}).content.decode()
    assert "p=3" in page and "obs-page-next" in page and "obs-page-last" not in page
    last = auditor_client.get(CHANGELIST, {"p": 3}).content.decode()  # 50 rows: not full, so the end
    assert "obs-page-next" not in last


# -- the detail page ---------------------------------------------------------------------------------------------------


def test_detail_page_shows_pretty_escaped_payload_and_the_captured_context(auditor_client, trail):
    event = trail["created"]
    page = auditor_client.get(f"{CHANGELIST}{event.pk}/change/").content.decode()
    assert '<pre class="obs-json">' in page
    assert "  &quot;artifact_id&quot;: &quot;bkt/model@1&quot;,\n" in page  # indented, one key per line
    assert SCRIPT not in page
    assert "&lt;script&gt;window.obsPwned = 1&lt;/script&gt;" in page
    for value in ("req-1", "10.0.0.7", "api/v1/buckets/&lt;bucket&gt;/artifacts", str(event.event_id), event.digest):
        assert value in page
    assert f'href="{CHANGELIST}?correlation_id=corr-1"' in page
    assert 'id="obs-correlation-events"' in page
    assert "matches: the event is as it was recorded" in page


ODD_IDS = ["abc", "-1", "99999999999999999999999999", "9223372036854775808", "1%00", "0", "1.0", "%2F"]


@pytest.mark.parametrize("object_id", [*ODD_IDS, "\u00b2", "\u0661"])  # superscript two, Arabic-Indic one
def test_odd_object_ids_are_not_found_not_errors(auditor_client, trail, object_id):
    response = auditor_client.get(f"{CHANGELIST}{object_id}/change/")
    assert response.status_code in (302, 404)


# -- export ------------------------------------------------------------------------------------------------------------


def test_csv_export_is_the_current_selection_streamed(auditor_client, trail):
    response = auditor_client.get(EXPORT.format("csv"), {"q": "corr-1", "p": "3"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith('attachment; filename="audit-events-')
    assert "no-store" in response["Cache-Control"]
    rows = list(csv.DictReader(io.StringIO(streamed(response))))
    assert [int(row["id"]) for row in rows] == sorted((trail[n].pk for n in ("created", "read", "scan")), reverse=True)
    created = next(row for row in rows if int(row["id"]) == trail["created"].pk)
    assert json.loads(created["payload"])["note"] == SCRIPT
    assert created["occurred_at"] == "2024-03-05T10:00:00.000000Z"
    assert created["event_id"] == str(trail["created"].event_id)
    assert list(rows[0]) == list(export.FIELDS)


def test_csv_export_neutralises_spreadsheet_formulas_jsonl_keeps_values(auditor_client, trail):
    rows = list(csv.DictReader(io.StringIO(streamed(auditor_client.get(EXPORT.format("csv"), {"q": "@corr"})))))
    assert rows[0]["subject"] == '\'=HYPERLINK("http://evil")'
    assert rows[0]["actor"] == "'-2+3" and rows[0]["correlation_id"] == "'@corr"
    line = json.loads(streamed(auditor_client.get(EXPORT.format("jsonl"), {"q": "@corr"})))
    assert line["subject"] == '=HYPERLINK("http://evil")' and line["actor"] == "-2+3"


def test_jsonl_export_follows_filters_and_dates(auditor_client, trail):
    response = auditor_client.get(EXPORT.format("jsonl"), {"occurred_at__year": 2025, "occurred_at__month": 1})
    assert response["Content-Type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in streamed(response).splitlines()]
    assert [line["id"] for line in lines] == [trail["suffix"].pk, trail["prefix"].pk]
    assert lines[0]["payload"] == trail["suffix"].payload
    typed = streamed(auditor_client.get(EXPORT.format("jsonl"), {"event_type": "ARTIFACT_CREATED"}))
    assert [json.loads(line)["id"] for line in typed.splitlines()] == [trail["created"].pk]


def test_export_streams_in_chunks(auditor_client, many, settings):
    settings.OBSERVABILITY = {**settings.OBSERVABILITY, "ADMIN_EXPORT_CHUNK_SIZE": 7}
    lines = streamed(auditor_client.get(EXPORT.format("jsonl"))).splitlines()
    assert [json.loads(line)["id"] for line in lines] == many
    everything = AuditEvent.objects.order_by("-pk")  # the events and the export's own AUDIT_EXPORTED event
    assert len(list(export.export_lines(everything, "csv", chunk_size=3))) == everything.count() + 1


def test_export_is_offered_with_the_current_filters(auditor_client, trail):
    page = auditor_client.get(CHANGELIST, {"q": "corr-1", "event_type": "ARTIFACT_CREATED", "p": "1"}).content
    page = page.decode()
    assert 'id="obs-export-csv"' in page and 'id="obs-export-jsonl"' in page
    assert f'href="{EXPORT.format("csv")}?event_type=ARTIFACT_CREATED&amp;q=corr-1"' in page


@pytest.mark.parametrize("fmt", ["xlsx", "CSV", "json", "csv%00", "..%2F.."])
def test_unknown_export_formats_are_not_found(auditor_client, trail, fmt):
    response = auditor_client.get(f"{CHANGELIST}export/{fmt}/")
    assert response.status_code in (404, 302)  # 302: the admin's redirect of an odd path to a (missing) object
    assert not response.streaming


def test_export_refuses_post(auditor_client, trail):
    assert auditor_client.post(EXPORT.format("csv")).status_code == 405


def test_export_lines_refuses_unknown_formats(db):
    with pytest.raises(ValueError, match="unknown export format 'xml'"):
        export.export_lines(AuditEvent.objects.all(), "xml")


# -- settings checks ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "ids"),
    [
        ({}, []),
        ({"ADMIN_COUNT_LIMIT": 0}, ["observability_app.E070"]),
        ({"ADMIN_MAX_PAGE_DEPTH": "1000"}, ["observability_app.E070"]),
        ({"ADMIN_EXPORT_CHUNK_SIZE": True}, ["observability_app.E070"]),
        ({"ADMIN_EXPORT_CHUNK_SIZE": -5, "ADMIN_COUNT_LIMIT": 2.5}, ["observability_app.E070"] * 2),
        ({"ADMIN_COUNT_LIMIT": 5_000_000}, ["observability_app.W070"]),
    ],
)
def test_admin_settings_checks(settings, overrides, ids):
    settings.OBSERVABILITY = {**settings.OBSERVABILITY, **overrides}
    messages = check_admin_settings()
    assert [m.id for m in messages] == ids
    for message in messages:
        assert isinstance(message, Error if message.id.endswith("E070") else Warning)
        assert any(key in message.msg for key in overrides)


def test_view_permission_exists_and_nothing_else(db):
    codenames = set(Permission.objects.filter(content_type__model="auditevent").values_list("codename", flat=True))
    assert codenames == {"view_auditevent"}
