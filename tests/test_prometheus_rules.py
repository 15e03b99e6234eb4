"""The Prometheus operations pack (docs/prometheus/): rules load, their unit tests pass, and each alert is complete.

promtool runs for real. Without it the promtool tests are skipped, unless ``OBSERVABILITY_TEST_REQUIRE_SYSTEM_TOOLS=1``
(set by .ci/run), which turns a missing promtool into a failure so CI cannot pass without running them. The
structure checks (runbook, firing and quiet unit test per alert) only read YAML and always run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_DIR = ROOT / "docs" / "prometheus"
RULE_FILES = tuple(sorted(PROMETHEUS_DIR.glob("*.yml")))  # alerts.yml, slo.yml, workers.yml, ...
TEST_FILES = tuple(sorted((PROMETHEUS_DIR / "tests").glob("*.yml")))
RUNBOOKS = ROOT / "docs" / "runbooks"
SEVERITIES = {"page", "ticket", "info"}  # info: trends for the daily review, never paged

#: What the design asks to alert on (SPEC section 6, issue 7): renaming or dropping one is a contract change.
REQUIRED_ALERTS = {
    "ReadinessFailing",
    "HighHTTP5xxRate",
    "ArtifactWriteLatencySLOBreach",
    "ArtifactDigestMismatch",
    "ArtifactWriteSuccessLow",
    "SafetyScanFailing",
    "SafetyRejectionSpike",
    "StorageNearCapacity",
    "ArtifactServiceTargetDown",
    "ArtifactServiceTargetAbsent",
    "AuditVerificationFailed",
    "AuditPurgeNotRun",
    "AvailabilitySLOBurnRatePage",
    "AvailabilitySLOBurnRateTicket",
    "WriteLatencySLOBurnRatePage",
    "WriteLatencySLOBurnRateTicket",
    # Background work (issue 12): docs/prometheus/workers.yml
    "JobFailureSurge",
    "JobRetrySurge",
    "JobDeadLetterGrowth",
    "JobBacklogOverSLA",
    "WorkerTargetAbsent",
    # Issue 13: docs/prometheus/operations.yml
    "HighHTTPLatencyP95",
    "QueueDelayP95High",
    "VersionConflictSurge",
    "SafetyFalsePositiveRateHigh",
    "HighMemoryUsage",
    "StorageFullWithin24h",
    "ServiceDegraded",
    "RequestVolumeDayOverDay",
    "ArtifactWritesWeekOverWeek",
    "RequestRateAnomaly",
}


def load(path: Path) -> dict:
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def alert_rules() -> dict[str, dict]:
    """Every alerting rule of the pack by name (a duplicate name fails here)."""
    found: dict[str, dict] = {}
    for path in RULE_FILES:
        for group in load(path)["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    assert rule["alert"] not in found, f"alert {rule['alert']} defined twice (second in {path.name})"
                    found[rule["alert"]] = rule
    return found


def unit_test_cases() -> list[dict]:
    """Every alert_rule_test entry of docs/prometheus/tests/*.yml."""
    return [case for path in TEST_FILES for group in load(path)["tests"] for case in group.get("alert_rule_test", [])]


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool") or ("/usr/bin/promtool" if os.access("/usr/bin/promtool", os.X_OK) else None)
    if path:
        return path
    reason = "promtool is not installed (scripts/install-system-deps.sh installs it)"
    if os.environ.get("OBSERVABILITY_TEST_REQUIRE_SYSTEM_TOOLS") == "1":
        pytest.fail(f"{reason}, and OBSERVABILITY_TEST_REQUIRE_SYSTEM_TOOLS=1 requires it")
    pytest.skip(f"{reason}; set OBSERVABILITY_TEST_REQUIRE_SYSTEM_TOOLS=1 to make this a failure")


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=ROOT, check=False)


def test_promtool_check_rules_passes(promtool):
    result = run(promtool, "check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULE_FILES), result.stdout


def test_promtool_unit_tests_pass(promtool):
    assert TEST_FILES, "no promtool unit tests in docs/prometheus/tests/"
    result = run(promtool, "test", "rules", *map(str, TEST_FILES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAILED" not in result.stdout + result.stderr


def test_promtool_rejects_a_wrong_expectation(promtool, tmp_path):
    """The harness can fail: claiming that a firing case stays quiet must make promtool test rules fail."""
    source = PROMETHEUS_DIR / "tests" / "alerts_test.yml"
    document = load(source)
    document["rule_files"] = [str((source.parent / name).resolve()) for name in document["rule_files"]]
    firing = [case for group in document["tests"] for case in group.get("alert_rule_test", []) if case["exp_alerts"]]
    firing[0]["exp_alerts"] = []
    broken = tmp_path / "broken_test.yml"
    broken.write_text(yaml.safe_dump(document), encoding="utf-8")
    result = run(promtool, "test", "rules", str(broken))
    assert result.returncode != 0
    assert firing[0]["alertname"] in result.stdout + result.stderr


def test_promtool_rejects_a_malformed_rule_file(promtool, tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("groups:\n  - name: g\n    rules:\n      - alert: Broken\n        expr: sum(rate(x[5m]) >\n")
    result = run(promtool, "check", "rules", str(bad))
    assert result.returncode != 0


def test_every_required_alert_exists():
    missing = REQUIRED_ALERTS - set(alert_rules())
    assert not missing, f"alerts the design asks for are missing: {sorted(missing)}"


@pytest.mark.parametrize("name", sorted(alert_rules()))
def test_alert_has_severity_annotations_and_runbook(name):
    rule = alert_rules()[name]
    assert rule.get("labels", {}).get("severity") in SEVERITIES, f"{name}: severity must be one of {SEVERITIES}"
    annotations = rule.get("annotations", {})
    for key in ("summary", "description", "runbook_url"):
        assert annotations.get(key, "").strip(), f"{name}: annotation {key} is missing"
    assert annotations["runbook_url"] == f"docs/runbooks/{name}.md"
    runbook = ROOT / annotations["runbook_url"]
    assert runbook.is_file(), f"{name}: runbook {runbook} does not exist"
    text = runbook.read_text(encoding="utf-8")
    assert text.startswith(f"# {name}"), f"{runbook} must start with the heading '# {name}'"
    for section in ("## What it means", "## First checks", "## Mitigation", "## Escalation"):
        assert section in text, f"{runbook} lacks the section {section!r}"


@pytest.mark.parametrize("name", sorted(alert_rules()))
def test_alert_has_a_firing_and_a_quiet_unit_test(name):
    cases = [case for case in unit_test_cases() if case["alertname"] == name]
    assert any(case["exp_alerts"] for case in cases), f"{name}: no promtool test where it fires"
    assert any(not case["exp_alerts"] for case in cases), f"{name}: no promtool test where it stays quiet"
    for case in cases:
        for alert in case["exp_alerts"]:
            assert alert["exp_labels"]["severity"] == alert_rules()[name]["labels"]["severity"]


def test_no_orphan_runbook():
    names = set(alert_rules())
    orphans = [path.name for path in RUNBOOKS.glob("*.md") if path.stem not in names and path.stem != "README"]
    assert not orphans, f"runbooks without an alert: {orphans}"


@pytest.mark.parametrize(
    ("alert", "pairs"),
    [
        ("AvailabilitySLOBurnRatePage", [("1h", "5m", "14.4 * 0.001"), ("6h", "30m", "6 * 0.001")]),
        ("AvailabilitySLOBurnRateTicket", [("1d", "2h", "3 * 0.001"), ("3d", "6h", "1 * 0.001")]),
        ("WriteLatencySLOBurnRatePage", [("1h", "5m", "14.4 * 0.05"), ("6h", "30m", "6 * 0.05")]),
        ("WriteLatencySLOBurnRateTicket", [("1d", "2h", "3 * 0.05"), ("3d", "6h", "1 * 0.05")]),
    ],
)
def test_burn_rate_alerts_pair_long_and_short_windows(alert, pairs):
    """SRE workbook: each condition needs BOTH the long and the short window above the same burn factor."""
    expr = " ".join(alert_rules()[alert]["expr"].split())
    recorded = {
        rule["record"]
        for group in load(PROMETHEUS_DIR / "slo.yml")["groups"]
        for rule in group["rules"]
        if "record" in rule
    }
    for long, short, threshold in pairs:
        ratio = "slo_availability_errors" if alert.startswith("Availability") else "slo_write_latency_slow"
        long_rule, short_rule = f"job:{ratio}:ratio_rate{long}", f"job:{ratio}:ratio_rate{short}"
        assert {long_rule, short_rule} <= recorded
        assert f"{long_rule} > ({threshold}) and {short_rule} > ({threshold})" in expr, expr
