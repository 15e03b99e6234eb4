"""Exemplars on the latency histogram with tracing on, served as OpenMetrics when the scraper asks for it."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import resolve
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from observability_app import tracing
from observability_app.metrics import exemplars

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PATH = "/api/v1/buckets/ex/artifacts/model/1"
OPENMETRICS = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"


@pytest.fixture
def traced(settings):
    settings.OBSERVABILITY = {**settings.OBSERVABILITY, "TRACING_ENABLED": True, "TRACE_EXPORTER": "none"}
    tracing.install(tracing.resolve())
    exemplars.reset()
    yield
    tracing.shutdown()
    exemplars.reset()


def test_a_traced_request_is_the_exemplar_of_its_bucket_in_openmetrics(traced, db):
    client = Client()
    assert client.get(PATH, HTTP_TRACEPARENT=f"00-{TRACE_ID}-b7ad6b7169203331-01").status_code == 404
    response = client.get("/metrics", HTTP_ACCEPT=OPENMETRICS)
    assert response["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    text = response.content.decode()
    assert text.endswith("# EOF\n")
    route = resolve(PATH).route
    found = []
    for family in text_string_to_metric_families(text):  # the strict OpenMetrics parser accepts the whole page
        if family.name == "http_request_duration_seconds":
            found += [s for s in family.samples if s.exemplar and s.labels.get("route") == route]
    assert [sample.exemplar.labels for sample in found] == [{"trace_id": TRACE_ID}]
    sample = found[0]
    assert sample.exemplar.value <= float(sample.labels["le"])  # the exemplar lies in its bucket
    assert sample.labels["method"] == "GET"


def test_the_text_format_without_tracing_or_when_the_scraper_does_not_ask(db, settings):
    client = Client()
    assert client.get(PATH).status_code == 404
    response = client.get("/metrics", HTTP_ACCEPT=OPENMETRICS)  # tracing off: nothing OpenMetrics would add
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "# EOF" not in response.content.decode()


def test_no_exemplar_without_a_trace_and_text_when_not_asked(traced, db):
    client = Client()
    assert client.get(PATH).status_code == 404  # a trace is started: its id is the exemplar
    assert client.get("/metrics")["Content-Type"].startswith("text/plain; version=0.0.4")
    exemplars.reset()
    exemplars.offer("GET", "x", 0, 0.1)  # outside a request: no trace id, nothing kept
    assert exemplars.collected() == {}
