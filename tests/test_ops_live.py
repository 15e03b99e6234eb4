"""Every expression of docs/prometheus/*.yml and docs/grafana/*.json returns data against a live scrape.

The example runs for real (gunicorn, 2 workers, a Celery worker on Redis), ``scripts/traffic.py --commands`` sends
the documented traffic, a real Prometheus scrapes the API (job ``artifact-service``) and the worker
(``artifact-service-worker``) and evaluates the rule files; then every alert, recording rule and panel query is
evaluated and none may come back empty, or with nothing but NaN.

An alert's expression filters (``> 0.02``): the comparison is evaluated with ``bool`` instead, so that the test asks
"is there data to compare" rather than "does it fire now". ``absent(x)`` is evaluated as ``x`` (present data is what
keeps it quiet). ``offset`` is dropped: a Prometheus started a minute ago has no yesterday, so the current data
stands in for the history the trend and anomaly alerts compare with (their promtool unit tests cover the history).
Grafana's ``$job`` is ``.*`` and ``$__rate_interval`` 5m (the whole run).
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests import servers
from tests.prometheus import PrometheusServer, static_jobs
from tests.servers import ROOT, GunicornServer, server_env

server_database = servers.server_database
_migrated_sqlite = servers._migrated_sqlite

pytestmark = [pytest.mark.prometheus, pytest.mark.gunicorn]

RULE_FILES = tuple(sorted((ROOT / "docs/prometheus").glob("*.yml")))
DASHBOARDS = tuple(sorted((ROOT / "docs/grafana").glob("*.json")))
_COMPARISON = re.compile(r"(==|!=|>=|<=|>|<)(?!\s*bool\b)")


def _skip_strings_and_matchers(expr: str) -> list[tuple[bool, str]]:
    """``expr`` cut into (is code, text) pieces: string literals and ``{...}`` label matchers are not code."""
    pieces: list[tuple[bool, str]] = []
    code, index = [], 0
    while index < len(expr):
        char = expr[index]
        if char in "\"'`" or char == "{":
            if code:
                pieces.append((True, "".join(code)))
                code = []
            end = index + 1
            if char == "{":
                while end < len(expr) and expr[end] != "}":
                    if expr[end] in "\"'":
                        quote = expr[end]
                        end += 1
                        while end < len(expr) and expr[end] != quote:
                            end += 2 if expr[end] == "\\" else 1
                    end += 1
            else:
                while end < len(expr) and expr[end] != char:
                    end += 2 if expr[end] == "\\" else 1
            pieces.append((False, expr[index : end + 1]))
            index = end + 1
        else:
            code.append(char)
            index += 1
    if code:
        pieces.append((True, "".join(code)))
    return pieces


def probe(expr: str) -> str:
    """The expression as this test evaluates it: comparisons with ``bool``, no ``absent()``, no ``offset``."""
    out = []
    for is_code, text in _skip_strings_and_matchers(expr):
        if is_code:
            text = re.sub(r"\boffset\s+-?\d+[smhdwy]", " ", text)
            text = re.sub(r"\babsent\s*\(", "(", text)
            text = _COMPARISON.sub(lambda match: f"{match.group(1)} bool", text)
        out.append(text)
    return "".join(out)


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        (
            'sum(rate(x{status=~"5.."}[5m])) / sum(rate(x[5m])) > 0.02',
            'sum(rate(x{status=~"5.."}[5m])) / sum(rate(x[5m])) > bool 0.02',
        ),
        ('absent(up{job="a"} == 1)', '(up{job="a"} == bool 1)'),
        ("a > bool 1", "a > bool 1"),
        ("rate(x[1h] offset 1d) <= 2", "rate(x[1h]  ) <= bool 2"),
        ('x{le=~"5(\\\\.0)?",a!="b"} >= 3', 'x{le=~"5(\\\\.0)?",a!="b"} >= bool 3'),
        ('label_replace(x, "a", "<", "b", ">")', 'label_replace(x, "a", "<", "b", ">")'),
    ],
)
def test_probe_rewrites_filters_and_nothing_else(expr, expected):
    assert probe(expr) == expected


def rule_expressions() -> list[tuple[str, str]]:
    found = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            for rule in group["rules"]:
                found.append((f"{path.name}:{rule.get('alert') or rule.get('record')}", rule["expr"]))
    return found


def _panels(panels: list[dict]):
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def dashboard_expressions() -> list[tuple[str, str]]:
    found = []
    for path in DASHBOARDS:
        document = json.loads(path.read_text(encoding="utf-8"))
        for panel in _panels(document["panels"]):
            for target in panel.get("targets", []):
                if target.get("expr"):
                    expr = target["expr"].replace("$__rate_interval", "5m").replace("$__interval", "1m")
                    found.append(
                        (f"{path.name}:{panel['title']}:{target.get('refId', '')}", expr.replace("$job", ".*"))
                    )
    return found


def test_every_pack_expression_is_found():
    assert len(rule_expressions()) > 40 and len(dashboard_expressions()) > 60


def _rule_copies(directory: Path) -> list[Path]:
    """The rule files without ``offset`` (see the module docstring), for Prometheus to evaluate."""
    copies = []
    for path in RULE_FILES:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        for group in document["groups"]:
            group["interval"] = "1s"
            for rule in group["rules"]:
                rule["expr"] = re.sub(r"\boffset\s+-?\d+[smhdwy]", " ", rule["expr"])
        copy = directory / path.name
        copy.write_text(yaml.safe_dump(document), encoding="utf-8")
        copies.append(copy)
    return copies


def _has_data(result: list[dict]) -> bool:
    return any(not math.isnan(float(item["value"][1])) for item in result)


def test_every_rule_and_panel_expression_returns_data_after_the_traffic_script(server_database, tmp_path):
    from tests.celery_worker import BROKER_URL, CeleryWorker

    worker = CeleryWorker(
        server_database.url, tmp_path / "worker", env={"EXAMPLE_FAULT_INJECTION": "1"}, concurrency=1
    ).start()
    web_env = {"EXAMPLE_FAULT_INJECTION": "1", "EXAMPLE_SCAN_ON_UPLOAD": "1", "CELERY_BROKER_URL": BROKER_URL}
    try:
        with (
            GunicornServer(server_database.url, tmp_path / "web", workers=2, env=web_env) as web,
            PrometheusServer(
                tmp_path / "prometheus",
                static_jobs(
                    {"artifact-service": f"127.0.0.1:{web.port}", "artifact-service-worker": f"127.0.0.1:{worker.port}"}
                ),
                interval="500ms",
                rule_files=tuple(_rule_copies(tmp_path)),
            ) as prom,
        ):
            prom.wait_for('up{job="artifact-service"} == 1', bool)
            env = server_env(server_database.url, tmp_path / "web")
            done = subprocess.run(
                [sys.executable, "scripts/traffic.py", web.url(""), "--commands"],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, done.stdout + done.stderr
            # The background scans and the exhausted retries reach the worker, then two more scrapes.
            prom.wait_for('sum(jobs_dead_lettered_total{job="artifact-service-worker"})', _has_data, timeout=60)
            prom.wait_for('sum(bucket_safety_scan_total{job="artifact-service"}) > 15', bool, timeout=30)
            time.sleep(3)
            empty = []
            for where, expr in rule_expressions() + dashboard_expressions():
                result = prom.query(probe(expr))
                if not _has_data(result):
                    empty.append(f"{where}: {probe(expr)} -> {result}")
            assert not empty, "expressions without data after the traffic script:\n" + "\n".join(empty)
    finally:
        worker.stop()
