"""Every metric name the operations pack uses (Prometheus rules and Grafana dashboards) is one the app exports.

(a) against the contract: the metric catalog of BRIEF.md / SPEC section 5, encoded below, plus the recording rules
    defined in docs/prometheus/slo.yml and Prometheus' own ``up``;
(b) against reality: the example project's live /metrics after one PUT, GET and scan of an artifact (needs the
    metrics exporter, /metrics, of issue 4).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
RULE_FILES = tuple(sorted((ROOT / "docs/prometheus").glob("*.yml")))  # alerts.yml, slo.yml, workers.yml, ...
DASHBOARDS = tuple(
    ROOT / "docs/grafana" / name for name in ("executive.json", "operational.json", "security-compliance.json")
)

#: The contract: metric families the app exports, by type. A counter ``x_total`` is exposed as ``x_total``; a
#: histogram ``x`` as ``x_bucket``, ``x_sum`` and ``x_count``; a gauge as itself.
CATALOG: dict[str, str] = {
    "http_requests_total": "counter",
    "http_request_duration_seconds": "histogram",
    "process_cpu_seconds_total": "counter",
    "process_resident_memory_bytes": "gauge",
    "process_open_fds": "gauge",
    "process_threads": "gauge",
    "db_queries_total": "counter",
    "db_query_duration_seconds": "histogram",
    "db_errors_total": "counter",
    "health_ready": "gauge",
    "health_check_ok": "gauge",
    "audit_events_recorded_total": "counter",
    "audit_events_purged_total": "counter",
    "audit_verification_failures_total": "counter",
    "audit_purge_last_run_timestamp_seconds": "gauge",
    "audit_verification_last_run_timestamp_seconds": "gauge",
    "audit_verification_last_problems": "gauge",
    "bucket_artifact_write_total": "counter",
    "bucket_artifact_write_duration_seconds": "histogram",
    "bucket_artifact_write_size_bytes": "histogram",
    "bucket_artifact_read_total": "counter",
    "bucket_artifact_read_duration_seconds": "histogram",
    "bucket_artifact_read_size_bytes": "histogram",
    "bucket_integrity_digest_mismatch_total": "counter",
    "bucket_integrity_verify_total": "counter",
    "bucket_integrity_verify_duration_seconds": "histogram",
    "bucket_version_conflict_total": "counter",
    "bucket_version_orphan_total": "counter",
    "bucket_safety_scan_total": "counter",
    "bucket_safety_scan_duration_seconds": "histogram",
    "bucket_safety_rejection_total": "counter",
    "bucket_safety_false_positive_total": "counter",
    "bucket_storage_used_bytes": "gauge",
    "bucket_storage_capacity_bytes": "gauge",
    "bucket_storage_objects": "gauge",
    "bucket_storage_backlog": "gauge",
    "bucket_queue_delay_seconds": "histogram",
    "observability_metrics_series_dropped_total": "counter",
    "observability_build_info": "gauge",
    # Issue 13: the rest of the design's catalog.
    "http_requests_in_flight": "gauge",
    "http_response_size_bytes": "histogram",
    "db_slow_queries_total": "counter",
    "db_rollbacks_total": "counter",
    "db_connections_opened_total": "counter",
    "db_connections_in_use": "gauge",
    "bucket_metadata_read_total": "counter",
    "bucket_metadata_read_duration_seconds": "histogram",
    "bucket_provenance_verify_total": "counter",
    "bucket_provenance_verify_duration_seconds": "histogram",
    "bucket_client_writes_total": "counter",
    # Job metrics (observability_app.metrics.jobs), declared wherever tasks can be published or run.
    "jobs_enqueued_total": "counter",
    "jobs_started_total": "counter",
    "jobs_active": "gauge",
    "jobs_succeeded_total": "counter",
    "jobs_failed_total": "counter",
    "jobs_retried_total": "counter",
    "jobs_dead_lettered_total": "counter",
    "jobs_duration_seconds": "histogram",
    "jobs_queue_wait_seconds": "histogram",
    "jobs_worker_heartbeat_timestamp_seconds": "gauge",
}
#: Scrape-time families of the worker's own port only (read from the broker there; tests/test_integrations_celery.py
#: checks them against a live worker).
WORKER_CATALOG: dict[str, str] = {"jobs_queue_backlog": "gauge", "jobs_queue_oldest_age_seconds": "gauge"}
#: Series Prometheus writes itself for every target (not on /metrics).
PROMETHEUS_SYNTHETIC = {"up"}

PROMQL_WORDS = {
    # aggregation and binary operators, modifiers
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values", "group",
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool", "atan2",
    "inf", "nan",
}  # fmt: skip


def exposed_names(family: str, kind: str) -> set[str]:
    """The sample names a family of the catalog appears as on /metrics."""
    if kind == "histogram":
        return {f"{family}_bucket", f"{family}_sum", f"{family}_count"}
    return {family}


CONTRACT_SAMPLES: dict[str, str] = {
    sample: family for family, kind in CATALOG.items() for sample in exposed_names(family, kind)
}


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (Grafana variables allowed).

    Strings, label matchers, grouping clauses, range/offset durations and Grafana variables are removed first;
    what remains and is not a function call, a keyword or a number is a metric name. ``{__name__="x"}`` selectors
    are read from the matcher.
    """
    label_values = re.fullmatch(r"\s*label_values\(\s*([A-Za-z_:][\w:]*)\s*,\s*\w+\s*\)\s*", expr)
    if label_values:  # Grafana's variable query: label_values(metric, label)
        return {label_values.group(1)}
    names = set(re.findall(r'__name__\s*=~?\s*"([A-Za-z_:][\w:]*)"', expr))
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    text = re.sub(r"\{[^{}]*\}", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", " ", text)
    text = re.sub(r"\[[^\[\]]*\]", " ", text)
    text = re.sub(r"\$\{[^}]*\}|\$\w+", " ", text)
    text = re.sub(r"\boffset\s+-?[\dsmhdwy]+", " ", text)
    for match in re.finditer(r"(?<![\w.:])([A-Za-z_:][\w:]*)(\s*\()?", text):
        word, call = match.group(1), match.group(2)
        if call or word.lower() in PROMQL_WORDS:
            continue
        names.add(word)
    return names


def recording_rules() -> set[str]:
    """Recording rules of every rule file (slo.yml's SLO ratios, operations.yml's trend baselines)."""
    found = set()
    for path in RULE_FILES:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        found |= {rule["record"] for group in document["groups"] for rule in group["rules"] if "record" in rule}
    return found


def rule_expressions() -> list[tuple[str, str]]:
    found = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            for rule in group["rules"]:
                found.append((f"{path.name}:{rule.get('alert') or rule.get('record')}", rule["expr"]))
    return found


def dashboard_expressions() -> list[tuple[str, str]]:
    found = []
    for path in DASHBOARDS:
        document = json.loads(path.read_text(encoding="utf-8"))
        for panel in document["panels"]:
            for target in panel.get("targets", []):
                found.append((f"{path.name}:{panel['title']}", target["expr"]))
        for variable in document["templating"]["list"]:
            query = variable.get("query")
            if variable["type"] == "query":
                found.append((f"{path.name}:${variable['name']}", query["query"] if isinstance(query, dict) else query))
    return found


def used_names() -> dict[str, set[str]]:
    """Metric name -> where it is used."""
    used: dict[str, set[str]] = {}
    for where, expr in rule_expressions() + dashboard_expressions():
        for name in metric_names(expr):
            used.setdefault(name, set()).add(where)
    return used


# The extractor itself ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ('sum by (job) (rate(http_requests_total{status=~"5.."}[5m]))', {"http_requests_total"}),
        (
            'histogram_quantile(0.95, sum by (route, le) (rate(http_request_duration_seconds_bucket{job=~"$job"}'
            "[$__rate_interval])))",
            {"http_request_duration_seconds_bucket"},
        ),
        (
            "time() - max by (job) (audit_purge_last_run_timestamp_seconds) > 172800",
            {"audit_purge_last_run_timestamp_seconds"},
        ),
        ('absent(up{job="artifact-service"})', {"up"}),
        ("a:b:ratio_rate1h > (14.4 * 0.001) and on (job) c offset 5m", {"a:b:ratio_rate1h", "c"}),
        ('x{label="sum(rate(fake_metric[5m]))", other=~"a|b"} / ignoring(le) y', {"x", "y"}),
        ("1e9 * 2 + inf - NaN", set()),
        ('{__name__="z_total", job="a"}', {"z_total"}),
        ("label_values(observability_build_info, job)", {"observability_build_info"}),
        ("predict_linear(v[6h:5m], 86400 * 3)", {"v"}),
        ("", set()),
    ],
)
def test_metric_names_extracts_every_name_and_nothing_else(expr, expected):
    assert metric_names(expr) == expected


def test_metric_names_survives_hostile_text():
    hostile = '{{{ ]]] "unterminated \\" ((( $ ${ ' + "x" * 10_000
    assert isinstance(metric_names(hostile), set)


# (a) the contract -------------------------------------------------------------------------------------------------


def test_pack_uses_metrics():
    used = used_names()
    assert "http_requests_total" in used and "bucket_artifact_write_duration_seconds_bucket" in used
    assert len(used) > 30, sorted(used)


def test_every_used_name_is_in_the_contract_or_a_recording_rule():
    allowed = set(CONTRACT_SAMPLES) | recording_rules() | PROMETHEUS_SYNTHETIC | set(WORKER_CATALOG)
    unknown = {name: sorted(where) for name, where in used_names().items() if name not in allowed}
    assert not unknown, f"metric names outside the BRIEF.md catalog and slo.yml recording rules: {unknown}"


def test_every_recording_rule_used_is_defined_in_a_rule_file():
    used = {name for name in used_names() if ":" in name}
    assert used <= recording_rules(), sorted(used - recording_rules())


def test_dashboards_have_a_prometheus_datasource_variable_used_by_every_panel():
    for path in DASHBOARDS:
        document = json.loads(path.read_text(encoding="utf-8"))
        variables = {v["name"]: v for v in document["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
        for panel in document["panels"]:
            if panel["type"] == "row":
                continue
            assert panel["datasource"]["uid"] == "${datasource}", f"{path.name}: {panel['title']}"
            assert panel["targets"], f"{path.name}: {panel['title']} has no query"


def test_dashboard_expressions_are_valid_promql(tmp_path):
    """promtool parses every dashboard query once Grafana's variables are replaced."""
    import shutil
    import subprocess

    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    if not Path(promtool).exists():
        pytest.skip("promtool is not installed (scripts/install-system-deps.sh); the YAML checks above still ran")
    rules = []
    for index, (_where, expr) in enumerate(dashboard_expressions()):
        if expr.lstrip().startswith("label_values("):
            continue
        concrete = expr.replace("$__rate_interval", "5m").replace("$job", ".*")
        rules.append({"record": f"dashboard:expr:{index}", "expr": concrete})
    path = tmp_path / "dashboards.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}), encoding="utf-8")
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


# (b) the live /metrics of the example project (needs issue 4's exporter) -----------------------------------------


def live_sample_names(client) -> set[str]:
    """Exercise the example API once, then read /metrics: the sample names it exposes or declares."""
    from prometheus_client.parser import text_string_to_metric_families

    content = b"ops-pack metric names"
    url = "/api/v1/buckets/ops-pack/artifacts/weights/1.0.0"
    digest = "sha256:" + hashlib.sha256(content).hexdigest()
    assert (
        client.put(url, content, content_type="application/octet-stream", HTTP_X_CONTENT_DIGEST=digest).status_code
        == 201
    )
    assert client.get(url).content == content
    assert client.post(url + "/scan").status_code == 200
    response = client.get("/metrics")
    assert response.status_code == 200, response.content[:500]
    text = b"".join(response.streaming_content).decode() if response.streaming else response.content.decode()
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        # A declared family without samples yet (a labelled counter nobody incremented) is exported all the same.
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}.get(family.type, ("",))
        names.update(family.name + suffix for suffix in suffixes)
        names.update(sample.name for sample in family.samples)
    return names


@pytest.mark.django_db
def test_every_used_name_exists_on_the_live_metrics_endpoint(client):
    live = live_sample_names(client)
    needed = {name for name in used_names() if name in CONTRACT_SAMPLES}
    missing = {name: sorted(where) for name, where in used_names().items() if name in needed and name not in live}
    assert not missing, f"used by rules or dashboards but absent from /metrics: {missing}"


@pytest.mark.django_db
def test_every_catalog_metric_exists_on_the_live_metrics_endpoint(client):
    live = live_sample_names(client)
    missing = sorted(sample for sample in CONTRACT_SAMPLES if sample not in live)
    assert not missing, f"catalog metrics absent from /metrics: {missing}"


def test_every_alert_runbook_is_linked_from_a_panel_and_every_link_resolves():
    """The drill-down from a dashboard to the runbook of the alert that reads the same metric."""
    alerts = {
        rule["alert"]
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    linked = set()
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text(encoding="utf-8"))["panels"]:
            for link in panel.get("links", []):
                target = (path.parent / link["url"]).resolve()
                assert target.is_file(), f"{path.name}: {panel['title']}: {link['url']} does not exist"
                assert target.parent == (ROOT / "docs/runbooks").resolve()
                linked.add(target.stem)
    assert alerts <= linked, sorted(alerts - linked)


def test_the_latency_panels_ask_for_exemplars():
    document = json.loads((ROOT / "docs/grafana/operational.json").read_text(encoding="utf-8"))
    latency = [
        target
        for panel in document["panels"]
        for target in panel.get("targets", [])
        if "http_request_duration_seconds_bucket" in target["expr"]
    ]
    assert any(target.get("exemplar") for target in latency)
    quantiles = {match for target in latency for match in re.findall(r"histogram_quantile\((0\.\d+)", target["expr"])}
    assert {"0.5", "0.9", "0.95", "0.99"} <= quantiles
