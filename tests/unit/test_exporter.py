"""The exporter's rendering and what it reads from the catalog and the repository, on a
real SQLite catalog and posix repository (no server: PostgreSQL is 'down' here)."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from collectors import sources
from collectors.exporter import Refresher, registry_for
from collectors.metrics import METRICS, RECOVERY_BUCKETS
from collectors.snapshot import Histogram, Snapshot
from engine import jobs
from engine.catalog import data_loss
from engine.catalog.store import Catalog
from engine.config.schema import Config
from engine.errors import RecoveryShortfallError


def _config(tmp_path: Path, extra: dict | None = None) -> Config:
    cluster = {"pgdata": str(tmp_path / "pgdata"), "host": str(tmp_path / "nosocket"),
               "service": "shop", "connect_timeout": "1s"}
    return Config.model_validate({
        "repository": {"path": str(tmp_path / "repo")},
        "catalog": {"path": str(tmp_path / "catalog.sqlite3")},
        "exporter": {"success_rate_window": "1h", "query_timeout": "1s"},
        "clusters": {"main": cluster | (extra or {})}})


def _samples(snapshot: Snapshot) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    class _Fixed:
        def snapshot(self) -> Snapshot:
            return snapshot

    text = generate_latest(registry_for(_Fixed())).decode()  # type: ignore[arg-type]
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def _finished(catalog: Catalog, kind: str, state: str, params: dict, result: dict | None = None,
              error: str | None = None, finished_ago: float = 0.0, schedule: str | None = None) -> int:
    job_id = catalog.enqueue(kind, "main", params, "test", 50, schedule=schedule)
    catalog.mark_running(job_id, "agent", None)
    catalog.finish(job_id, state, result, error)
    if finished_ago:
        catalog.db.execute("UPDATE jobs SET finished_at = ? WHERE id = ?",
                           (time.time() - finished_ago, job_id))
    return job_id


def test_histogram_buckets_are_cumulative() -> None:
    hist = Histogram.of((30.0, 60.0, 300.0), [10, 30, 45, 1000])
    assert hist.buckets == [2, 3, 3] and hist.count == 4 and hist.total == 1085


def test_every_metric_is_rendered_with_its_declared_type_and_labels() -> None:
    snapshot = Snapshot()
    for number, metric in enumerate(METRICS, 1):  # each series with its own labels and value
        labels = {label: f"{label}-{number}" for label in metric.labels}
        if metric.kind == "histogram":
            snapshot.histogram(metric.name, [metric.buckets[0] / 2, metric.buckets[-1] * 2], **labels)
        else:
            snapshot.set(metric.name, number, **labels)
    with pytest.raises(ValueError, match="takes labels"):
        snapshot.set("lifeboat_up", 1, cluster="main", replica="x")
    with pytest.raises(KeyError):
        snapshot.set("lifeboat_not_defined", 1)

    class _Fixed:
        def snapshot(self) -> Snapshot:
            return snapshot

    text = generate_latest(registry_for(_Fixed())).decode()  # type: ignore[arg-type]
    families = {family.name: family for family in text_string_to_metric_families(text)}
    assert len(families) == len(METRICS)
    for number, metric in enumerate(METRICS, 1):
        family = families.get(metric.name.removesuffix("_total")) or families.get(metric.name)
        assert family is not None, f"{metric.name} is not rendered"
        assert (family.type, family.documentation) == (metric.kind, metric.help), metric.name
        labels = {label: f"{label}-{number}" for label in metric.labels}
        found = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples}
        if metric.kind != "histogram":
            assert found == {(metric.name, tuple(sorted(labels.items()))): number}, metric.name
            continue
        key = tuple(sorted(labels.items()))
        bounds = [repr(float(b)) for b in metric.buckets] + ["+Inf"]
        expected = {(f"{metric.name}_bucket", tuple(sorted((labels | {"le": le}).items()))):
                    (1.0 if i < len(metric.buckets) else 2.0) for i, le in enumerate(bounds)}
        expected[(f"{metric.name}_count", key)] = 2
        expected[(f"{metric.name}_sum", key)] = metric.buckets[0] / 2 + metric.buckets[-1] * 2
        assert found == expected, metric.name
    assert RECOVERY_BUCKETS[:6] == (30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0)  # the seed's
    names = [m.name for m in METRICS]
    assert len(names) == len(set(names)) and all(n.startswith("lifeboat_") for n in names)
    assert all(m.name.endswith("_total") for m in METRICS if m.kind == "counter")


def test_recovery_histogram_buckets_are_cumulative_when_rendered() -> None:
    snapshot = Snapshot()
    snapshot.histogram("lifeboat_recovery_duration_seconds", [45.0, 1000.0], cluster="main",
                       type="pitr", size_class="small", **{"class": "critical"})
    found = _samples(snapshot)
    labels = (("class", "critical"), ("cluster", "main"), ("size_class", "small"), ("type", "pitr"))
    buckets = {dict(k[1])["le"]: v for k, v in found.items()
               if k[0] == "lifeboat_recovery_duration_seconds_bucket"}
    assert buckets == {"30.0": 0, "60.0": 1, "300.0": 1, "900.0": 1, "1800.0": 2, "3600.0": 2,
                       "14400.0": 2, "86400.0": 2, "+Inf": 2}
    assert found[("lifeboat_recovery_duration_seconds_count", labels)] == 2
    assert found[("lifeboat_recovery_duration_seconds_sum", labels)] == 1045


def test_catalog_counts_backups_success_rate_schedules_and_progress(tmp_path: Path) -> None:
    config = _config(tmp_path)
    with Catalog.open(config) as catalog:
        _finished(catalog, "backup", "succeeded", {"type": "full"})
        _finished(catalog, "backup", "failed", {"type": "full"}, error="boom")
        _finished(catalog, "backup", "failed", {"type": "full"}, error="old", finished_ago=7200)
        _finished(catalog, "backup", "succeeded", {"type": "incr"}, schedule="nightly")
        running = catalog.start_run("restore", "main", {"pgdata": "/x"}, "me@cli", 100, "cli@h:1", 1)
        catalog.set_progress(running, 40, "restoring", (400, 1000))
        snapshot = Snapshot()
        sources.catalog(snapshot, config, catalog, time.time())
    values = snapshot.values
    assert values["lifeboat_backups_total"][("main", "full", "failed")] == 2
    assert values["lifeboat_backups_total"][("main", "full", "succeeded")] == 1
    assert values["lifeboat_backups_total"][("main", "diff", "cancelled")] == 0  # known: starts at 0
    assert values["lifeboat_backup_success_ratio"][("main", "full")] == 0.5  # the old failure is outside 1h
    assert values["lifeboat_backup_success_ratio"][("main", "incr")] == 1.0
    assert math.isnan(values["lifeboat_backup_success_ratio"][("main", "diff")])
    # the newest failure by its end, not by its row: the "old" one was recorded last
    assert time.time() - values["lifeboat_backup_last_failure_timestamp_seconds"][("main", "full")] < 60
    assert values["lifeboat_backup_last_failure_timestamp_seconds"][("main", "incr")] == 0
    assert values["lifeboat_jobs_running"][("main", "restore")] == 1
    assert values["lifeboat_job_progress_bytes"][("main", "restore")] == 400
    assert values["lifeboat_job_size_bytes"][("main", "restore")] == 1000
    assert values["lifeboat_job_progress_bytes"][("main", "backup")] == 0
    assert values["lifeboat_schedule_attempts_total"][("main", "drill-full", "failed")] == 0
    assert values["lifeboat_rpo_objective_seconds"][("main", "analytical")] == 3600
    assert math.isnan(values["lifeboat_rpo_exposure_seconds"][("main", "analytical")])


def test_recoveries_fill_the_histogram_and_the_target_gap(tmp_path: Path) -> None:
    config = _config(tmp_path, {"class": "critical"})
    with Catalog.open(config) as catalog:
        _finished(catalog, "restore", "succeeded", {"pgdata": "/a"},
                  {"seconds": 42.0, "bytes": 5, "backup_bytes": 20 * 2**30, "target": "latest"})
        _finished(catalog, "restore", "succeeded", {"pgdata": "/b"},
                  {"seconds": 1200.0, "bytes": 5, "backup_bytes": 100, "target": "time",
                   "target_gap_seconds": 2.5, "target_gap_bytes": None})
        _finished(catalog, "restore", "succeeded", {"pgdata": "/d"},
                  {"seconds": 3.0, "bytes": 5, "backup_bytes": 100, "target": "lsn",
                   "target_gap_seconds": None, "target_gap_bytes": -96})
        _finished(catalog, "restore", "failed", {"pgdata": "/c"}, error="no")
        catalog.add_drill("main", "partial", 100.0, 110.0, True, 9.0,
                          {"timing": {"restore_bytes": 10}, "checks": [{"passed": True}]}, "report")
        snapshot = Snapshot()
        sources.catalog(snapshot, config, catalog, time.time())
    hists = snapshot.histograms["lifeboat_recovery_duration_seconds"]
    assert hists[("main", "full", "medium", "critical")].count == 1
    over_sla = hists[("main", "pitr", "small", "critical")]
    assert over_sla.count == 2 and over_sla.buckets[3] == 1 and over_sla.buckets[4] == 2  # 900 < 1200 <= 1800
    assert hists[("main", "drill_partial", "small", "critical")].count == 1
    assert hists[("main", "drill_full", "xlarge", "critical")].count == 0  # every series starts at 0
    assert len(hists) == 4 * 4
    # each gauge holds the newest restore that measured it, whatever restored since
    assert snapshot.values["lifeboat_restore_target_gap_seconds"][("main",)] == 2.5
    assert snapshot.values["lifeboat_restore_target_gap_bytes"][("main",)] == -96
    drills = snapshot.values
    assert drills["lifeboat_drills_total"][("main", "partial", "passed")] == 1
    assert drills["lifeboat_drill_last_passed"][("main", "partial")] == 1
    assert drills["lifeboat_drill_last_duration_seconds"][("main", "partial")] == 10
    assert drills["lifeboat_drill_last_success_timestamp_seconds"][("main", "full")] == 0
    assert ("main", "full") not in drills["lifeboat_drill_last_passed"]


def test_data_loss_events_are_recorded_where_found_and_counted(tmp_path: Path) -> None:
    config = _config(tmp_path)
    with Catalog.open(config) as catalog:
        job = catalog.start_run("restore", "main", {}, "me", 100, "cli@h:1", 1)
        jobs.record_outcome(catalog, config, "restore", "main", job,
                            error=RecoveryShortfallError("recovery stopped at 0/5000000", "wal_gap"))
        job = catalog.start_run("verify", "main", {}, "me", 40, "cli@h:1", 1)
        problems = [{"kind": "block", "item": f"base/1/{i}", "detail": "checksum"} for i in range(5)]
        jobs.record_outcome(catalog, config, "verify", "main", job,
                            {"problems": problems}, ok=False)
        job = catalog.start_run("backup", "main", {"type": "full"}, "me", 50, "cli@h:1", 1)
        jobs.record_outcome(catalog, config, "backup", "main", job, {"type": "full"})  # nothing lost
        snapshot = Snapshot()
        sources.catalog(snapshot, config, catalog, time.time())
        states = [j.state for j in catalog.jobs()]
    counts = snapshot.values["lifeboat_data_loss_events_total"]
    assert counts[("main", "wal_gap", "critical", "shop")] == 1
    assert counts[("main", "corrupt_block", "critical", "shop")] == 1  # one event for five blocks
    assert counts[("main", "restore_short_of_target", "critical", "shop")] == 0
    assert counts[("main", "drill_rows_lost", "critical", "shop")] == 0
    assert states == ["succeeded", "failed", "failed"]
    assert data_loss.from_result("backup", {"corrupt_pages": 2, "corrupt_files": ["base/1/2"]})[0].cause \
        == "corrupt_block"
    found = data_loss.from_result("verify", {"problems": [
        {"kind": "unknown", "item": "notes.txt"}, {"kind": "verify-state", "item": "verified.json"},
        {"kind": "backup-history", "item": "000000010000000000000003.00000028.backup"},
        {"kind": "pack", "item": "ab12"}, {"kind": "cluster", "item": "cluster.json"}]})
    assert [(loss.cause, loss.detail) for loss in found] == [
        ("wal_gap", "verify found 1: backup-history 000000010000000000000003.00000028.backup"),
        ("corrupt_block", "verify found 2: pack ab12, cluster cluster.json")]  # nothing lost to the others


def test_a_cli_run_is_recorded_with_its_outcome_and_a_missing_catalog_only_warns(tmp_path: Path) -> None:
    config = _config(tmp_path)
    with jobs.recorded_run(config, "backup", "main", {"type": "full"}, "me@cli", print) as run:
        run.progress(10, 100, "copying")
        run.outcome = jobs.Outcome("backup", None, {"backup": "x", "type": "full"})
    with pytest.raises(RuntimeError), jobs.recorded_run(config, "backup", "main", {"type": "diff"},
                                                         "me@cli", print):
        raise RuntimeError("disk full")
    with Catalog.open(config) as catalog:
        recorded = catalog.jobs()
    assert [(j.params["type"], j.state, j.requested_by) for j in recorded] == [
        ("diff", "failed", "me@cli"), ("full", "succeeded", "me@cli")]
    assert "disk full" in recorded[0].error and recorded[1].agent.startswith("cli@")
    (tmp_path / "blocked").write_text("a file where the catalog's directory should be")
    unwritable = config.model_copy(update={"catalog": config.catalog.model_copy(
        update={"path": tmp_path / "blocked" / "catalog.sqlite3"})})
    warnings: list[str] = []
    with jobs.recorded_run(unwritable, "backup", "main", {}, "me@cli", warnings.append) as run:
        run.progress(1, 2, "")
    assert warnings and "not recorded in the catalog" in warnings[0]


def test_a_refresh_with_the_server_down_still_answers(tmp_path: Path, storage) -> None:
    """PostgreSQL cannot be reached (no socket): lifeboat_up 0, the rest still exported."""
    config = _config(tmp_path)  # its repository is the storage fixture's (tmp_path/repo)
    refresher = Refresher(config, storage, measure_objectives=False)
    started = time.monotonic()
    refresher.refresh()
    assert time.monotonic() - started < 5
    found = _samples(refresher.snapshot())
    assert found[("lifeboat_up", (("cluster", "main"),))] == 0
    assert found[("lifeboat_catalog_up", ())] == 1 and found[("lifeboat_repository_up", ())] == 1
    full = (("cluster", "main"), ("type", "full"))
    assert found[("lifeboat_backup_last_success_timestamp_seconds", full)] == 0
    assert found[("lifeboat_backups_total", (("cluster", "main"), ("result", "succeeded"),
                                             ("type", "full")))] == 0
    assert found[("lifeboat_drill_period_seconds", (("cluster", "main"), ("kind", "partial")))] == 7 * 86400
    assert ("lifeboat_host_load1", ()) in found
    assert found[("lifeboat_exporter_refresh_errors_total", (("part", "postgres"),))] == 0


def test_segments_behind_counts_across_a_log_boundary_and_on_one_timeline_only() -> None:
    mib16 = 16 * 2**20
    assert sources.segments_behind(0, "0000000100000000000000FF", "000000010000000100000000", mib16) == 0
    assert sources.segments_behind(0, "0000000100000000000000FE", "000000010000000100000001", mib16) == 2
    assert sources.segments_behind(3, "0000000100000000000000FE", "0000000100000000000000FF", mib16) == 3
    assert sources.segments_behind(1, "00000002.history", "000000020000000000000005", mib16) == 1
    assert sources.segments_behind(0, "000000010000000000000004", "000000020000000000000009", mib16) == 0
    assert sources.segments_behind(2, None, None, mib16) == 2  # a standby: no current segment
    one_gib = 2**30  # 4 segments per log id
    assert sources.segments_behind(0, "000000010000000000000003", "000000010000000100000000", one_gib) == 0


def test_alert_metrics_read_the_catalogs_alert_tables(tmp_path: Path) -> None:
    config = _config(tmp_path)
    config = Config.model_validate(config.model_dump(mode="json", by_alias=True) | {"alerts": {
        "slack": {"webhook_url": "https://hooks.example/T/B/x"},
        "rules": {"backup_failure": {"channels": ["slack"]},
                  "replication_delay": {"auto_remediation": {"enabled": False}},
                  "streaming_receiver_down": {"auto_remediation": {"enabled": False}}}}})
    now = time.time()
    with Catalog.open(config) as catalog:
        book = catalog.alerts

        def alert(fingerprint: str, rule: str, severity: str, state: str,
                  cluster: str | None = "main") -> int:
            return book.create(fingerprint, rule, "Lifeboat" + rule, cluster, severity, {}, {}, state, 1.0,
                               "prometheus", now - 60, now - 60)

        first = alert("a1", "backup_failure", "critical", "firing")
        alert("a2", "backup_failure", "critical", "firing")
        alert("a3", "replication_delay", "warning", "acknowledged")
        alert("a4", "metrics_absent", "critical", "silenced", cluster=None)
        alert("a5", "copy_lag_high", "warning", "pending")  # not firing yet
        gone = alert("a6", "data_loss", "critical", "firing")
        book.update(gone, state="resolved", resolved_at=now)  # resolved: not open
        for outcome in ("ok", "ok", "failed"):
            book.add_notification(first, "slack", "firing", outcome, 1, "")
        # a channel not configured any more: what it was sent is still counted
        book.add_notification(first, "pagerduty", "firing", "retryable", 3, "")
        for result in ("ok", "timeout"):
            book.add_attempt(first, 1, "retry_backup_operation", now - 5, now, result, "")
        book.add_attempt(first, 1, "escalate_to_dba", now - 5, now, "skipped", "")
        snapshot = Snapshot()
        sources.catalog(snapshot, config, catalog, now)
    found = _samples(snapshot)

    def firing(cluster: str, rule: str, severity: str, state: str) -> tuple[str, tuple[tuple[str, str], ...]]:
        return ("lifeboat_alerts_firing", (("cluster", cluster), ("rule", rule), ("severity", severity),
                                           ("state", state)))

    alerts = {k: v for k, v in found.items() if k[0] == "lifeboat_alerts_firing"}
    assert alerts == {firing("main", "backup_failure", "critical", "firing"): 2,
                      firing("main", "replication_delay", "warning", "acknowledged"): 1,
                      firing("", "metrics_absent", "critical", "silenced"): 1}
    notifications = {dict(k[1])["channel"] + "/" + dict(k[1])["outcome"]: v for k, v in found.items()
                     if k[0] == "lifeboat_alert_notifications_total"}
    assert notifications == {"slack/ok": 2, "slack/failed": 1, "slack/retryable": 0, "slack/skipped": 0,
                             "pagerduty/retryable": 1}
    attempts = {dict(k[1])["action"] + "/" + dict(k[1])["result"]: v for k, v in found.items()
                if k[0] == "lifeboat_remediation_attempts_total"}
    assert attempts["retry_backup_operation/ok"] == 1 and attempts["retry_backup_operation/timeout"] == 1
    assert attempts["escalate_to_dba/skipped"] == 1
    assert attempts["check_disk_space/ok"] == 0  # an action of a rule that remediates starts at 0
    assert attempts["check_network_connectivity/failed"] == 0  # postgres_down's
    assert "restart_replication/ok" not in attempts  # the replication rules' (not remediating here)
