"""The compliance browser's pages beyond the list: correlation timeline, artifact lineage, the chart, integrity at a
glance, and the export of ticked rows; all read-only, all escaping what events hold."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from urllib.parse import quote_plus, urlencode

import pytest
from django.contrib import admin
from django.core.checks import Error
from django.core.signals import request_finished
from django.db import close_old_connections

from observability_app import audit
from observability_app.admin.integrity import trail_integrity
from observability_app.admin.lineage import artifact_lineage
from observability_app.admin.permissions import ensure_auditor_group
from observability_app.admin.timeline import correlation_timeline, format_offset
from observability_app.audit.models import AuditEvent, AuditSeal, AuditVerification
from observability_app.checks import check_admin_settings

CHANGELIST = "/admin/observability_app/auditevent/"
TIMELINE = CHANGELIST + "timeline/"
LINEAGE = CHANGELIST + "lineage/"
SCRIPT = "<script>window.obsPwned = 1</script>"
T0 = datetime(2025, 5, 6, 7, 8, tzinfo=UTC)


@pytest.fixture
def auditor_client(client, django_user_model):
    user = django_user_model.objects.create_user("audra")
    ensure_auditor_group(users=[user.username])
    client.force_login(user)
    return client


def created(artifact: str, **fields):
    payload = {"artifact_id": artifact, "version": "1", "client_digest": "sha256:aa", "stored_digest": "sha256:aa",
               "size_bytes": 1, "bucket_id": "b"}  # fmt: skip
    return audit.record("ARTIFACT_CREATED", payload, **fields)


def provenance(artifact: str, refs: list, result: str = "verified", **fields):
    return audit.record(
        "PROVENANCE_CHAIN_VERIFIED", {"artifact_id": artifact, "upstream_refs": refs, "result": result}, **fields
    )


def decided(artifact: str, decision: str, **fields):
    payload = {"artifact_id": artifact, "decision": decision, "scanner": "scan", "scanner_version": "2",
               "confidence": 0.9}  # fmt: skip
    return audit.record("SAFETY_DECISION_RECORDED", payload, **fields)


def read(artifact: str, reader: str, purpose: str, **fields):
    payload = {"artifact_id": artifact, "version": "1", "reader": reader, "purpose": purpose}
    return audit.record("ARTIFACT_ACCESSED", payload, **fields)


# -- timeline ----------------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_timeline_lists_one_correlation_in_time_order_with_offsets(auditor_client, settings):
    settings.OBSERVABILITY = {**settings.OBSERVABILITY, "ADMIN_TRACE_URL": "http://traces.local/trace/{trace_id}"}
    third = read("m@1", "ci", "eval", correlation_id="corr-t", occurred_at=T0 + timedelta(seconds=90), source="job",
                 trace_id="ab" * 16)  # fmt: skip
    first = created("m@1", correlation_id="corr-t", occurred_at=T0, actor="alice", source="api")
    second = decided("m@1", "approved", correlation_id="corr-t", occurred_at=T0 + timedelta(seconds=1.5),
                     source="worker", actor=SCRIPT)  # fmt: skip
    read("m@1", "x", "y", correlation_id="other")
    hostile = '"><img src=x onerror=alert(1)>&'
    fourth = read(hostile, "r", "p", correlation_id="corr-t", occurred_at=T0 + timedelta(minutes=5),
                  source=hostile[:16], request_id=hostile, outcome="denied")  # fmt: skip
    line = correlation_timeline(AuditEvent.objects.all(), "corr-t")
    assert [entry.event.pk for entry in line.entries] == [first.pk, second.pk, third.pk, fourth.pk]
    assert [format_offset(entry.offset) for entry in line.entries] == [
        "+0.000 s",
        "+1.500 s",
        "+1 min 30.0 s",
        "+5 min 00.0 s",
    ]
    response = auditor_client.get(TIMELINE, {"correlation_id": "corr-t"})
    page = response.content.decode()
    assert response.status_code == 200
    assert page.count('class="obs-timeline-event') == 4
    assert "<img" not in page and "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;&amp;" in page  # text and attributes
    assert (
        page.index(f'data-event-id="{first.pk}"')
        < page.index(f'data-event-id="{second.pk}"')
        < page.index(f'data-event-id="{third.pk}"')
    )
    assert "+1 min 30.0 s" in page and "worker" in page and "job" in page
    assert f'href="http://traces.local/trace/{"ab" * 16}"' in page
    assert SCRIPT not in page and "&lt;script&gt;" in page
    assert f"lineage/?artifact={quote_plus(hostile)}".replace("&", "&amp;") in page  # its lineage link, escaped


@pytest.mark.django_db
def test_timeline_without_a_tracing_ui_has_no_trace_links_and_odd_ids_find_nothing(auditor_client):
    read("m@1", "ci", "eval", correlation_id="c", trace_id="cd" * 16)
    page = auditor_client.get(TIMELINE, {"correlation_id": "c"}).content.decode()
    assert "cd" * 16 in page and "/trace/" not in page and "no tracing UI set" in page
    for value in ("", " ", "x" * 5000, "a\x00b", "'; DROP TABLE x; --"):
        response = auditor_client.get(TIMELINE, {"correlation_id": value})
        assert response.status_code == 200
        assert 'class="obs-timeline-event' not in response.content.decode()


def test_offsets_read_at_every_scale():
    assert format_offset(timedelta(hours=3, minutes=2)) == "+3 h 02 min"
    assert format_offset(timedelta(days=4, hours=3)) == "+4 d 03 h"
    assert format_offset(timedelta(seconds=-2)) == "-2.000 s"


# -- lineage -----------------------------------------------------------------------------------------------------------


@pytest.fixture
def chain(db):
    """model@3 <- model@2 (+ dataset@1) <- base@1; a failed check, an overturn, readers."""
    created("base@1", occurred_at=T0)
    decided("base@1", "approved", occurred_at=T0)
    created("dataset@1", occurred_at=T0)
    created("model@2", occurred_at=T0 + timedelta(days=1))
    provenance("model@2", ["base@1", "dataset@1"], occurred_at=T0 + timedelta(days=1))
    decided("model@2", "rejected", occurred_at=T0 + timedelta(days=1))
    audit.record(
        "SAFETY_DECISION_OVERTURNED",
        {"artifact_id": "model@2", "previous_decision": "rejected", "new_decision": "approved",
         "overturn_reason": f"false positive {SCRIPT}"},
        actor="reviewer-rita",
        occurred_at=T0 + timedelta(days=2),
    )  # fmt: skip
    created("model@3", occurred_at=T0 + timedelta(days=3))
    provenance("model@3", ["model@2", "ghost@9"], result="failed", occurred_at=T0 + timedelta(days=3))
    decided("model@3", "quarantined", occurred_at=T0 + timedelta(days=3))
    read("model@3", "ci", "evaluation", occurred_at=T0 + timedelta(days=4))
    read("model@3", "ci", "evaluation", occurred_at=T0 + timedelta(days=5))
    read("model@3", "bob", "serving", occurred_at=T0 + timedelta(days=6))
    read("model@2", "not-this-one", "x")


def test_lineage_walks_the_upstream_chain_with_decisions_and_readers(chain):
    found = artifact_lineage(AuditEvent.objects.all(), "model@3")
    assert {name: node.depth for name, node in found.nodes.items()} == {
        "model@3": 0, "model@2": 1, "ghost@9": 1, "base@1": 2, "dataset@1": 2,
    }  # fmt: skip
    assert ("model@3", "ghost@9", "failed") in found.edges and ("model@2", "base@1", "verified") in found.edges
    assert found.nodes["model@2"].decision == "approved" and found.nodes["model@2"].overturned
    assert found.nodes["model@3"].decision == "quarantined"
    assert not found.nodes["ghost@9"].known
    assert [(r.reader, r.purpose, r.count) for r in found.readers] == [("ci", "evaluation", 2), ("bob", "serving", 1)]


def test_lineage_page_draws_the_chain_as_svg_and_escapes(auditor_client, chain):
    response = auditor_client.get(LINEAGE, {"artifact": "model@3"})
    page = response.content.decode()
    assert response.status_code == 200
    svg = page[page.index('<svg class="obs-lineage-svg"') : page.index("</svg>", page.index("obs-lineage-svg"))]
    for name in ("model@3", "model@2", "ghost@9", "base@1", "dataset@1"):
        assert f'data-artifact="{name}"' in svg
    assert svg.count('class="obs-edge') == 4 and "obs-edge-failed" in svg
    assert "reviewer-rita" in page and "overturned" in page and "serving" in page
    assert SCRIPT not in page and "&lt;script&gt;" in page
    assert '<script src="http' not in page and "cdn" not in page.lower()  # nothing fetched from elsewhere


def test_lineage_of_a_cycle_and_of_hostile_refs_terminates(db, auditor_client):
    provenance("a@1", ["b@1", 7, None, "", "x" * 300, {"k": 1}])
    provenance("b@1", ["a@1"])
    found = artifact_lineage(AuditEvent.objects.all(), "a@1")
    assert set(found.nodes) == {"a@1", "b@1"}
    assert ("b@1", "a@1", "verified") in found.edges
    for value in ("", "nothing@0", "x" * 9000, "a\x00", "<b>"):
        assert auditor_client.get(LINEAGE, {"artifact": value}).status_code == 200


# -- the chart ---------------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_chart_counts_events_per_day_by_type_for_the_current_filter(auditor_client):
    for day, n in ((1, 2), (3, 5)):
        for _ in range(n):
            read("m@1", "r", "p", occurred_at=datetime(2025, 3, day, 12, tzinfo=UTC))
    created("m@1", occurred_at=datetime(2025, 3, 3, 13, tzinfo=UTC))
    # Without a drill-down: the 31 days up to the newest event of the selection (here of the type filter).
    page = auditor_client.get(CHANGELIST, {"event_type": "ARTIFACT_ACCESSED"}).content.decode()
    chart = page[page.index('id="obs-chart"') : page.index("</figure>", page.index('id="obs-chart"'))]
    assert "Events per day, 2025-02-01 to 2025-03-03" in chart
    assert "2025-03-03: 5 events; ARTIFACT_ACCESSED 5" in chart and "ARTIFACT_CREATED" not in chart
    assert "7 in the selection" in chart
    month = auditor_client.get(CHANGELIST, {"occurred_at__year": 2025, "occurred_at__month": 3}).content.decode()
    chart = month[month.index('id="obs-chart"') : month.index("</figure>", month.index('id="obs-chart"'))]
    assert "2025-03-01 to 2025-03-31" in chart and "8 in the selection" in chart
    assert "2025-03-03: 6 events; ARTIFACT_ACCESSED 5, ARTIFACT_CREATED 1" in chart
    assert "2025-03-01: 2 events; ARTIFACT_ACCESSED 2" in chart
    assert "occurred_at__day=3" in chart  # a bar links to its day


@pytest.mark.django_db
def test_chart_of_a_small_selection_reaches_back_to_its_first_day_and_says_what_it_leaves_out(auditor_client):
    def chart_of(**params) -> str:
        page = auditor_client.get(CHANGELIST, params).content.decode()
        return page[page.index('id="obs-chart"') : page.index("</figure>", page.index('id="obs-chart"'))]

    read("m@1", "r", "p", correlation_id="c", occurred_at=datetime(2025, 1, 10, tzinfo=UTC))
    read("m@1", "r", "p", correlation_id="c", occurred_at=datetime(2025, 3, 3, tzinfo=UTC))
    chart = chart_of(correlation_id="c")
    assert "Events per day, 2025-01-10 to 2025-03-03" in chart and "2 in the selection" in chart
    read("m@1", "r", "p", correlation_id="c", occurred_at=datetime(2023, 6, 1, tzinfo=UTC))  # two years earlier
    chart = chart_of(correlation_id="c")
    assert "Events per day, 2024-03-03 to 2025-03-03" in chart  # a year back, at most
    assert "2 of the selection&#x27;s 3 (the others are on other days: drill down)" in chart


# -- integrity at a glance ---------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_integrity_glance_in_words_on_the_index_and_the_changelist(auditor_client):
    now = datetime.now(UTC)
    assert trail_integrity().verification.startswith("Never verified")
    first = read("m@1", "r", "p")
    second = read("m@1", "r", "p")
    AuditSeal.objects.create(created_at=now - timedelta(hours=3), first_id=first.pk, last_id=first.pk,
                             event_count=1, leaves=b"", digest="d")  # fmt: skip
    AuditVerification.objects.create(started_at=now - timedelta(hours=2), finished_at=now - timedelta(hours=2),
                                     events_checked=1, seals_checked=1, problems=2)  # fmt: skip
    state = trail_integrity()
    assert state.state == "problems" and state.unsealed == 1
    assert "2 problems found" in state.verification and "2 hours ago" in state.verification
    assert state.tail.startswith("1 event not sealed yet since the last seal 3 hours ago")
    for url in ("/admin/", CHANGELIST):
        page = auditor_client.get(url).content.decode()
        assert "Audit trail integrity: PROBLEMS FOUND" in page and "2 problems found" in page, url
        assert "1 event not sealed yet" in page
    del second


@pytest.mark.django_db
def test_integrity_glance_is_hidden_from_staff_who_may_not_view_events(client, django_user_model):
    user = django_user_model.objects.create_user("staff", is_staff=True)
    client.force_login(user)
    assert "Audit trail integrity" not in client.get("/admin/").content.decode()


# -- export of the ticked rows -----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_export_of_the_selection_exports_the_ticked_rows_not_the_filter(auditor_client):
    events = [read("m@1", "r", "p", correlation_id="c") for _ in range(4)]
    picked = [events[0].pk, events[2].pk]
    query = urlencode([("selection", "1"), *(("id", pk) for pk in picked), ("correlation_id", "c")])
    response = auditor_client.get(f"{CHANGELIST}export/jsonl/?{query}")
    lines = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    assert sorted(line["id"] for line in lines) == picked
    (exported,) = AuditEvent.objects.filter(event_type="AUDIT_EXPORTED")
    assert exported.actor == "audra" and exported.source == "admin"
    assert exported.payload["count"] == 2 and exported.payload["format"] == "jsonl"
    assert exported.payload["filter"] == {"selected_ids": [str(pk) for pk in picked]}


@pytest.mark.django_db
def test_export_of_the_filter_is_recorded_too(auditor_client):
    read("m@1", "r", "p", correlation_id="c")
    read("m@1", "r", "p", correlation_id="d")
    response = auditor_client.get(f"{CHANGELIST}export/csv/", {"correlation_id": "c"})
    assert len(b"".join(response.streaming_content).decode().splitlines()) == 2
    (exported,) = AuditEvent.objects.filter(event_type="AUDIT_EXPORTED")
    assert exported.payload["filter"] == {"correlation_id": "c"} and exported.payload["count"] == 1


@pytest.mark.django_db
def test_export_of_a_search_and_a_date_drill_down_records_who_which_filter_and_how_many(auditor_client):
    for day in (5, 5, 6):
        read("m@1", "r", "p", correlation_id="c", occurred_at=T0.replace(day=day))
    read("m@2", "r", "p", correlation_id="c", occurred_at=T0)  # another subject: not in the search
    query = {"q": "subject:m@1", "occurred_at__year": "2025", "occurred_at__month": "5", "occurred_at__day": "5"}
    response = auditor_client.get(f"{CHANGELIST}export/jsonl/", {**query, "p": "2"}, HTTP_X_CORRELATION_ID="dl-1")
    assert [json.loads(line)["subject"] for line in b"".join(response.streaming_content).splitlines()] == ["m@1"] * 2
    (exported,) = AuditEvent.objects.filter(event_type="AUDIT_EXPORTED")
    assert exported.payload == {
        "exported_by": "audra",
        "filter": query,  # the page number is not part of what was exported
        "count": 2,
        "format": "jsonl",
        "complete": True,
    }
    assert exported.actor == "audra" and exported.subject == "audra" and exported.source == "admin"
    assert exported.correlation_id == "dl-1" and exported.request_id


@pytest.mark.django_db
def test_an_admin_download_stopped_early_is_recorded_as_incomplete(django_user_model, rf, settings):
    settings.OBSERVABILITY = {**settings.OBSERVABILITY, "ADMIN_EXPORT_CHUNK_SIZE": 2}
    for _ in range(6):
        read("m@1", "r", "p")
    request = rf.get(f"{CHANGELIST}export/csv/", {"event_type": "ARTIFACT_ACCESSED"})
    request.user = django_user_model.objects.create_user("audra")
    ensure_auditor_group(users=["audra"])
    response = admin.site._registry[AuditEvent].export_view(request, "csv")
    lines = iter(response.streaming_content)
    assert next(lines) and next(lines) and next(lines)  # the header and two events
    # The browser went away: the server closes the response (the test keeps its connection, as Django's client does).
    request_finished.disconnect(close_old_connections)
    try:
        response.close()
    finally:
        request_finished.connect(close_old_connections)
    (exported,) = AuditEvent.objects.filter(event_type="AUDIT_EXPORTED")
    assert exported.payload["complete"] is False and exported.payload["count"] == 2
    assert exported.payload["filter"] == {"event_type": "ARTIFACT_ACCESSED"} and exported.actor == "audra"


@pytest.mark.parametrize(
    "query",
    ["selection=1", "selection=1&id=abc", "selection=1&id=-3", "selection=1&id=" + "9" * 30,
     "selection=1&" + "&".join(f"id={n}" for n in range(1, 1100))],
)  # fmt: skip
@pytest.mark.django_db
def test_bad_selections_are_refused_and_record_nothing(auditor_client, query):
    response = auditor_client.get(f"{CHANGELIST}export/csv/?{query}")
    assert response.status_code == 400
    assert not AuditEvent.objects.filter(event_type="AUDIT_EXPORTED").exists()


# -- read-only ---------------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_new_pages_refuse_posts_and_offer_no_change(auditor_client, client, chain):
    for url in (TIMELINE, LINEAGE, f"{CHANGELIST}export/csv/"):
        assert auditor_client.post(url, {"correlation_id": "x"}).status_code in (403, 405), url
    for url, params in ((TIMELINE, {"correlation_id": ""}), (LINEAGE, {"artifact": "model@3"}), (CHANGELIST, {})):
        page = auditor_client.get(url, params).content.decode()
        main = page[page.index('id="content-main"') :]
        assert 'method="post"' not in main.replace('id="changelist-form" method="post"', ""), url
        assert "addlink" not in main and "deletelink" not in main and 'name="_save"' not in main
    client.logout()
    assert client.get(TIMELINE).status_code == 302  # to the login page


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        (None, True),
        ("http://jaeger:16686/trace/{trace_id}", True),
        ("https://t.example/ui?trace={trace_id}", True),
        ("ftp://x/{trace_id}", False),
        ("http://x/trace/", False),
        ("http://x/{trace_id}/{span_id}", False),
        ("javascript:alert(1)//{trace_id}", False),
        ('http://x/{trace_id}" onmouseover="x', False),
        (42, False),
    ],
)
def test_trace_url_setting_is_checked(settings, value, ok):
    settings.OBSERVABILITY = {**settings.OBSERVABILITY, "ADMIN_TRACE_URL": value}
    ids = [m.id for m in check_admin_settings() if isinstance(m, Error)]
    assert (ids == []) is ok and (ok or ids == ["observability_app.E071"])
