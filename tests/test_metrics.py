"""/metrics: the contract's families, HTTP RED by route template, cardinality control, kill switch, protection,
database and audit metrics, the fast renderer against prometheus_client's own, and multi-process files."""

from __future__ import annotations

import hashlib
import json
import os
import random
import string
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta

import pytest
from django.db import DatabaseError, connection, transaction
from django.test import Client
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from observability_app import audit, bucket_metrics
from observability_app.metrics import observe_request
from observability_app.metrics.bucket import catalog
from observability_app.metrics.labels import hashed_id, method_label, route_label, status_label
from observability_app.metrics.registry import REGISTRY
from observability_app.metrics.render import TextWriter
from tests.servers import ROOT, parse, series, total

ROUTE = "api/v1/buckets/<name:bucket>/artifacts/<name:name>/<name:version>"

CONTRACT_FAMILIES = (
    "http_requests_total",
    "http_request_duration_seconds",
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_open_fds",
    "process_threads",
    "db_queries_total",
    "db_query_duration_seconds",
    "db_errors_total",
    "health_ready",
    "health_check_ok",
    "audit_events_recorded_total",
    "audit_events_purged_total",
    "audit_verification_failures_total",
    "audit_purge_last_run_timestamp_seconds",
    "audit_verification_last_run_timestamp_seconds",
    "audit_verification_last_problems",
    "observability_metrics_series_dropped_total",
    "observability_build_info",
)


def scrape(client: Client, **extra: str) -> dict:
    response = client.get("/metrics", **extra)
    assert response.status_code == 200, response.content[:300]
    return parse(response.content.decode())


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def scraped_text(client):
    def _text() -> str:
        response = client.get("/metrics")
        assert response.status_code == 200
        assert response["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert response["Cache-Control"] == "no-store"
        return response.content.decode()

    return _text


def test_every_contract_family_is_exported(client, db, scraped_text):
    client.get("/api/v1/buckets/b/artifacts/n/1")
    text = scraped_text()
    for name in CONTRACT_FAMILIES:
        kind = "histogram" if name.endswith("_seconds") and "timestamp" not in name else None
        assert f"# TYPE {name} " in text, name
        if kind:
            assert f"# TYPE {name} histogram" in text
    for entry in catalog.CATALOG:
        expected = {"counter": "counter", "histogram": "histogram", "gauge": "gauge"}[entry.kind]
        assert f"# TYPE {entry.prometheus} {expected}" in text, entry.prometheus
    samples = parse(text)
    assert total(samples, "process_threads") >= 1
    assert total(samples, "process_open_fds") > 0
    assert total(samples, "health_ready") == 1
    assert total(samples, "health_check_ok", check="database") == 1
    build = series(samples, "observability_build_info")
    assert build == [
        {
            "service": "artifact-bucket",
            "environment": "development",
            "region": "local",
            "service_version": "0.0.0",
            "node": build[0]["node"],
        }
    ]
    assert build[0]["node"]


def test_requests_are_counted_by_route_template_method_and_status(client, db):
    labels = {"method": "GET", "route": ROUTE, "status": "404"}
    before = sample("http_requests_total", **labels)
    hist_before = sample("http_request_duration_seconds_count", method="GET", route=ROUTE)
    for index in range(3):
        assert client.get(f"/api/v1/buckets/b{index}/artifacts/n/1").status_code == 404
    assert sample("http_requests_total", **labels) == before + 3
    assert sample("http_request_duration_seconds_count", method="GET", route=ROUTE) == hist_before + 3
    assert sample("http_request_duration_seconds_sum", method="GET", route=ROUTE) > 0
    # the raw paths are nowhere
    assert "b1" not in client.get("/metrics").content.decode().split("bucket=")[0]


def test_unmatched_urls_and_unknown_methods_collapse(client, db):
    before_unmatched = sample("http_requests_total", method="GET", route="<unmatched>", status="404")
    before_other = sample("http_requests_total", method="OTHER", route=ROUTE, status="405")
    for index in range(5):
        client.get(f"/no/such/page/{index}")
    for method in ("PROPFIND", "BREW", "M-SEARCH", "X" * 300):
        assert client.generic(method, "/api/v1/buckets/b/artifacts/n/1").status_code == 405
    assert sample("http_requests_total", method="GET", route="<unmatched>", status="404") == before_unmatched + 5
    assert sample("http_requests_total", method="OTHER", route=ROUTE, status="405") == before_other + 4
    text = client.get("/metrics").content.decode()
    assert "/no/such/page" not in text
    assert "PROPFIND" not in text and "BREW" not in text


def test_probes_and_scrapes_are_not_counted(client, db):
    before = sum(
        value
        for (name, _), value in parse(client.get("/metrics").content.decode()).items()
        if name == "http_requests_total"
    )
    for _ in range(3):
        client.get("/metrics")
        client.get("/health/live")
        client.get("/health/ready")
    after = sum(
        value
        for (name, _), value in parse(client.get("/metrics").content.decode()).items()
        if name == "http_requests_total"
    )
    assert after == before


def test_concurrent_observations_are_all_counted():
    import threading

    labels = {"method": "POST", "route": "threads/<int:n>", "status": "201"}
    before = sample("http_requests_total", **labels)
    before_sum = sample("http_request_duration_seconds_sum", method="POST", route="threads/<int:n>")

    def work() -> None:
        for _ in range(5000):
            observe_request("POST", "threads/<int:n>", 201, 0.5)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sample("http_requests_total", **labels) == before + 40_000
    assert sample("http_request_duration_seconds_sum", method="POST", route="threads/<int:n>") == before_sum + 20_000
    assert sample("http_request_duration_seconds_bucket", method="POST", route="threads/<int:n>", le="0.5") >= 40_000


def test_series_cap_drops_new_series_and_counts_them(settings):
    settings.OBSERVABILITY = {"METRICS_MAX_SERIES_PER_METRIC": 4}
    dropped_before = sample("observability_metrics_series_dropped_total", metric="http_requests_total")
    for index in range(30):
        observe_request("GET", f"cap-test/{index}/", 200, 0.01)
    kept = [
        index
        for index in range(30)
        if sample("http_requests_total", method="GET", route=f"cap-test/{index}/", status="200")
    ]
    assert len(kept) <= 4
    dropped = sample("observability_metrics_series_dropped_total", metric="http_requests_total") - dropped_before
    assert dropped == 30 - len(kept)
    # a kept series still counts
    observe_request("GET", f"cap-test/{kept[0]}/", 200, 0.01)
    assert sample("http_requests_total", method="GET", route=f"cap-test/{kept[0]}/", status="200") == 2


@pytest.mark.slow
def test_ten_thousand_random_requests_leave_the_series_bounded(client, db):
    rng = random.Random(20240601)
    methods = [
        "GET",
        "HEAD",
        "PUT",
        "DELETE",
        "POST",
        "PATCH",
        "OPTIONS",
        "PROPFIND",
        "TRACE",
        "FOO",
        "get",
        "M-SEARCH",
    ]
    alphabet = string.ascii_letters + string.digits
    names = set()
    body = b"x"
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    for index in range(10_000):
        bucket = rng.choice(alphabet) + "".join(rng.choices(alphabet + "._-", k=rng.randint(0, 40)))
        names.add(bucket)
        method = rng.choice(methods)
        path = f"/api/v1/buckets/{bucket}/artifacts/m/{index}"
        if method == "PUT":
            client.put(path, data=body, content_type="application/octet-stream", HTTP_X_CONTENT_DIGEST=digest)
        elif index % 50 == 0:
            client.get(f"/random/{bucket}")
        else:
            client.generic(method, path)
    text = client.get("/metrics").content.decode()
    samples = parse(text)
    bins = 64
    http_series = series(samples, "http_requests_total")
    assert {labels["method"] for labels in http_series} <= {
        "GET",
        "HEAD",
        "PUT",
        "DELETE",
        "POST",
        "PATCH",
        "OPTIONS",
        "OTHER",
    }
    # Beyond the series primed at zero (routes x status classes, at most half the cap), the traffic added few.
    from observability_app.metrics import priming

    primed = {
        (method, route, status)
        for route, methods in priming.routes()
        for method in methods
        for status in priming.PRIMED_STATUSES
    }
    added = [labels for labels in http_series if (labels["method"], labels["route"], labels["status"]) not in primed]
    assert len(added) <= 200
    assert len(http_series) - len(added) <= priming.budget()
    for entry in catalog.CATALOG:
        name = entry.prometheus + ("_count" if entry.kind == "histogram" else "")
        found = series(samples, name)
        combos = 1
        for allowed in entry.values:
            combos *= len(allowed) + 1
        for label in entry.labels[len(entry.values) :]:  # open labels: declared values + 16 others + "other"
            if label not in entry.binned:
                combos *= len(bucket_metrics.declared_values(label)) + catalog.OPEN_LABEL_VALUES + 1
        # Earlier tests that changed the standard labels (environment, ...) left their primed series exported.
        suffixes = {
            tuple(labels[key] for key in ("environment", "region", "service_version", "node")) for labels in found
        }
        assert len(found) <= bins * combos * (bins if entry.binned else 1) * len(suffixes), entry.prometheus
        ids = [labels.get("bucket") or labels["client"] for labels in found]
        assert all(value.startswith("bin-") or value == "none" for value in ids)
    assert len({labels["bucket"] for labels in series(samples, "bucket_artifact_read_total")}) <= bins
    leaked = [name for name in names if len(name) > 6 and f'"{name}"' in text]
    assert not leaked, leaked[:5]
    assert text.count("\n") < 30_000  # the catalog primed at zero in every bin (docs/metrics.md) plus the traffic


def test_kill_switch_removes_the_cost(settings, db):
    settings.OBSERVABILITY = {"METRICS_ENABLED": False}
    client = Client()
    assert client.get("/metrics").status_code == 404
    requests_before = sample("http_requests_total", method="GET", route=ROUTE, status="404")
    reads_before = sum(
        value for (name, _), value in _registry_samples().items() if name == "bucket_artifact_read_total"
    )
    queries_before = sample("db_queries_total", alias="default", vendor=connection.vendor)
    client.get("/api/v1/buckets/off/artifacts/n/1")
    assert sample("http_requests_total", method="GET", route=ROUTE, status="404") == requests_before
    assert (
        sum(value for (name, _), value in _registry_samples().items() if name == "bucket_artifact_read_total")
        == reads_before
    )
    assert sample("db_queries_total", alias="default", vendor=connection.vendor) == queries_before
    settings.OBSERVABILITY = {}
    assert Client().get("/metrics").status_code == 200


def _registry_samples() -> dict:
    return {
        (metric_sample.name, tuple(sorted(metric_sample.labels.items()))): metric_sample.value
        for family in REGISTRY.collect()
        for metric_sample in family.samples
    }


def test_disabled_from_the_start_creates_nothing():
    """A process started with metrics off never builds a metric, a DB wrapper or a receiver."""
    script = textwrap.dedent(
        """
        import json, os, sys
        import django
        django.setup()
        from django.db import connection
        from django.test import Client
        Client().get("/health/live")
        connection.ensure_connection()
        print(json.dumps({
            "families": "observability_app.metrics.families" in sys.modules,
            "prometheus": "prometheus_client" in sys.modules,
            "wrappers": len(connection.execute_wrappers),
            "metrics_status": Client().get("/metrics").status_code,
        }))
        """
    )
    env = dict(os.environ, OBSERVABILITY_METRICS_ENABLED="0", DJANGO_SETTINGS_MODULE="example_project.settings")
    env["DATABASE_URL"] = "sqlite:///:memory:"
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=True
    )
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found == {"families": False, "prometheus": False, "wrappers": 0, "metrics_status": 404}


# -- protection ---------------------------------------------------------------------------------------------------


def test_bearer_token(settings, db):
    settings.OBSERVABILITY = {"METRICS_TOKEN": "s3cret-token"}
    client = Client()
    missing = client.get("/metrics")
    assert missing.status_code == 401
    assert missing["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Basic s3cret-token").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token").status_code == 200
    assert client.get("/metrics", HTTP_AUTHORIZATION="bearer s3cret-token").status_code == 200


@given(header=st.text(max_size=300))
def test_no_hostile_authorization_header_opens_the_endpoint(header):
    from observability_app.metrics import access

    assert access.token_matches(header, "s3cret-token") == (
        header.partition(" ")[0].lower() == "bearer" and header.partition(" ")[2].strip() == "s3cret-token"
    )


def test_network_allowlist(settings, db):
    settings.OBSERVABILITY = {"METRICS_ALLOWED_NETWORKS": ["10.0.0.0/8", "127.0.0.1"]}
    client = Client()
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="10.2.3.4").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="::ffff:10.2.3.4").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="192.168.1.1").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="not an address").status_code == 403
    # a forwarded header cannot open it
    assert client.get("/metrics", REMOTE_ADDR="192.168.1.1", HTTP_X_FORWARDED_FOR="10.0.0.1").status_code == 403


def test_allowlist_and_token_are_both_required_when_both_are_set(settings, db):
    settings.OBSERVABILITY = {"METRICS_ALLOWED_NETWORKS": ["127.0.0.0/8"], "METRICS_TOKEN": "t0ken"}
    client = Client()
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 401
    assert client.get("/metrics", REMOTE_ADDR="8.8.8.8", HTTP_AUTHORIZATION="Bearer t0ken").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_AUTHORIZATION="Bearer t0ken").status_code == 200


def test_only_get_and_head(client, db):
    assert client.post("/metrics").status_code == 405
    assert client.delete("/metrics").status_code == 405
    assert client.head("/metrics").status_code == 200


def test_open_to_anonymous_under_login_required_middleware(settings, db):
    import django

    from observability_app.health import views as health_views
    from observability_app.metrics import views as metrics_views

    if django.VERSION < (5, 1):  # no LoginRequiredMiddleware: the views carry the marker it would read
        assert metrics_views.metrics.login_required is False
        assert health_views.ready.login_required is False
        return
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "django.contrib.auth.middleware.LoginRequiredMiddleware"]
    client = Client()
    assert client.get("/api/v1/buckets/b/artifacts/n/1").status_code == 302  # the rest of the site is closed
    assert client.get("/metrics").status_code == 200
    for path in ("/health/live", "/health/ready", "/api/v1/health"):
        assert client.get(path).status_code == 200, path


# -- database and audit ---------------------------------------------------------------------------------------------


def test_database_queries_errors_and_duration(db):
    vendor = connection.vendor
    queries = sample("db_queries_total", alias="default", vendor=vendor)
    errors = sample("db_errors_total", alias="default")
    timed = sample("db_query_duration_seconds_count", alias="default")
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT * FROM no_such_table_here")
    assert sample("db_queries_total", alias="default", vendor=vendor) >= queries + 2
    assert sample("db_errors_total", alias="default") == errors + 1
    assert sample("db_query_duration_seconds_count", alias="default") >= timed + 2


def test_a_callers_execute_wrapper_block_leaves_ours_in_place(db):
    seen = []

    def spy(execute, sql, params, many, context):
        seen.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(spy), connection.cursor() as cursor:
        cursor.execute("SELECT 2")
    queries = sample("db_queries_total", alias="default", vendor=connection.vendor)
    with connection.cursor() as cursor:
        cursor.execute("SELECT 3")
    assert seen == ["SELECT 2"]
    assert sample("db_queries_total", alias="default", vendor=connection.vendor) == queries + 1


def test_audit_events_count_when_their_transaction_commits(db, django_capture_on_commit_callbacks):
    payload = {"artifact_id": "a/b@1", "version": "1", "reader": "ci", "purpose": "test"}
    before = sample("audit_events_recorded_total", event_type="ARTIFACT_ACCESSED")
    with django_capture_on_commit_callbacks(execute=True):
        audit.record("ARTIFACT_ACCESSED", payload)
        audit.record_many([("ARTIFACT_ACCESSED", payload)] * 3)
    assert sample("audit_events_recorded_total", event_type="ARTIFACT_ACCESSED") == before + 4
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError), transaction.atomic():
        audit.record("ARTIFACT_ACCESSED", payload)
        raise RuntimeError("business change rolled back")
    assert sample("audit_events_recorded_total", event_type="ARTIFACT_ACCESSED") == before + 4


def test_purges_and_verification_are_read_from_the_database(client, db):
    from observability_app.metrics import audit as audit_metrics

    now = datetime.now(UTC)
    audit.record(
        "AUDIT_PURGED",
        {"counts": {"ARTIFACT_ACCESSED": 5, "AUTH_LOGIN_FAILED": 2}, "cutoffs": {}, "run_id": "r1"},
        occurred_at=now - timedelta(hours=2),
    )
    audit.record(
        "AUDIT_PURGED",
        {
            "counts": {"ARTIFACT_ACCESSED": 3, "bogus": "many", "negative": -4, "x" * 100: 1, "flag": True},
            "cutoffs": {},
            "run_id": "r2",
        },
        occurred_at=now,
    )
    samples = scrape(client)
    purged = {
        labels["event_type"]: samples[("audit_events_purged_total", tuple(sorted(labels.items())))]
        for labels in series(samples, "audit_events_purged_total")
    }
    assert purged["ARTIFACT_ACCESSED"] >= 8
    assert purged["AUTH_LOGIN_FAILED"] >= 2
    assert not {"bogus", "negative", "flag", "x" * 100} & set(purged)
    last = total(samples, "audit_purge_last_run_timestamp_seconds")
    from observability_app.audit import retention, verification

    expected = retention.last_purge() or now
    assert last == pytest.approx(expected.timestamp(), abs=1e-3)
    result = verification.last_verification()
    if result is None:
        assert not series(samples, "audit_verification_last_run_timestamp_seconds")
    else:
        assert total(samples, "audit_verification_last_run_timestamp_seconds") == pytest.approx(result[0].timestamp())
        assert total(samples, "audit_verification_last_problems") == result[1]
    failures = sample("audit_verification_failures_total")
    audit_metrics.count_verification(0)
    audit_metrics.count_verification(3)
    audit_metrics.count_verification("3")  # type: ignore[arg-type]
    assert sample("audit_verification_failures_total") == failures + 1


# -- labels -------------------------------------------------------------------------------------------------------


def test_label_normalisation():
    assert method_label("GET") == "GET"
    assert method_label("get") == "OTHER"
    assert method_label(None) == "OTHER"
    assert route_label("") == "<unmatched>"
    assert route_label(None) == "<unmatched>"
    assert route_label("a" * 500) == "a" * 200
    assert status_label(200) == "200"
    assert status_label(700) == status_label(-1) == status_label(True) == status_label("200") == "other"


@given(value=st.one_of(st.text(max_size=5000), st.integers(), st.binary(max_size=50)))
def test_ids_always_land_in_a_bounded_bin(value):
    label = hashed_id(value, 64)
    assert label == "none" or (label.startswith("bin-") and 0 <= int(label[4:]) < 64)
    assert hashed_id(value, 64) == label


def test_bins_are_the_same_in_every_process():
    ids = ["alpha", "beta", "models-prod", "ünïcode", "x" * 2000]
    script = (
        "import json,sys; from observability_app.metrics.labels import _bin;"
        " print(json.dumps([_bin(i[:1024], 64) for i in json.loads(sys.argv[1])]))"
    )
    runs = []
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed, PYTHONPATH=str(ROOT))
        output = subprocess.run(
            [sys.executable, "-c", script, json.dumps(ids)], env=env, capture_output=True, text=True, check=True
        )
        runs.append(json.loads(output.stdout))
    assert runs[0] == runs[1] == [hashed_id(value, 64) for value in ids]


# -- the renderer ---------------------------------------------------------------------------------------------------


label_values = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)


@given(
    values=st.lists(st.tuples(label_values, label_values), min_size=1, max_size=8, unique=True),
    amount=st.floats(0, 1e12),
)
def test_fast_renderer_matches_prometheus_client(values, amount):
    registry = CollectorRegistry()
    counter = Counter("render_test_total", "Help with \\ backslash\nand newline.", ["a", "b"], registry=registry)
    histogram = Histogram("render_test_seconds", "h", ["a"], buckets=(0.1, 1, 10), registry=registry)
    gauge = Gauge("render_test_gauge", "g", registry=registry)
    for first, second in values:
        counter.labels(first, second).inc(amount)
        histogram.labels(first).observe(amount)
    gauge.set(-amount)
    writer = TextWriter()
    for metric in (counter, histogram, gauge):
        writer.wrapper(metric)
    ours = parse(writer.encode().decode())
    theirs = {
        key: value
        for key, value in parse(generate_latest(registry).decode()).items()
        if not key[0].endswith("_created")
    }
    assert ours == theirs


def test_the_app_registry_renders_like_prometheus_client(client, db):
    client.get("/api/v1/buckets/r/artifacts/n/1")
    writer = TextWriter()
    from observability_app.metrics.registry import metrics

    for metric in metrics():
        writer.wrapper(metric)
    assert parse(writer.encode().decode()) == {
        key: value
        for key, value in parse(generate_latest(REGISTRY).decode()).items()
        if not key[0].endswith("_created")
    }


# -- multi-process files ----------------------------------------------------------------------------------------------

WRITER = """
import sys
from prometheus_client import Counter, Histogram
requests = Counter("mp_requests_total", "r", ["route"])
latency = Histogram("mp_latency_seconds", "l", ["route"], buckets=(0.1, 1.0))
for index in range(int(sys.argv[1])):
    requests.labels(f"r{index % 3}").inc()
    latency.labels(f"r{index % 3}").observe(index / 10)
print("done")
"""


def test_multiprocess_files_add_up_and_fold_when_a_worker_dies(tmp_path):
    from prometheus_client.multiprocess import MultiProcessCollector

    from observability_app.metrics import multiprocess

    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(tmp_path), PYTHONPATH=str(ROOT))
    for count in (10, 20, 30):
        subprocess.run([sys.executable, "-c", WRITER, str(count)], env=env, check=True, capture_output=True)
    pids = sorted({name.split("_")[-1][:-3] for name in os.listdir(tmp_path) if name.endswith(".db")})
    assert len(pids) == 3

    def ours() -> dict:
        writer = TextWriter()
        multiprocess.MultiProcessReader(str(tmp_path)).write(writer)
        return parse(writer.encode().decode())

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(tmp_path))
    stock = parse(generate_latest(registry).decode())
    assert ours() == stock
    assert total(stock, "mp_requests_total") == 60

    multiprocess.mark_process_dead(int(pids[0]), str(tmp_path))
    assert not (tmp_path / f"counter_{pids[0]}.db").exists()
    assert (tmp_path / "counter_archive.db").exists()
    assert ours() == stock
    for pid in pids[1:]:
        multiprocess.mark_process_dead(int(pid), str(tmp_path))
    assert sorted(name for name in os.listdir(tmp_path) if name.endswith(".db")) == [
        "counter_archive.db",
        "histogram_archive.db",
    ]
    assert ours() == stock
    # a reader keeps its parsed offsets across scrapes and sees values that changed in place
    reader = multiprocess.MultiProcessReader(str(tmp_path))
    first = TextWriter()
    reader.write(first)
    subprocess.run([sys.executable, "-c", WRITER, "3"], env=env, check=True, capture_output=True)
    second = TextWriter()
    reader.write(second)
    assert total(parse(second.encode().decode()), "mp_requests_total") == 63


def _manage_check(tmp_path, multiproc_dir: str) -> subprocess.CompletedProcess:
    from tests.servers import server_env

    env = server_env(f"sqlite:///{tmp_path}/db.sqlite3", tmp_path, PROMETHEUS_MULTIPROC_DIR=multiproc_dir)
    return subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_a_missing_multiprocess_directory_is_created_before_the_first_metric(tmp_path):
    """``manage.py migrate`` with the variable exported for gunicorn, before gunicorn made the directory."""
    directory = tmp_path / "not" / "yet" / "there"
    result = _manage_check(tmp_path, str(directory))
    assert result.returncode == 0, result.stderr
    assert directory.is_dir() and any(name.endswith(".db") for name in os.listdir(directory))


def test_a_multiprocess_directory_that_cannot_be_made_stops_start_up_with_its_name(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = _manage_check(tmp_path, str(blocker / "metrics"))
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("django.core.exceptions.ImproperlyConfigured: PROMETHEUS_MULTIPROC_DIR=")
    assert f"{str(blocker / 'metrics')!r} does not exist and cannot be created (Not a directory)" in last_line
