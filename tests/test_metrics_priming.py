"""observability_app.metrics.priming: the series rules and panels read exist at zero before their first event."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import resolve

from observability_app.metrics import priming
from observability_app.metrics.bucket import catalog
from observability_app.metrics.labels import hashed_id
from tests.servers import parse, series, total

API = "/api/v1/buckets/b/artifacts/n/1"


def scrape(client: Client) -> dict:
    response = client.get("/metrics")
    assert response.status_code == 200
    return parse(response.content.decode())


def test_every_route_the_middleware_records_is_primed_with_its_label():
    primed = dict(priming.routes())
    for path in (API, f"{API}/scan", f"{API}/overturn", f"{API}/provenance", "/api/v1/health", "/admin/auth/user/"):
        assert resolve(path).route in primed, path
    assert "<unmatched>" in primed
    assert not any(route.startswith(("metrics", "health/")) for route in primed)  # EXCLUDED_PATHS
    assert primed["admin/auth/user/"] == priming.PRIMED_ADMIN_METHODS
    assert primed[resolve(API).route] == priming.PRIMED_METHODS


def test_a_scrape_before_any_request_shows_every_status_class_at_zero(client, db):
    samples = scrape(client)
    route = resolve(API).route
    for method in priming.PRIMED_METHODS:
        for status in priming.PRIMED_STATUSES:
            key = ("http_requests_total", (("method", method), ("route", route), ("status", status)))
            assert key in samples, (method, status)
        assert ("http_request_duration_seconds_count", (("method", method), ("route", route))) in samples


def test_every_bin_of_every_enumerated_catalog_counter_exists_from_start_up(client, db):
    samples = scrape(client)
    bins = set(priming.bins())
    assert hashed_id("any-bucket") in bins and len(bins) == 64
    for entry in catalog.CATALOG:
        if entry.kind == "gauge":
            continue
        name = entry.prometheus if entry.kind == "counter" else entry.prometheus + "_count"
        found = series(samples, name)
        combos = priming.combinations(entry)
        assert combos, entry.dotted  # the example declares its open labels: every catalog metric is primed
        if not entry.per_bucket:
            seen = {tuple(labels[label] for label in entry.labels) for labels in found}
            assert set(combos) <= seen, entry.prometheus
            continue
        seen = {(labels["bucket"], *(labels[label] for label in entry.labels)) for labels in found}
        for bin_ in bins:
            for combo in combos:
                assert (bin_, *combo) in seen, (entry.prometheus, bin_, combo)


def test_the_first_event_counts_from_zero_on_a_primed_series(client, db):
    before = total(scrape(client), "bucket_version_conflict_total", bucket=hashed_id("first"))
    body = b"x"
    import hashlib

    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    path = "/api/v1/buckets/first/artifacts/n/1"
    assert client.put(path, body, content_type="application/octet-stream", HTTP_X_CONTENT_DIGEST=digest).status_code
    client.put(path, body, content_type="application/octet-stream", HTTP_X_CONTENT_DIGEST=digest)
    assert total(scrape(client), "bucket_version_conflict_total", bucket=hashed_id("first")) == before + 1


@pytest.mark.parametrize("cap", [4, 60])
def test_priming_keeps_half_of_the_series_cap_for_real_traffic(settings, cap):
    from observability_app.metrics import families, observe_request
    from observability_app.metrics.bucket import families as bucket_families

    settings.OBSERVABILITY = {"METRICS_MAX_SERIES_PER_METRIC": cap}
    observe_request("GET", "priming-cap/", 200, 0.01)  # the first request primes (within the budget)
    for family in (
        families.HTTP_REQUESTS,
        families.HTTP_DURATION,
        *bucket_families.CATALOG.values(),
    ):
        assert family.series() <= cap // 2 + 1, family.name
    for index in range(cap):
        observe_request("GET", f"priming-cap/{index}/", 200, 0.01)
    assert families.HTTP_REQUESTS.series() == cap  # real traffic filled the rest, not more


def test_a_settings_change_primes_again_with_the_new_bins(settings, client, db):
    settings.OBSERVABILITY = {"METRICS_ID_BUCKETS": 16}  # two digits still: the other tests' bins stay valid
    assert priming.bins() == [f"bin-{index:02d}" for index in range(16)]
    assert hashed_id("some-bucket") in priming.bins()
    samples = scrape(client)
    bins = {labels["bucket"] for labels in series(samples, "bucket_version_conflict_total")}
    assert {f"bin-{index:02d}" for index in range(16)} <= bins


def test_in_flight_counts_the_request_being_handled_and_size_is_observed(client, db):
    from observability_app.metrics.registry import REGISTRY

    route = resolve(API).route
    sizes = REGISTRY.get_sample_value("http_response_size_bytes_count", {"method": "GET", "route": route}) or 0.0
    idle = REGISTRY.get_sample_value("http_requests_in_flight")  # between requests (other tests may leave some)
    response = client.get("/metrics")
    assert f"\nhttp_requests_in_flight {idle + 1}\n".encode() in response.content  # the scrape itself is in flight
    assert REGISTRY.get_sample_value("http_requests_in_flight") == idle  # and no longer once it closed
    labels = {"method": "GET", "route": route}
    total_before = REGISTRY.get_sample_value("http_response_size_bytes_sum", labels) or 0.0
    answer = client.get(API)
    assert answer.status_code == 404
    assert REGISTRY.get_sample_value("http_response_size_bytes_count", labels) == sizes + 1
    assert REGISTRY.get_sample_value("http_response_size_bytes_sum", labels) == total_before + len(answer.content)
    small = REGISTRY.get_sample_value("http_response_size_bytes_bucket", {**labels, "le": "1000.0"})
    assert small >= 1 and len(answer.content) <= 1000
