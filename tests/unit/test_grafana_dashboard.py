"""The generated Grafana dashboard: importable, matching the metric definitions, with the
thresholds of the configuration's alert rules, and the committed grafana/lifeboat.json is
what the code generates from the defaults."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.utils import floatToGoString

from collectors import grafana_dashboard as gd
from collectors import metrics
from engine.config.alerting import AlertsSettings

COMMITTED = Path(__file__).resolve().parents[2] / "grafana" / "lifeboat.json"
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
ROWS = ["Backups", "WAL archive", "Replication", "Recovery objectives", "Drills", "Repository tiers",
        "Alerts", "Host", "Exporter"]
NAME = re.compile(r"lifeboat_[a-z0-9_]+")
SELECTOR = re.compile(r"(lifeboat_[a-z0-9_]+)(\{[^}]*\})?")


@pytest.fixture(scope="module")
def board() -> dict[str, Any]:
    return gd.build_dashboard()


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for panel in board["panels"]:
        found.extend(panel["panels"] if panel["type"] == "row" else [panel])
    return found


def family(name: str) -> str:
    return name if name in metrics.BY_NAME else re.sub(r"_(bucket|count|sum)$", "", name)


def expected_steps(threshold: gd.Levels | None) -> list[list[Any]]:
    """The metric's alerting levels as Grafana steps: green/orange/red upwards, or for a
    metric that alerts when it falls, red at the bottom."""
    if threshold is None:
        return [[None, "green"]]
    if threshold.below:
        assert threshold.warning is not None and threshold.critical is not None
        return [[None, "red"], [threshold.critical, "orange"], [threshold.warning, "green"]]
    steps: list[list[Any]] = [[None, "green"]]
    if threshold.warning is not None:
        steps.append([threshold.warning, "orange"])
    if threshold.critical is not None:
        steps.append([threshold.critical, "red"])
    return steps


def steps_of(panel: dict[str, Any]) -> list[list[Any]]:
    return [[s["value"], s["color"]] for s in panel["fieldConfig"]["defaults"]["thresholds"]["steps"]]


def specs(alerts: AlertsSettings | None = None) -> list[gd.PanelSpec]:
    by_group = gd.panel_specs(alerts)
    return [spec for group in metrics.GROUPS for spec in by_group[group]]


def test_committed_json_is_the_generated_one() -> None:
    regenerate = "regenerate it: lifeboat grafana export --output grafana/lifeboat.json"
    assert COMMITTED.exists(), f"{COMMITTED} is missing; {regenerate}"
    assert COMMITTED.read_text(encoding="utf-8") == gd.render(), (
        f"{COMMITTED} differs from what collectors/grafana_dashboard.py generates; {regenerate}")


def test_render_is_deterministic_json_with_a_final_newline() -> None:
    text = gd.render()
    assert text == gd.render()
    assert text.endswith("}\n") and text.startswith('{\n  "__inputs"')


def test_imports_with_a_prometheus_input(board: dict[str, Any]) -> None:
    assert board["__inputs"] == [{
        "name": "DS_PROMETHEUS", "label": "Prometheus",
        "description": "The Prometheus that scrapes the Lifeboat exporter",
        "type": "datasource", "pluginId": "prometheus", "pluginName": "Prometheus"}]
    required = {(r["type"], r["id"]) for r in board["__requires"]}
    used = {("panel", p["type"]) for p in panels(board)}
    assert {("grafana", "grafana"), ("datasource", "prometheus")} | used == required
    assert board["uid"] == "lifeboat-overview" and board["title"] == "Lifeboat"
    assert board["time"] == {"from": "now-24h", "to": "now"} and board["refresh"] == "30s"
    assert "lifeboat" in board["tags"] and board["id"] is None


def test_cluster_variable(board: dict[str, Any]) -> None:
    [cluster] = [v for v in board["templating"]["list"] if v["name"] == "cluster"]
    assert cluster["type"] == "query"
    assert cluster["query"] == "label_values(lifeboat_up, cluster)"
    assert cluster["datasource"] == DATASOURCE
    assert cluster["multi"] and cluster["includeAll"]


def test_rows_in_order(board: dict[str, Any]) -> None:
    rows = [p for p in board["panels"] if p["type"] == "row"]
    assert [r["title"] for r in rows] == ROWS
    assert [r["collapsed"] for r in rows] == [False] * 7 + [True] * 2
    assert all(not r["panels"] for r in rows if not r["collapsed"])


def test_each_row_shows_its_group(board: dict[str, Any]) -> None:
    group, by_title = None, dict(zip(ROWS, metrics.GROUPS, strict=True))
    for item in board["panels"]:
        if item["type"] == "row":
            group = by_title[item["title"]]
        for panel in item["panels"] if item["type"] == "row" else [item]:
            for target in panel["targets"]:
                for name in NAME.findall(target["expr"]):
                    assert metrics.metric(family(name)).group == group, (panel["title"], name)


def test_every_query_uses_the_input_and_filters_on_cluster(board: dict[str, Any]) -> None:
    for panel in panels(board):
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
            for name, matchers in SELECTOR.findall(target["expr"]):
                if "cluster" in metrics.metric(family(name)).labels:
                    assert 'cluster=~"$cluster"' in matchers, (panel["title"], target["expr"])


def test_queries_name_defined_metrics_and_show_every_metric(board: dict[str, Any]) -> None:
    shown = set()
    for title, expr in gd.panel_queries(board):
        for name in NAME.findall(expr):
            assert family(name) in metrics.BY_NAME, f"{title}: {name} is not in collectors.metrics"
            shown.add(family(name))
    assert shown == set(metrics.BY_NAME)


def test_timestamps_are_shown_as_ages(board: dict[str, Any]) -> None:
    for title, expr in gd.panel_queries(board):
        for name in NAME.findall(expr):
            if name.endswith("_timestamp_seconds"):
                assert re.search(rf"time\(\) - {name}\b", expr), (title, expr)
    for spec, panel in zip(specs(), panels(board), strict=True):
        if any("time() - " in t.expr for t in spec.targets):
            assert metrics.metric(spec.metric).unit == "dateTimeAsIso"
            assert panel["fieldConfig"]["defaults"]["unit"] == "s", panel["title"]


def test_units_from_the_metric_definitions_and_thresholds_from_the_alert_rules(board: dict[str, Any]) -> None:
    assert [p["title"] for p in panels(board)] == [s.title for s in specs()]
    levels = gd.levels_of()
    with_threshold: dict[str, int] = {}
    for spec, panel in zip(specs(), panels(board), strict=True):
        metric = metrics.metric(spec.metric)
        assert panel["description"], panel["title"]
        if spec.unit is None:
            assert panel["fieldConfig"]["defaults"]["unit"] == metric.unit, panel["title"]
        if spec.steps is None:
            assert steps_of(panel) == expected_steps(levels.get(metric.name)), panel["title"]
            if metric.name in levels:
                with_threshold[metric.name] = with_threshold.get(metric.name, 0) + 1
        for _value, color in steps_of(panel):
            assert color in ("green", "orange", "red")
    assert set(with_threshold) == set(levels)  # each metric an alert rule watches is shown with its levels


def test_levels_are_the_default_rules_thresholds() -> None:
    levels = gd.levels_of()
    assert levels == {
        "lifeboat_backup_success_ratio": gd.Levels(0.95, 0.90, below=True),  # backup_success_rate_*
        "lifeboat_backup_last_success_timestamp_seconds": gd.Levels(2 * 86400.0, None),  # backup_too_old
        "lifeboat_wal_archive_lag_seconds": gd.Levels(600.0, 1800.0),  # wal_archive_lag_*
        "lifeboat_replication_lag_seconds": gd.Levels(300.0, None),  # replication_delay
        "lifeboat_recovery_duration_seconds": gd.Levels(900.0, None),  # recovery_delays
        "lifeboat_copy_lag_seconds": gd.Levels(3600.0, 6 * 3600.0),  # copy_lag_*
    }
    assert gd.recovery_sla() == 900.0


def _panel(board: dict[str, Any], title: str) -> dict[str, Any]:
    [found] = [p for p in panels(board) if p["title"] == title]
    return found


def test_a_changed_threshold_in_the_configuration_shows_in_the_dashboard() -> None:
    alerts = AlertsSettings.model_validate({"rules": {
        "replication_delay": {"threshold": "90s"},
        "replication_lag_critical": {"signal": "replication_lag", "threshold": "10m", "severity": "critical"},
        "backup_success_rate_critical": {"enabled": False},
        "backup_success_rate_low": {"threshold": "99%"},
        "recovery_delays": {"threshold": "30m"},
    }})
    board = gd.build_dashboard(alerts)
    for title in ("Replication lag", "Replication lag over time"):
        assert steps_of(_panel(board, title)) == [[None, "green"], [90.0, "orange"], [600.0, "red"]]
    assert steps_of(_panel(board, "Backup success ratio")) == [[None, "orange"], [0.99, "green"]]
    assert steps_of(_panel(board, "Recovery time p95")) == [[None, "green"], [1800.0, "orange"]]
    slow = _panel(board, "Recoveries over SLA (30m)")
    assert 'le=~"1800|1800\\\\.0"' in slow["targets"][0]["expr"]
    text = gd.render(alerts)
    assert text != gd.render() and '"Recoveries over SLA (15m)"' in gd.render()
    unwatched = AlertsSettings.model_validate({"rules": {"copy_lag_high": {"enabled": False},
                                                         "copy_lag_critical": {"enabled": False}}})
    assert steps_of(_panel(gd.build_dashboard(unwatched), "Copy lag by region")) == [[None, "green"]]


def test_threshold_steps() -> None:
    assert gd.threshold_steps(gd.Levels(0.95, 0.90, below=True)) == (
        (None, "red"), (0.90, "orange"), (0.95, "green"))
    assert gd.threshold_steps(gd.Levels(180.0, 300.0)) == ((None, "green"), (180.0, "orange"), (300.0, "red"))
    assert gd.threshold_steps(gd.Levels(900.0, None)) == ((None, "green"), (900.0, "orange"))
    assert gd.threshold_steps(gd.Levels(None, 0.5, below=True)) == ((None, "red"), (0.5, "green"))
    assert gd.threshold_steps(None) == ((None, "green"),)


def test_recovery_sla_bucket_matcher_matches_the_exposed_bound(board: dict[str, Any]) -> None:
    [expr] = [e for t, e in gd.panel_queries(board) if t.startswith("Recoveries over SLA") and "le=~" in e]
    [pattern] = re.findall(r'le=~"((?:[^"\\]|\\.)*)"', expr)
    regex = pattern.replace("\\\\", "\\")  # the PromQL string's escapes
    sla = gd.recovery_sla()
    assert re.fullmatch(regex, floatToGoString(sla))  # prometheus-client: 900.0
    assert re.fullmatch(regex, f"{sla:g}")  # Prometheus 3 normalises to 900
    assert not re.fullmatch(regex, floatToGoString(sla * 10))


def test_panel_ids_unique_and_layout_without_overlaps(board: dict[str, Any]) -> None:
    items = [*board["panels"], *(p for r in board["panels"] if r["type"] == "row" for p in r["panels"])]
    ids = [p["id"] for p in items]
    assert len(ids) == len(set(ids))
    cells: dict[tuple[int, int], str] = {}
    for item in items:
        pos = item["gridPos"]
        assert pos["x"] >= 0 and pos["w"] > 0 and pos["h"] > 0 and pos["x"] + pos["w"] <= 24, item["title"]
        if item["type"] == "row":
            assert (pos["x"], pos["w"], pos["h"]) == (0, 24, 1)
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{item['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = item["title"]


def test_panel_queries_include_collapsed_rows(board: dict[str, Any]) -> None:
    titles = {title for title, _ in gd.panel_queries(board)}
    assert {"Load (1m)", "Refresh duration", "PostgreSQL up", "Replicas"} <= titles
    assert len(gd.panel_queries(board)) == sum(len(s.targets) for s in specs())


def test_resolve_gives_plain_promql(board: dict[str, Any]) -> None:
    for title, expr in gd.panel_queries(board):
        assert "$__interval" not in expr and "$__rate_interval" not in expr, title
        plain = gd.resolve(expr, "main", 600)
        assert "$" not in plain, (title, plain)
    assert gd.resolve('x{cluster=~"$cluster"}[$__range]', "main") == 'x{cluster=~"main"}[3600s]'
    assert gd.resolve('x{cluster=~"${cluster}"}[${__range}]', "db.eu-1", 60) == \
        'x{cluster=~"db\\\\.eu-1"}[60s]'
    with pytest.raises(ValueError, match=r"\$__interval"):
        gd.resolve("rate(x[$__interval])", "main")
