"""A drill's place in the catalog: its result, its report (with the trend of past drills)
and an event; and the one call the agent's job runner and the CLI both make."""

from __future__ import annotations

from typing import Any

from engine.catalog.store import Catalog
from engine.config.schema import Config
from engine.drill import report
from engine.drill.model import DrillResult

TREND_WINDOW = 90 * 86400.0  # the seed's historical_window
TREND_LIMIT = 50


def history(catalog: Catalog, result: DrillResult) -> list[dict[str, Any]]:
    """Past drills of the cluster within :data:`TREND_WINDOW`, oldest first, as result dicts."""
    past = [r for r in catalog.drills(result.cluster, None, TREND_LIMIT)
            if r.started_at >= result.started_at - TREND_WINDOW]
    return [dict(r.result, id=r.id) for r in sorted(past, key=lambda r: r.started_at)]


def record(catalog: Catalog, result: DrillResult, config: Config) -> tuple[int, str]:
    """Render the report and store the drill and an event (and a data-loss event when the
    restore lacked committed rows). Returns (drill id, report).

    A drill that never got a validated cluster has no RTO (null): it failed.
    """
    text = report.render(result, history(catalog, result))
    drill_id = catalog.add_drill(result.cluster, result.kind, result.started_at, result.finished_at,
                                 result.passed, result.rto_seconds, result.to_json(), text)
    catalog.add_event(result.cluster, "drill", report.headline(result),
                      severity="info" if result.passed else "error",
                      data={"drill_id": drill_id, "kind": result.kind, "passed": result.passed,
                            "rto_seconds": result.rto_seconds,
                            "failed_checks": [c.name for c in result.failed_checks()]})
    if result.completeness is not None and result.completeness < 1.0:
        from engine.catalog import data_loss

        lost = data_loss.Loss("drill_rows_lost", f"drill {drill_id}: the restore holds "
                              f"{result.completeness:.4%} of the source's rows")
        data_loss.record(catalog, config, result.cluster, [lost])
    return drill_id, text


def summary(result: DrillResult, drill_id: int) -> dict[str, Any]:
    """What a job records of a drill (the full result and report are in the drills table)."""
    failed = result.failed_checks()
    found: dict[str, Any] = {
        "drill_id": drill_id, "cluster": result.cluster, "kind": result.kind, "passed": result.passed,
        "rto_seconds": result.rto_seconds, "rto_objective": result.rto_objective,
        "restore_seconds": result.restore_seconds, "validation_seconds": result.validation_seconds,
        "accuracy": result.accuracy, "completeness": result.completeness,
        "restore_point": result.restore_point, "backup_id": result.backup_id,
        "checks": len(result.checks), "failed_checks": [{"name": c.name, "detail": c.detail} for c in failed],
        "scratch_removed": result.scratch_removed}
    if failed:
        found["error"] = report.headline(result)
    return found
