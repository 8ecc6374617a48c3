"""Drill verdicts (thresholds, probe tolerance, RTO) and the Markdown report."""

from __future__ import annotations

import pytest

from engine.config.sections import DrillConfig
from engine.drill import model, report
from engine.drill.model import Check, DrillResult, ProbeTiming, TableComparison

DEFAULTS = DrillConfig()  # accuracy 100%, completeness 99.99%, tolerance 5%


def table(name: str, expected: int, restored: int | None, same: bool = True) -> TableComparison:
    return TableComparison(name, expected, "42", restored, "42" if same else "43")


def verdicts(tables: list[TableComparison], config: DrillConfig = DEFAULTS) -> dict[str, Check]:
    return {c.name: c for c in model.data_checks(tables, config.accuracy, config.completeness)}


def test_thresholds_come_from_the_seed_and_parse_as_fractions() -> None:
    assert DEFAULTS.accuracy == 1.0 and DEFAULTS.tolerance == 0.05
    assert DEFAULTS.completeness == 0.9999
    assert DrillConfig(completeness="99.99%").completeness == pytest.approx(0.9999)


def test_completeness_of_exactly_99_99_percent_passes_and_less_fails() -> None:
    checks = verdicts([table("d.s.t", 10000, 9999, same=False)],
                      DrillConfig(accuracy="1%", completeness="99.99%"))
    assert checks["completeness"].passed, checks["completeness"].detail
    assert "9999 of 10000 rows present (99.99%" in checks["completeness"].detail
    checks = verdicts([table("d.s.t", 10000, 9998, same=False)],
                      DrillConfig(accuracy="1%", completeness="99.99%"))
    assert not checks["completeness"].passed


def test_accuracy_needs_every_table_at_100_percent_and_names_the_wrong_ones() -> None:
    tables = [table("d.s.good", 10, 10), table("d.s.bad", 10, 10, same=False), table("d.s.gone", 5, 0)]
    checks = verdicts(tables)
    assert not checks["accuracy"].passed
    detail = checks["accuracy"].detail
    assert "1 of 3 tables" in detail and "d.s.bad: 10 of 10 rows, checksum differs" in detail
    assert "d.s.gone: 0 of 5 rows" in detail and "d.s.good" not in detail
    assert verdicts(tables, DrillConfig(accuracy="33%"))["accuracy"].passed


def test_surplus_rows_do_not_make_up_for_missing_ones() -> None:
    tables = [table("d.s.a", 100, 200, same=False), table("d.s.b", 100, 0)]
    assert model.completeness(tables) == 0.5
    assert not verdicts(tables)["completeness"].passed


def test_an_unreadable_table_fails_with_its_error() -> None:
    broken = TableComparison("d.s.t", 10, "42", error="invalid page in block 1")
    checks = verdicts([broken])
    assert not checks["accuracy"].passed and "invalid page in block 1" in checks["accuracy"].detail
    assert "0 of 10 rows" in checks["completeness"].detail


def test_no_tables_is_vacuously_complete() -> None:
    checks = verdicts([])
    assert checks["accuracy"].passed and checks["completeness"].passed


def probe(baseline: list[float], restored: list[float]) -> dict[str, Check]:
    timing = ProbeTiming("p", "postgres", baseline, restored)
    return {c.name.removeprefix("probe p "): c for c in model.probe_checks(timing, 0.05)}


def test_probe_within_tolerance_passes_and_slower_fails() -> None:
    assert all(c.passed for c in probe([0.100] * 5, [0.104] * 5).values())
    slow = probe([0.100] * 5, [0.110] * 5)
    assert not slow["response time"].passed and not slow["throughput"].passed
    assert "+10.0%" in slow["response time"].detail and "tolerance +5%" in slow["response time"].detail


def test_a_faster_restored_cluster_is_no_failure() -> None:
    assert all(c.passed for c in probe([0.100] * 5, [0.050] * 5).values())


def test_sub_millisecond_jitter_is_noise() -> None:
    checks = probe([0.0002, 0.0002, 0.0002], [0.0006, 0.0005, 0.0007])
    assert all(c.passed for c in checks.values())


def test_median_ignores_one_outlier_but_throughput_does_not() -> None:
    checks = probe([0.100] * 5, [0.100, 0.100, 0.100, 0.100, 0.600])
    assert checks["response time"].passed
    assert not checks["throughput"].passed


def test_a_probe_that_failed_fails_both_checks() -> None:
    timing = ProbeTiming("p", "postgres", [0.1], [], error="on the restored cluster: relation missing")
    checks = model.probe_checks(timing, 0.05)
    assert [c.passed for c in checks] == [False, False]
    assert all("relation missing" in c.detail for c in checks)


def test_rto_objective() -> None:
    assert model.rto_check(3599, 3600).passed
    assert not model.rto_check(3601, 3600).passed


def test_a_drill_without_checks_did_not_pass() -> None:
    result = DrillResult("main", "full", 0.0)
    assert result.decide() is False
    result.checks.append(Check("restore", True, "ok"))
    assert result.decide() is True


def sample(passed: bool = True) -> DrillResult:
    result = DrillResult("main", "full", 1_790_000_000.0, 1_790_000_100.0, restore_point="rp-1",
                         restore_point_lsn="0/3000000", backup_id="20260101-000000F",
                         restore_seconds=40.0, validation_seconds=20.0, rto_seconds=60.0,
                         rto_objective=3600.0, thresholds={"accuracy": 1.0, "completeness": 0.9999},
                         accuracy=1.0, completeness=1.0, writers_blocked_ms=3.0,
                         scratch="/var/tmp/d/rp-1", scratch_removed=True)
    result.checks = [Check("restore", True, "recovered"), Check("amcheck", passed, "a | b\nc")]
    result.tables = [table("postgres.public.t", 10, 10)]
    result.probes = [ProbeTiming("count", "postgres", [0.001, 0.002, 0.003], [0.002, 0.002, 0.002])]
    result.decide()
    return result


def test_report_has_summary_log_tables_probes_trend_and_method() -> None:
    result = sample(passed=False)
    past = [sample().to_json() | {"id": 7}]
    text = report.render(result, past)
    summary = text.split("## Executive summary", 1)[1].split("## Detailed log", 1)[0]
    assert "**Result: FAILED**" in summary
    assert "| Measured RTO | 60.0 s (objective 60.0 min: met) |" in summary
    assert "- **amcheck**: a \\| b c" in summary  # cells and items cannot be broken by the detail
    log = text.split("## Detailed log", 1)[1].split("## Tables compared", 1)[0]
    assert "| 1 | restore | pass |" in log and "| 2 | amcheck | **FAIL** |" in log
    assert "| postgres.public.t | 10 | 10 | match |" in text
    assert "| count | postgres | 2.00 ms | 2.00 ms |" in text
    trend = text.split("## Trend (2 drills)", 1)[1].split("## Method", 1)[0]
    rows = [line for line in trend.splitlines() if line.startswith("| ") and "Started" not in line]
    assert len(rows) == 2
    assert rows[0].startswith("| 7 |") and "| pass |" in rows[0] and "| none |" in rows[0]
    assert rows[1].startswith("| this drill |") and "| FAIL |" in rows[1] and "| amcheck |" in rows[1]
    assert "2.00 ms / 2.00 ms" in rows[0]
    assert "SHARE mode" in text.split("## Method", 1)[1]


def test_report_of_a_drill_that_never_restored() -> None:
    result = DrillResult("main", "partial", 1_790_000_000.0, 1_790_000_005.0)
    result.checks = [Check("scope", False, "critical tables not found on the source: postgres.a.b")]
    result.decide()
    text = report.render(result, [])
    assert "**Result: FAILED**" in text and "| Measured RTO | - " in text
    assert "No tables were compared." in text and "## Trend (1 drills)" in text
    assert report.headline(result) == "partial restore drill of cluster 'main' FAILED; failed: scope"


def test_result_round_trips_through_json() -> None:
    result = sample()
    again = DrillResult.from_json(result.to_json())
    assert again == result
    assert result.to_json()["probes"][0]["baseline_median"] == 0.002
