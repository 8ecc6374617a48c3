"""The alert rules: promtool and amtool accept what alerts.rules renders, promtool unit
tests (tests/rules/) prove each rule fires and stays quiet, thresholds come from the
metric definitions, and every rule has a runbook section."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.utils import floatToGoString

from alerts import rules as rules_module
from alerts.rules import (
    DEFAULT_RUNBOOK_BASE,
    RULES,
    Rule,
    build_rules,
    num,
    render_alertmanager,
    render_rules,
)
from collectors import metrics
from collectors.metrics import RECOVERY_BUCKETS, RECOVERY_SLA_SECONDS, Threshold

ROOT = Path(__file__).resolve().parents[2]
PROMTOOL_TESTS = ROOT / "tests" / "rules"
RUNBOOKS = ROOT / "alerts" / "runbooks.md"
RULES_FILE = "lifeboat.rules.yml"  # the name the files in tests/rules/ load
#: absent() yields a series without labels: this rule's alert has no cluster.
NO_CLUSTER = {"LifeboatMetricsAbsent"}


def tool(name: str) -> str:
    """The path of promtool or amtool; missing is a failure: scripts/setup installs them."""
    path = shutil.which(name) or shutil.which(name, path="/usr/bin")
    if path is None:
        pytest.fail(f"{name} is not installed: scripts/setup installs prometheus and prometheus-alertmanager")
    return path


def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=300)


def rendered() -> dict[str, dict[str, Any]]:
    """The rendered rules, by alert name."""
    doc = yaml.safe_load(render_rules())
    assert [g["name"] for g in doc["groups"]] == ["lifeboat"]
    return {r["alert"]: r for r in doc["groups"][0]["rules"]}


def promtool_tests() -> list[tuple[str, dict[str, Any]]]:
    """Every alert_rule_test case of tests/rules/*.yml, with its file's name."""
    cases = []
    for path in sorted(PROMTOOL_TESTS.glob("*.yml")):
        doc = yaml.safe_load(path.read_text())
        assert doc["rule_files"] == [RULES_FILE], path
        for test in doc["tests"]:
            cases += [(path.name, case) for case in test.get("alert_rule_test", [])]
    return cases


# promtool -------------------------------------------------------------------------------------


def test_promtool_check_rules_accepts_the_rendered_file(tmp_path: Path) -> None:
    path = tmp_path / RULES_FILE
    path.write_text(render_rules())
    result = run(tool("promtool"), "check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(RULES)} rules found" in result.stdout


def test_promtool_unit_tests_pass(tmp_path: Path) -> None:
    (tmp_path / RULES_FILE).write_text(render_rules())
    files = sorted(PROMTOOL_TESTS.glob("*.yml"))
    assert files
    for path in files:
        shutil.copy(path, tmp_path / path.name)
    result = run(tool("promtool"), "test", "rules", *(p.name for p in files), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(files)


def test_every_rule_has_a_firing_and_a_quiet_promtool_case() -> None:
    cases = promtool_tests()
    by_name = {r.name: r for r in RULES}
    unknown = {case["alertname"] for _, case in cases} - set(by_name)
    assert not unknown, f"promtool tests name alerts that do not exist (they would pass silently): {unknown}"
    for rule in RULES:
        mine = [case for _, case in cases if case["alertname"] == rule.name]
        firing = [alert for case in mine for alert in case.get("exp_alerts") or []]
        assert firing, f"no promtool case where {rule.name} fires"
        quiet = [case for case in mine if not case.get("exp_alerts")]
        assert quiet, f"no promtool case where {rule.name} is quiet"
        for alert in firing:
            labels, annotations = alert["exp_labels"], alert["exp_annotations"]
            assert labels["severity"] == rule.severity and labels["cause"] == rule.cause, rule.name
            assert rule.name in NO_CLUSTER or labels.get("cluster"), rule.name
            assert set(annotations) == {"summary", "description", "runbook_url"}, rule.name
            assert annotations["runbook_url"] == f"{DEFAULT_RUNBOOK_BASE}#{rule.anchor}"


# thresholds from the metric definitions -------------------------------------------------------


def test_every_metric_threshold_is_in_a_rule_of_its_severity() -> None:
    exprs = rendered()
    with_threshold = [m for m in metrics.METRICS if m.threshold is not None]
    assert with_threshold
    for m in with_threshold:
        assert m.threshold is not None
        for severity in ("warning", "critical"):
            level = getattr(m.threshold, severity)
            if level is None:
                continue
            if m.kind == "histogram":
                wanted = f'{m.name}_bucket{{le="{floatToGoString(level)}"}}'
            else:
                wanted = f"{m.name} {'<' if m.threshold.below else '>'} {num(level)}"
            matching = [name for name, r in exprs.items()
                        if r["labels"]["severity"] == severity and wanted in r["expr"]]
            assert matching, f"no {severity} rule has {wanted!r}"


THRESHOLD_RULES = [  # (alert, metric, level, operator)
    ("LifeboatBackupSuccessRateLow", "lifeboat_backup_success_ratio", "warning", "<"),
    ("LifeboatBackupSuccessRateCritical", "lifeboat_backup_success_ratio", "critical", "<"),
    ("LifeboatWALArchiveLagHigh", "lifeboat_wal_archive_lag_seconds", "warning", ">"),
    ("LifeboatWALArchiveLagCritical", "lifeboat_wal_archive_lag_seconds", "critical", ">"),
    ("LifeboatReplicationLagHigh", "lifeboat_replication_lag_seconds", "warning", ">"),
    ("LifeboatReplicationLagCritical", "lifeboat_replication_lag_seconds", "critical", ">"),
]


@pytest.mark.parametrize(("alert", "name", "level", "op"), THRESHOLD_RULES)
def test_thresholds_in_the_rendered_rules_equal_the_definitions(alert: str, name: str, level: str,
                                                                op: str) -> None:
    threshold = metrics.metric(name).threshold
    assert threshold is not None
    assert rendered()[alert]["expr"] == f"{name} {op} {num(getattr(threshold, level))}"


def test_sla_in_the_rendered_rules_equals_the_definition() -> None:
    expr = rendered()["LifeboatRecoveryOverSLA"]["expr"]
    assert f'_bucket{{le="{floatToGoString(RECOVERY_SLA_SECONDS)}"}}' in expr


def test_sla_bucket_label_is_what_prometheus_client_exposes() -> None:
    registry = CollectorRegistry()
    histogram = Histogram("lifeboat_recovery_duration_seconds", "x", ["cluster"],
                          buckets=RECOVERY_BUCKETS, registry=registry)
    histogram.labels("main").observe(1000.0)
    exposed = re.findall(r'le="([^"]+)"', generate_latest(registry).decode())
    le = re.search(r'le="([^"]+)"', rendered()["LifeboatRecoveryOverSLA"]["expr"])
    assert le and le.group(1) in exposed and le.group(1) == "900.0"


def test_rules_follow_changed_definitions(monkeypatch: pytest.MonkeyPatch) -> None:
    def set_threshold(name: str, threshold: Threshold) -> None:
        monkeypatch.setitem(metrics.BY_NAME, name,
                            dataclasses.replace(metrics.BY_NAME[name], threshold=threshold))

    set_threshold("lifeboat_backup_success_ratio", Threshold(0.8, 0.7, below=True))
    set_threshold("lifeboat_replication_lag_seconds", Threshold(60.0, 90.0))
    monkeypatch.setattr(metrics, "RECOVERY_SLA_SECONDS", 1800.0)
    exprs = {r.name: r.expr for r in build_rules()}
    assert exprs["LifeboatBackupSuccessRateLow"].endswith("< 0.8")
    assert exprs["LifeboatBackupSuccessRateCritical"].endswith("< 0.7")
    assert exprs["LifeboatReplicationLagHigh"].endswith("> 60")
    assert exprs["LifeboatReplicationLagCritical"].endswith("> 90")
    assert 'le="1800.0"' in exprs["LifeboatRecoveryOverSLA"]
    monkeypatch.setattr(metrics, "RECOVERY_SLA_SECONDS", 1000.0)
    with pytest.raises(ValueError, match="not a bucket"):
        build_rules()


# the rules' shape -----------------------------------------------------------------------------


def test_rendered_rules_carry_labels_annotations_and_runbook() -> None:
    base = "https://runbooks.example/lifeboat.md"
    doc = yaml.safe_load(render_rules(base))
    entries = doc["groups"][0]["rules"]
    assert [e["alert"] for e in entries] == [r.name for r in RULES]
    for entry, rule in zip(entries, RULES, strict=True):
        assert set(entry) == {"alert", "expr", "for", "labels", "annotations"}
        assert entry["labels"] == {"severity": rule.severity, "cause": rule.cause}
        assert entry["annotations"]["runbook_url"] == f"{base}#{rule.anchor}"
        assert entry["annotations"]["summary"] and entry["annotations"]["description"]
    assert render_rules() == render_rules()


def test_causes_pair_one_warning_with_one_critical() -> None:
    seen: dict[tuple[str, str], str] = {}
    for rule in RULES:
        key = (rule.cause, rule.severity)
        assert key not in seen, f"{rule.name} and {seen[key]} share cause and severity"
        seen[key] = rule.name
    pairs = {c for c, s in seen if s == "warning"} & {c for c, s in seen if s == "critical"}
    assert {"backup_success_rate", "wal_archive_lag", "replication_lag"} <= pairs


def test_rule_refuses_bad_severity_and_duration() -> None:
    with pytest.raises(ValueError, match="severity"):
        Rule("X", "page", "up", "5m", "s", "d", "c", "x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="for"):
        Rule("X", "warning", "up", "5 minutes", "s", "d", "c", "x")


def test_fixed_defaults_are_stated() -> None:
    assert rules_module.BACKUP_MAX_AGE_SECONDS == 2 * 86400
    assert f"> {num(rules_module.BACKUP_MAX_AGE_SECONDS)}" in rendered()["LifeboatBackupTooOld"]["expr"]
    assert f"+ {num(rules_module.DRILL_GRACE_SECONDS)})" in rendered()["LifeboatDrillOverdue"]["expr"]


# Alertmanager ---------------------------------------------------------------------------------


def test_amtool_accepts_the_alertmanager_config(tmp_path: Path) -> None:
    path = tmp_path / "alertmanager.yml"
    path.write_text(render_alertmanager())
    result = run(tool("amtool"), "check-config", path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 inhibit rules" in result.stdout


def test_critical_inhibits_the_warning_of_the_same_cause_and_series() -> None:
    config = yaml.safe_load(render_alertmanager())
    assert config["route"]["receiver"] == "lifeboat"
    assert [r["name"] for r in config["receivers"]] == ["lifeboat"]
    assert config["inhibit_rules"] == [{
        "source_matchers": ['severity="critical"'],
        "target_matchers": ['severity="warning"'],
        "equal": ["cause", "cluster", "type", "kind", "replica"],
    }]


# runbooks -------------------------------------------------------------------------------------


def github_anchor(heading: str) -> str:
    return re.sub(r"[^a-z0-9 _-]", "", heading.strip().lower()).replace(" ", "-")


def test_every_rule_has_a_runbook_section() -> None:
    text = RUNBOOKS.read_text()
    sections = [github_anchor(h) for h in re.findall(r"^## (.+)$", text, flags=re.MULTILINE)]
    assert sorted(sections) == sorted(r.anchor for r in RULES)
    for link in re.findall(r"\]\(#([^)]+)\)", text):
        assert link in sections, f"runbooks.md links to a missing section: #{link}"
