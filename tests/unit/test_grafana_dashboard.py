"""The generated Grafana dashboard: importable, matching the metric definitions, and the
committed grafana/lifeboat.json is what the code generates."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.utils import floatToGoString

from collectors import grafana_dashboard as gd
from collectors import metrics
from collectors.metrics import Threshold

COMMITTED = Path(__file__).resolve().parents[2] / "grafana" / "lifeboat.json"
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
ROWS = ["Backups", "WAL archive", "Replication", "Recovery objectives", "Drills", "Repository tiers",
        "Host", "Exporter"]
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


def expected_steps(threshold: Threshold | None) -> list[list[Any]]:
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


def specs() -> list[gd.PanelSpec]:
    return [spec for group in metrics.GROUPS for spec in gd.PANELS[group]]


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
    assert [r["collapsed"] for r in rows] == [False] * 6 + [True] * 2
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


def test_units_and_thresholds_come_from_the_metric_definitions(board: dict[str, Any]) -> None:
    assert [p["title"] for p in panels(board)] == [s.title for s in specs()]
    with_threshold: dict[str, int] = {}
    for spec, panel in zip(specs(), panels(board), strict=True):
        metric = metrics.metric(spec.metric)
        assert panel["description"], panel["title"]
        if spec.unit is None:
            assert panel["fieldConfig"]["defaults"]["unit"] == metric.unit, panel["title"]
        if spec.steps is None:
            assert steps_of(panel) == expected_steps(metric.threshold), panel["title"]
            if metric.threshold is not None and spec.unit is None:
                with_threshold[metric.name] = with_threshold.get(metric.name, 0) + 1
        for _value, color in steps_of(panel):
            assert color in ("green", "orange", "red")
    thresholded = {m.name for m in metrics.METRICS if m.threshold is not None}
    assert set(with_threshold) == thresholded  # each alerting metric is shown with its levels


def test_threshold_steps() -> None:
    ratio = metrics.metric("lifeboat_backup_success_ratio").threshold
    assert gd.threshold_steps(ratio) == ((None, "red"), (0.90, "orange"), (0.95, "green"))
    lag = metrics.metric("lifeboat_replication_lag_seconds").threshold
    assert gd.threshold_steps(lag) == ((None, "green"), (180.0, "orange"), (300.0, "red"))
    sla = metrics.metric("lifeboat_recovery_duration_seconds").threshold
    assert gd.threshold_steps(sla) == ((None, "green"), (metrics.RECOVERY_SLA_SECONDS, "orange"))
    assert gd.threshold_steps(None) == ((None, "green"),)


def test_recovery_sla_bucket_matcher_matches_the_exposed_bound(board: dict[str, Any]) -> None:
    [expr] = [e for t, e in gd.panel_queries(board) if t.startswith("Recoveries over SLA") and "le=~" in e]
    [pattern] = re.findall(r'le=~"((?:[^"\\]|\\.)*)"', expr)
    regex = pattern.replace("\\\\", "\\")  # the PromQL string's escapes
    sla = metrics.RECOVERY_SLA_SECONDS
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
