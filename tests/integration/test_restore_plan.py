"""The console's engine side with real clusters and backups: the restore plan (and what the
restore then really used), its problems, previews in scratch clusters, a restore in place,
and the CLI's audit trail."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from engine.context import open_context
from engine.restore.plan import named_points, recovery_windows
from tests.integration.agent import configure, jobs
from tests.integration.pg import Lifeboat, free_port


def _now(env: Lifeboat) -> str:
    return str(env.cluster.value("SELECT clock_timestamp()::text"))


@pytest.fixture
def written(lifeboat: Lifeboat) -> dict[str, Any]:
    """A catalog and a scratch directory in the workspace; before the backup: a time; then a
    backup, row 1, a time, row 2, archived."""
    scratch = lifeboat.workspace.path("scratch")
    configure(lifeboat, cluster_extra=f'[clusters.main.drills]\nscratch_dir = "{scratch}"\n')
    source = lifeboat.cluster
    source.sql("CREATE TABLE markers (id int primary key, note text)")
    before_backup = _now(lifeboat)
    time.sleep(0.3)
    backup = lifeboat.run("backup").stdout.split()[1]
    source.sql("INSERT INTO markers VALUES (1, 'before')")
    time.sleep(0.3)
    between = _now(lifeboat)
    time.sleep(0.3)
    source.sql("INSERT INTO markers VALUES (2, 'after')")
    lifeboat.switch_and_archive()
    return {"backup": backup, "before_backup": before_backup, "between": between, "scratch": scratch}


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace(" ", "T", 1))


def _plan(env: Lifeboat, *args: str) -> tuple[int, dict[str, Any]]:
    done = env.run("restore", *args, "--plan", "--output", "json", check=False)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


def test_plan_names_the_backup_and_wal_the_restore_then_uses(lifeboat: Lifeboat,
                                                             written: dict[str, Any]) -> None:
    info = json.loads(lifeboat.run("info", "--output", "json").stdout)["clusters"][0]
    backup = next(b for b in info["backups"] if b["id"] == written["backup"])
    jobs_before = len(jobs(lifeboat))
    destination = lifeboat.workspace.path("planned", create=False)
    code, plan = _plan(lifeboat, "--pgdata", str(destination), "--target-time", written["between"],
                       "--start", "--port", str(free_port()))
    assert code == 0 and plan["runnable"] is True, plan["problems"]
    assert plan["backup_id"] == written["backup"] and plan["backup_type"] == "full"
    assert plan["wal_first"] == backup["start_wal"]
    assert plan["wal_segments"] >= 1 and plan["wal_bytes"] > 0
    assert plan["restore_bytes"] == backup["size_bytes"]
    assert plan["destination_state"] == "missing" and plan["in_place"] is False
    assert plan["pg_version"] == plan["bin_version"] == backup["pg_version"] // 10000
    assert plan["port_free"] is True and plan["expected_seconds"] > 0
    assert "restore rate assumed" in plan["expected_basis"]  # nothing restored yet
    assert len(jobs(lifeboat)) == jobs_before  # a plan runs nothing
    text = lifeboat.run("restore", "--pgdata", str(destination), "--target-time", written["between"],
                        "--plan")
    assert "RUNNABLE" in text.stdout and written["backup"] in text.stdout
    # the window the console's picker is bounded by, and the named points
    lifeboat.run("restore-point", "before-cleanup")
    with open_context(lifeboat.config, "main") as ctx:
        windows = recovery_windows(ctx, "main")
        points = named_points(ctx, "main")
    assert [w.timeline for w in windows] == [1] and windows[0].first_backup == written["backup"]
    assert windows[0].start < _moment(written["between"]) < windows[0].end
    assert _moment(written["before_backup"]) < windows[0].start
    assert windows[0].end <= datetime.now(UTC) and "pg_waldump" in windows[0].end_basis
    assert [p.name for p in points] == ["before-cleanup"] and points[0].lsn
    # the restore then uses exactly that backup, and reads WAL within the planned range
    restored, done = lifeboat.restore("--target-time", written["between"])
    assert [r[0] for r in restored.sql("SELECT id FROM markers")] == [1]
    result = next(j["result"] for j in jobs(lifeboat) if j["kind"] == "restore")
    assert result["backup"] == plan["backup_id"]
    log = Path(re.search(r"server log: (\S+)", done.stdout).group(1))  # type: ignore[union-attr]
    read = re.findall(r'restored log file "([0-9A-F]{24})" from archive', log.read_text())
    assert read and read[0] == plan["wal_first"] and max(read) <= plan["wal_last"], (read, plan)
    # the next plan's estimate is measured from that restore
    _code, again = _plan(lifeboat, "--pgdata", str(destination), "--target", "latest")
    assert "measured by 1 restore" in again["expected_basis"]


def test_plan_problems_are_clear_and_queue_nothing(lifeboat: Lifeboat, written: dict[str, Any]) -> None:
    new = str(lifeboat.workspace.path("new", create=False))
    jobs_before = len(jobs(lifeboat))
    code, plan = _plan(lifeboat, "--pgdata", new, "--target-time", written["before_backup"])
    assert code == 1 and any("no backup finished before" in p for p in plan["problems"]), plan
    future = "2999-01-01 00:00:00+00"
    code, plan = _plan(lifeboat, "--pgdata", new, "--target-time", future)
    assert code == 1 and any("after the last transaction the archive holds" in p
                             for p in plan["problems"]), plan
    occupied = lifeboat.workspace.path("occupied")
    (occupied / "keep.txt").write_text("mine")
    code, plan = _plan(lifeboat, "--pgdata", str(occupied))
    assert code == 1 and plan["destination_state"] == "not empty"
    assert any(f"destination {occupied} exists and is not empty" in p for p in plan["problems"])
    code, plan = _plan(lifeboat, "--pgdata", new, "--start", "--port", str(lifeboat.cluster.port))
    assert code == 1 and plan["port_free"] is False
    assert any(f"port {lifeboat.cluster.port} is in use" in p for p in plan["problems"])
    code, plan = _plan(lifeboat, "--pgdata", str(lifeboat.cluster.pgdata))
    assert code == 1 and plan["in_place"] is True and plan["server_running"] is True
    assert any("stop the server first" in p for p in plan["problems"])
    # a tablespace that would land on the cluster's own location, unless it is mapped
    location = lifeboat.workspace.path("tablespace")
    lifeboat.cluster.sql(f"CREATE TABLESPACE extra LOCATION '{location}'")
    lifeboat.cluster.sql("CREATE TABLE spaced (id int) TABLESPACE extra")
    lifeboat.run("backup")
    code, plan = _plan(lifeboat, "--pgdata", new)
    oid = plan["tablespaces"][0]["oid"]
    assert code == 1 and plan["tablespaces"][0]["ok"] is False
    assert any(f"--tablespace-map {oid}=" in p for p in plan["problems"])
    code, plan = _plan(lifeboat, "--pgdata", new, "--tablespace-map",
                       f"{oid}={lifeboat.workspace.path('ts-new', create=False)}")
    assert code == 0 and plan["tablespaces"][0]["ok"] is True, plan["problems"]
    assert len(jobs(lifeboat)) == jobs_before + 1  # only the backup: no plan made a job
    # the audit trail: the backups (ok), a restore that failed, an enqueue; plans are not in it
    assert lifeboat.run("restore", "--pgdata", str(occupied), check=False).returncode == 1
    job_id = int(lifeboat.run("enqueue", "verify", "--requested-by", "dana").stdout.strip())
    entries = json.loads(lifeboat.run("audit", "--output", "json").stdout)["entries"]
    assert [(e["action"], e["result"]) for e in entries] == [
        ("enqueue", "queued"), ("restore", "failed"), ("backup", "ok"), ("backup", "ok")]
    assert entries[0]["actor"] == "dana" and entries[0]["params"]["job"] == job_id
    assert "not empty" in entries[1]["detail"] and entries[1]["cluster"] == "main"
    assert entries[2]["actor"].endswith("@cli") and entries[2]["source"] == "cli"


def test_preview_shows_the_rows_at_the_point_and_removes_its_scratch(lifeboat: Lifeboat,
                                                                    written: dict[str, Any]) -> None:
    done = lifeboat.run("preview", "--table", "public.markers", "--target-time", written["between"],
                        "--output", "json")
    result = json.loads(done.stdout)
    assert result["row_count"] == 1 and result["columns"] == ["id", "note"]
    assert result["rows"] == [["1", "before"]] and result["ordered_by"] == ["id"]
    assert result["point_reached"]["lsn"] and result["backup"] == written["backup"]
    assert result["scratch_removed"] is True
    assert list(written["scratch"].iterdir()) == []
    recorded = next(j for j in jobs(lifeboat) if j["kind"] == "preview")
    assert recorded["state"] == "succeeded" and recorded["result"]["rows"] == [["1", "before"]]
    missing = lifeboat.run("preview", "--table", "public.nosuch", "--target-time", written["between"],
                           check=False)
    assert missing.returncode == 1
    assert "table public.nosuch does not exist in database 'postgres'" in missing.stderr
    assert list(written["scratch"].iterdir()) == []
    failed = next(j for j in jobs(lifeboat) if j["kind"] == "preview")
    assert failed["state"] == "failed" and "does not exist" in failed["error"]


def test_restore_in_place_stops_the_server_and_restores_over_it(lifeboat: Lifeboat,
                                                               written: dict[str, Any]) -> None:
    source = lifeboat.cluster
    own = ["--pgdata", str(source.pgdata), "--target-time", written["between"], "--force", "--start",
           "--port", str(source.port), "--archive-mode", "off"]
    code, plan = _plan(lifeboat, *own)
    assert code == 1 and any("stop the server first" in p for p in plan["problems"])
    code, plan = _plan(lifeboat, *own, "--stop-server")
    assert code == 0, plan["problems"]
    assert plan["in_place"] and plan["destination_state"] == "the cluster's own data directory"
    assert any("will be stopped" in w for w in plan["warnings"])
    # restored without --start here: the test cluster keeps its socket (and the socket's lock
    # file, which the backup holds) in its data directory, and the stopped postmaster stays a
    # zombie in this container (no init reaps it), so the copied lock file would look alive
    files_only = [a for a in own if a != "--start"]
    done = lifeboat.run("restore", *files_only, "--stop-server")
    assert "was stopped for the restore in place" in done.stderr
    assert not (source.pgdata / "postmaster.pid").exists()
    for lock in source.pgdata.glob(".s.PGSQL.*.lock"):
        lock.unlink()
    source.start()
    source.wait_promoted()
    assert [r[0] for r in source.sql("SELECT id FROM markers ORDER BY id")] == [1]
