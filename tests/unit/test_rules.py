"""The alert rules: the rules file is rendered from the configuration's rules (the seed's
defaults, a changed threshold, an added ``expr`` rule, a disabled rule), promtool accepts it,
promtool unit tests (tests/rules/) prove each default rule fires and stays quiet, each
signal's PromQL uses the rule's threshold, window and matchers, and every default rule has
a runbook section."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from alerts import signals
from alerts.rules import AlertDefinition, build_rules, render_rules
from collectors.metrics import RECOVERY_BUCKETS
from engine.config.alerting import DEFAULT_RULES, AlertsSettings
from engine.errors import ConfigError
from engine.vocabulary import ALERT_SIGNALS, SIGNAL_METRICS, THRESHOLD_METRICS

ROOT = Path(__file__).resolve().parents[2]
PROMTOOL_TESTS = ROOT / "tests" / "rules"
RUNBOOKS = ROOT / "alerts" / "runbooks.md"
RULES_FILE = "lifeboat.rules.yml"  # the name the files in tests/rules/ load
BASE = "alerts/runbooks.md"
#: absent() yields a series without labels: this rule's alert has no cluster.
NO_CLUSTER = {"metrics_absent"}
DEFAULTS = build_rules()

SUCCEEDED_SINCE = (" unless on(cluster, type) (lifeboat_backup_last_success_timestamp_seconds > "
                   "on(cluster, type) lifeboat_backup_last_failure_timestamp_seconds)")


def tool(name: str) -> str:
    """The path of promtool or amtool; missing is a failure: scripts/setup installs them."""
    path = shutil.which(name) or shutil.which(name, path="/usr/bin")
    if path is None:
        pytest.fail(f"{name} is not installed: scripts/setup installs prometheus and prometheus-alertmanager")
    return path


def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=300)


def alerts_with(rules: dict[str, Any], **settings: Any) -> AlertsSettings:
    return AlertsSettings.model_validate({"rules": rules, **settings})


def rendered(alerts: AlertsSettings | None = None) -> dict[str, dict[str, Any]]:
    """The rendered rules, by alert name."""
    doc = yaml.safe_load(render_rules(alerts))
    assert [g["name"] for g in doc["groups"]] == ["lifeboat"]
    return {r["alert"]: r for r in doc["groups"][0]["rules"]}


def by_rule(alerts: AlertsSettings | None = None) -> dict[str, dict[str, Any]]:
    return {r["labels"]["rule"]: r for r in rendered(alerts).values()}


def promtool_check(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / RULES_FILE
    path.write_text(text)
    return run(tool("promtool"), "check", "rules", path)


def promtool_tests() -> list[tuple[str, dict[str, Any]]]:
    """Every alert_rule_test case of tests/rules/*.yml, with its file's name."""
    cases = []
    for path in sorted(PROMTOOL_TESTS.glob("*.yml")):
        doc = yaml.safe_load(path.read_text())
        assert doc["rule_files"] == [RULES_FILE], path
        for test in doc["tests"]:
            cases += [(path.name, case) for case in test.get("alert_rule_test", [])]
    return cases


# promtool over the defaults -------------------------------------------------------------------


def test_promtool_check_rules_accepts_the_rendered_defaults(tmp_path: Path) -> None:
    result = promtool_check(tmp_path, render_rules())
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(DEFAULT_RULES)} rules found" in result.stdout  # every default is enabled


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
    by_alert = {d.alert: d for d in DEFAULTS}
    unknown = {case["alertname"] for _, case in cases} - set(by_alert)
    assert not unknown, f"promtool tests name alerts that do not exist (they would pass silently): {unknown}"
    for definition in DEFAULTS:
        mine = [case for _, case in cases if case["alertname"] == definition.alert]
        firing = [alert for case in mine for alert in case.get("exp_alerts") or []]
        assert firing, f"no promtool case where {definition.alert} fires"
        quiet = [case for case in mine if not case.get("exp_alerts")]
        assert quiet, f"no promtool case where {definition.alert} is quiet"
        for alert in firing:
            labels, annotations = alert["exp_labels"], alert["exp_annotations"]
            assert {k: labels[k] for k in ("severity", "cause", "rule")} == definition.labels, definition.rule
            assert definition.rule in NO_CLUSTER or labels.get("cluster"), definition.rule
            assert set(annotations) == set(definition.annotations), definition.rule
            assert annotations["runbook_url"] == f"{BASE}#{definition.rule}"
            assert annotations.get("threshold") == definition.threshold


def test_seed_thresholds_of_backup_failure_and_replication_delay() -> None:
    """The seed's two named alerts, as the promtool cases in backups.yml and replication.yml
    exercise them: one failure in 24h pages, 300 s of lag for 5m warns."""
    rules = by_rule()
    backup = rules["backup_failure"]
    assert backup["alert"] == "LifeboatBackupFailed"
    assert backup["expr"] == 'increase(lifeboat_backups_total{result="failed"}[24h]) > 0.5' + SUCCEEDED_SINCE
    assert (backup["for"], backup["labels"]["severity"], backup["labels"]["cause"]) == (
        "0s", "critical", "backup_failed")
    replication = rules["replication_delay"]
    assert replication["alert"] == "LifeboatReplicationDelay"
    assert replication["expr"] == "lifeboat_replication_lag_seconds > 300"
    assert (replication["for"], replication["labels"]["severity"]) == ("5m", "warning")
    assert replication["annotations"]["threshold"] == "5m"
    names = yaml.safe_load((PROMTOOL_TESTS / "replication.yml").read_text())
    assert "LifeboatReplicationDelay" in str(names) and "LifeboatReplicationLagHigh" not in str(names)


# the configuration drives the file ------------------------------------------------------------


CUSTOM = {
    "replication_delay": {"threshold": "60s", "for": "2m"},
    "backup_failure": {"threshold": 3, "window": "6h"},
    "recovery_delays": {"threshold": "30m"},
    "copy_lag_high": {"enabled": False},
    "wal_queue_full": {"expr": "lifeboat_wal_ready_files > 100", "for": "10m", "severity": "warning",
                       "summary": "pg_wal of {{ $labels.cluster }} holds many .ready files",
                       "runbook_url": "https://wiki.example/wal"},
}


def test_a_changed_threshold_an_added_expr_rule_and_a_disabled_rule_change_the_file(tmp_path: Path) -> None:
    alerts = alerts_with(CUSTOM)
    rules = by_rule(alerts)
    assert "copy_lag_high" not in rules and "copy_lag_critical" in rules
    assert rules["replication_delay"]["expr"] == "lifeboat_replication_lag_seconds > 60"
    assert rules["replication_delay"]["for"] == "2m"
    assert rules["replication_delay"]["annotations"]["threshold"] == "1m"
    assert "(warning above 1m)" in rules["replication_delay"]["annotations"]["description"]
    assert rules["backup_failure"]["expr"] == (
        'increase(lifeboat_backups_total{result="failed"}[6h]) > 2.5' + SUCCEEDED_SINCE)
    assert 'le="1800.0"' in rules["recovery_delays"]["expr"]
    added = rules["wal_queue_full"]
    assert added == {
        "alert": "LifeboatWalQueueFull", "expr": "lifeboat_wal_ready_files > 100", "for": "10m",
        "labels": {"severity": "warning", "cause": "wal_queue_full", "rule": "wal_queue_full"},
        "annotations": {"summary": "pg_wal of {{ $labels.cluster }} holds many .ready files",
                        "description": "The expression of this rule holds: value {{ $value }}.",
                        "runbook_url": "https://wiki.example/wal"}}
    names = [r["labels"]["rule"] for r in rendered(alerts).values()]
    assert names[-1] == "wal_queue_full"  # new rules follow the defaults, in the file's order
    assert len(names) == len(DEFAULT_RULES)  # one disabled, one added
    text = render_rules(alerts)
    assert text == render_rules(alerts_with(CUSTOM)) and text != render_rules()
    result = promtool_check(tmp_path, text)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(DEFAULT_RULES)} rules found" in result.stdout


def test_promtool_fires_at_a_changed_threshold(tmp_path: Path) -> None:
    """replication_delay at 60s for 2m: 120 s of lag fires it, which the default (300 s) would not."""
    (tmp_path / RULES_FILE).write_text(render_rules(alerts_with(CUSTOM)))
    lag = 'lifeboat_replication_lag_seconds{cluster="main",replica="r1",datacenter="dc1"}'
    case = {"rule_files": [RULES_FILE], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [{"series": lag, "values": "120x10"},
                         {"series": "lifeboat_wal_ready_files{cluster=\"main\"}", "values": "150x20"}],
        "alert_rule_test": [
            {"eval_time": "1m", "alertname": "LifeboatReplicationDelay", "exp_alerts": []},
            {"eval_time": "3m", "alertname": "LifeboatReplicationDelay", "exp_alerts": [{
                "exp_labels": {"rule": "replication_delay", "severity": "warning", "cause": "replication_lag",
                               "cluster": "main", "replica": "r1", "datacenter": "dc1"},
                "exp_annotations": {
                    "summary": "Replica r1 of main is over 1m behind",
                    "description": "Replica r1 (dc1) of cluster main is 2m 0s behind the primary "
                                   "(warning above 1m).",
                    "runbook_url": f"{BASE}#replication_delay", "threshold": "1m"}}]},
            {"eval_time": "12m", "alertname": "LifeboatWalQueueFull", "exp_alerts": [{
                "exp_labels": {"rule": "wal_queue_full", "severity": "warning", "cause": "wal_queue_full",
                               "cluster": "main"},
                "exp_annotations": {"summary": "pg_wal of main holds many .ready files",
                                    "description": "The expression of this rule holds: value 150.",
                                    "runbook_url": "https://wiki.example/wal"}}]},
        ]}]}
    (tmp_path / "custom.yml").write_text(yaml.safe_dump(case))
    result = run(tool("promtool"), "test", "rules", "custom.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_runbook_base_and_a_rules_own_runbook() -> None:
    alerts = alerts_with({"data_loss": {"runbook_url": "https://wiki.example/loss"}},
                         runbook_base="https://docs.example/runbooks.md")
    rules = by_rule(alerts)
    assert rules["data_loss"]["annotations"]["runbook_url"] == "https://wiki.example/loss"
    assert rules["backup_failure"]["annotations"]["runbook_url"] == "https://docs.example/runbooks.md#backup_failure"
    override = {d.rule: d for d in build_rules(alerts, "https://x.example/r")}
    assert override["backup_failure"].runbook_url == "https://x.example/r#backup_failure"
    assert override["data_loss"].runbook_url == "https://wiki.example/loss"


def test_own_summary_and_cause_with_the_thresholds_written_in() -> None:
    alerts = alerts_with({"copy_lag_high": {
        "summary": "Copy of {{ $labels.cluster }} over {threshold} ({severity}, for {for})",
        "description": "Threshold {threshold}.", "cause": "copies", "threshold": "90m"}})
    rule = by_rule(alerts)["copy_lag_high"]
    assert rule["annotations"]["summary"] == "Copy of {{ $labels.cluster }} over 90m (warning, for 15m)"
    assert rule["annotations"]["description"] == "Threshold 90m."
    assert rule["labels"] == {"severity": "warning", "cause": "copies", "rule": "copy_lag_high"}
    assert rule["expr"] == "lifeboat_copy_lag_seconds > 5400"


def test_warning_and_critical_rules_of_one_condition_share_a_cause() -> None:
    seen: dict[tuple[str, str], str] = {}
    for definition in DEFAULTS:
        key = (definition.cause, definition.severity)
        assert key not in seen, f"{definition.rule} and {seen[key]} share cause and severity"
        seen[key] = definition.rule
    pairs = {c for c, s in seen if s == "warning"} & {c for c, s in seen if s == "critical"}
    assert {"backup_success_rate", "wal_archive_lag", "copy_lag", "validation"} <= pairs


# signals --------------------------------------------------------------------------------------


def test_every_signal_has_promql_and_a_metric() -> None:
    assert set(signals.SIGNALS) == set(ALERT_SIGNALS) == set(SIGNAL_METRICS)
    assert set(THRESHOLD_METRICS) <= set(ALERT_SIGNALS)


def _signal_rule(signal: str, **fields: Any) -> dict[str, Any]:
    return {"signal": signal, "severity": "warning", **fields}


SIGNAL_CASES = [  # (rule fields, the PromQL it renders)
    (_signal_rule("backup_success_rate", threshold="80%"), "lifeboat_backup_success_ratio < 0.8"),
    (_signal_rule("backup_age", threshold="36h"),
     "time() - max by (cluster) (lifeboat_backup_last_success_timestamp_seconds) > 129600"),
    (_signal_rule("wal_archive_lag", threshold="2m"), "lifeboat_wal_archive_lag_seconds > 120"),
    (_signal_rule("wal_archive_failures", threshold=5, window="1h"),
     "increase(lifeboat_wal_archive_failures_total[1h]) > 4.5"),
    (_signal_rule("replication_lag", threshold="45s", match={"cluster": "main", "replica": 'r"1'}),
     'lifeboat_replication_lag_seconds{cluster="main", replica="r\\"1"} > 45'),
    (_signal_rule("data_loss_events", threshold=2, window="7d", match={"cause": "wal_gap"}),
     'label_replace(sum by (cluster, cause, service) (increase(lifeboat_data_loss_events_total'
     '{cause="wal_gap"}[7d])), "loss_cause", "$1", "cause", "(.*)") > 1.5'),
    (_signal_rule("recovery_over_sla", threshold="1h", window="12h", match={"type": "pitr"}),
     'increase(lifeboat_recovery_duration_seconds_count{type="pitr"}[12h]) - ignoring(le) '
     'increase(lifeboat_recovery_duration_seconds_bucket{le="3600.0", type="pitr"}[12h]) > 0.5'),
    (_signal_rule("rpo_breach", threshold=0.5),
     "lifeboat_rpo_exposure_seconds > on(cluster, class) (0.5 * lifeboat_rpo_objective_seconds)"),
    (_signal_rule("rto_at_risk", threshold=1),
     "lifeboat_rto_expected_seconds > on(cluster, class) lifeboat_rto_objective_seconds"),
    (_signal_rule("copy_lag", threshold="3h"), "lifeboat_copy_lag_seconds > 10800"),
    (_signal_rule("copy_validation_failed", match={"region": "dr"}),
     'lifeboat_copy_validation_ok{region="dr"} == 0'),
    (_signal_rule("wal_shipping_delay", threshold=2),
     "lifeboat_wal_shipping_delay_seconds > on(cluster, region) "
     "(2 * lifeboat_wal_shipping_max_delay_seconds)"),
    (_signal_rule("below_replication", threshold=2, match={"tier": "cold"}),
     'lifeboat_backups_below_replication{tier="cold"} >= 2'),
    (_signal_rule("postgres_down", match={"cluster": "main"}), 'lifeboat_up{cluster="main"} == 0'),
    (_signal_rule("streaming_receiver_down"), "lifeboat_streaming_receiver_up == 0"),
    (_signal_rule("metrics_absent"), "absent(lifeboat_up)"),
    (_signal_rule("cluster_metrics_absent"),
     "(group by (cluster) (max_over_time(lifeboat_up[1d])) unless group by (cluster) (lifeboat_up)) "
     "and on() group(lifeboat_up)"),
    (_signal_rule("drill_overdue", threshold="2h", match={"kind": "full"}),
     'time() - lifeboat_drill_last_success_timestamp_seconds{kind="full"} > on(cluster, kind) '
     "(lifeboat_drill_period_seconds + 7200) and on(cluster, kind) lifeboat_drill_period_seconds > 0"),
    (_signal_rule("drill_failed"), "lifeboat_drill_last_passed == 0"),
    (_signal_rule("drill_failed_checks", threshold=3), "lifeboat_drill_last_failed_checks >= 3"),
    (_signal_rule("drill_slower_than_rto", threshold=1.5),
     "lifeboat_drill_last_duration_seconds > on(cluster) group_left() "
     "(1.5 * lifeboat_rto_objective_seconds)"),
]


def test_signal_cases_cover_every_signal() -> None:
    assert {fields["signal"] for fields, _ in SIGNAL_CASES} | {"backup_failures"} == set(ALERT_SIGNALS)


@pytest.mark.parametrize(("fields", "expr"), SIGNAL_CASES, ids=[f["signal"] for f, _ in SIGNAL_CASES])
def test_signal_promql_uses_threshold_window_and_matchers(fields: dict[str, Any], expr: str) -> None:
    assert by_rule(alerts_with({"mine": fields}))["mine"]["expr"] == expr


def test_every_signal_renders_a_file_promtool_accepts(tmp_path: Path) -> None:
    rules = {f"rule_{i}": fields for i, (fields, _) in enumerate(SIGNAL_CASES)}
    result = promtool_check(tmp_path, render_rules(alerts_with(rules)))
    assert result.returncode == 0, result.stdout + result.stderr


def test_recovery_sla_must_be_a_histogram_bucket() -> None:
    alerts = alerts_with({"recovery_delays": {"threshold": "1000s"},
                          "slow_pitr": _signal_rule("recovery_over_sla", threshold="20m", window="1d")})
    with pytest.raises(ConfigError) as raised:
        build_rules(alerts)
    message = str(raised.value)
    histogram = "lifeboat_recovery_duration_seconds"
    assert f"alerts.rules.recovery_delays.threshold: 1000s is not a bucket of {histogram}" in message
    assert f"alerts.rules.slow_pitr.threshold: 20m is not a bucket of {histogram}" in message
    assert "buckets: 30s, 1m, 5m, 15m, 30m, 1h, 4h, 24h" in message
    disabled = alerts_with({"recovery_delays": {"threshold": "1000s", "enabled": False}})
    assert "recovery_delays" not in {d.rule for d in build_rules(disabled)}


def test_sla_bucket_label_is_what_prometheus_client_exposes() -> None:
    registry = CollectorRegistry()
    histogram = Histogram("lifeboat_recovery_duration_seconds", "x", ["cluster"],
                          buckets=RECOVERY_BUCKETS, registry=registry)
    histogram.labels("main").observe(1000.0)
    exposed = re.findall(r'le="([^"]+)"', generate_latest(registry).decode())
    le = re.search(r'le="([^"]+)"', rendered()["LifeboatRecoveryOverSLA"]["expr"])
    assert le and le.group(1) in exposed and le.group(1) == "900.0"


def test_thresholds_are_written_for_humans() -> None:
    assert [signals.human_seconds(s) for s in (0, 45, 90, 300, 3600, 5400, 86400, 172800, 0.25)] == [
        "0s", "45s", "90s", "5m", "1h", "90m", "24h", "2d", "250ms"]
    assert signals.human(0.95, "ratio") == "95%" and signals.human(0.999, "ratio") == "99.9%"
    assert signals.human(1.5, "factor") == "1.5x" and signals.human(3, "count") == "3"
    assert signals.human(None, "none") is None
    annotations = {d.rule: d.threshold for d in DEFAULTS}
    assert annotations["backup_success_rate_low"] == "95%" and annotations["backup_too_old"] == "2d"
    assert annotations["performance_issues"] == "1x" and annotations["postgres_down"] is None
    factor = by_rule(alerts_with({"rpo_breached": {"threshold": 2}}))["rpo_breached"]["annotations"]
    assert factor["summary"] == "{{ $labels.cluster }} is beyond 2 times its RPO objective"


def test_definitions_carry_the_rule_and_are_deterministic() -> None:
    assert all(isinstance(d, AlertDefinition) for d in DEFAULTS)
    assert [d.rule for d in DEFAULTS] == list(DEFAULT_RULES)
    assert render_rules() == render_rules()
    entries = yaml.safe_load(render_rules())["groups"][0]["rules"]
    for entry in entries:
        assert set(entry) == {"alert", "expr", "for", "labels", "annotations"}
        assert set(entry["labels"]) == {"severity", "cause", "rule"}


# runbooks -------------------------------------------------------------------------------------


def github_anchor(heading: str) -> str:
    return re.sub(r"[^a-z0-9 _-]", "", heading.strip().lower()).replace(" ", "-")


def test_every_default_rule_has_a_runbook_section() -> None:
    text = RUNBOOKS.read_text()
    sections = [github_anchor(h) for h in re.findall(r"^## (.+)$", text, flags=re.MULTILINE)]
    assert sorted(sections) == sorted(DEFAULT_RULES)
    for definition in DEFAULTS:
        assert f"Alert `{definition.alert}` ({definition.severity})." in text, definition.rule
    for link in re.findall(r"\]\(#([^)]+)\)", text):
        assert link in sections, f"runbooks.md links to a missing section: #{link}"
