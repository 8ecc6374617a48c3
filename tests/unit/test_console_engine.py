"""The engine side of the ops console without a server: preview parameters, cancelling,
progress phases, the scheduler's hold during an in-place restore, the restore plan's checks
of the destination and port, and the CLI's audit trail."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from engine import jobs
from engine.agent.executor import Executor
from engine.agent.scheduler import Scheduler
from engine.catalog.store import CANCELLED, SUCCEEDED, WAITING, Catalog
from engine.config.schema import parse_config
from engine.context import Context
from engine.errors import JobError, UsageError
from engine.restore import preview
from engine.restore.plan import plan_restore
from engine.vocabulary import JOB_KINDS
from lifeboat.cli import main
from tests.unit.test_scheduling import _ts


def _config(tmp_path: Path, cluster_extra: str = "") -> object:
    (tmp_path / "repo").mkdir(exist_ok=True)
    return parse_config((
        f'os_user = "root"\n[repository]\npath = "{tmp_path}/repo"\n'
        f'[catalog]\npath = "{tmp_path}/catalog.db"\n'
        f'[clusters.main]\npgdata = "{tmp_path}/pgdata"\nport = 1\n{cluster_extra}').encode(), "test.toml")


# preview parameters ------------------------------------------------------------------------

def test_preview_is_a_job_kind_with_checked_identifiers() -> None:
    assert "preview" in JOB_KINDS and "preview" in jobs.PARAMS
    checked = jobs.validate_params("preview", {"table": "public.markers", "target": "time",
                                               "target_value": "2026-12-03 10:15:00+00"})
    assert checked["rows"] == 20 and checked["table"] == "public.markers"
    assert jobs.validate_params("preview", {"table": 'sales."Order Lines"', "rows": 200})["rows"] == 200
    for bad in ("markers", "public.markers; DROP TABLE x", "a.b.c.d", "public.", "public.1abc",
                "public.x--", ""):
        with pytest.raises(UsageError, match="table"):
            jobs.validate_params("preview", {"table": bad})
    for rows in (0, 201):
        with pytest.raises(UsageError, match="rows"):
            jobs.validate_params("preview", {"table": "public.t", "rows": rows})
    with pytest.raises(UsageError, match="time zone"):
        jobs.validate_params("preview", {"table": "public.t", "target": "time",
                                         "target_value": "2026-12-03 10:15:00"})
    with pytest.raises(UsageError, match="target_action"):  # a scratch copy always promotes
        jobs.validate_params("preview", {"table": "public.t", "target_action": "pause"})


def test_table_names_fold_and_quote_as_postgresql_does() -> None:
    assert preview.split_table("Public.Markers") == (None, "public", "markers")
    assert preview.split_table('app.sales."Order ""Lines"""') == ("app", "sales", 'Order "Lines"')
    with pytest.raises(UsageError):
        preview.split_table('public."unterminated')


# cancelling and progress ---------------------------------------------------------------------

def test_cancel_job_cancels_once_and_names_what_it_cannot(tmp_path: Path) -> None:
    config = _config(tmp_path)
    with Catalog.open(config) as catalog:
        job_id = jobs.enqueue(catalog, config, "backup", "main", {}, "alice")
        assert jobs.cancel_job(catalog, job_id, "bob@console").state == "queued"
        cancelled = catalog.job(job_id)
        assert cancelled is not None and cancelled.state == CANCELLED
        assert cancelled.error == "cancelled by bob@console"
        assert next(e.kind for e in catalog.events(job_id=job_id)) == "job_cancelled"
        with pytest.raises(JobError, match="already ended"):
            jobs.cancel_job(catalog, job_id, "bob")
        with pytest.raises(JobError, match="does not exist"):
            jobs.cancel_job(catalog, 9999, "bob")


def test_a_new_phase_is_written_at_once(tmp_path: Path) -> None:
    config = _config(tmp_path)
    with Catalog.open(config) as catalog:
        job_id = catalog.start_run("restore", "main", {}, "alice", 100, "cli@here", 1)
        report = jobs.ProgressReporter(catalog, job_id, in_bytes=True)
        report(10, 100, "writing files")
        report(100, 100, "writing files")  # within the second: not written
        assert catalog.byte_progress()[job_id] == (10, 100)
        report(100, 100, "replaying WAL")  # a new phase: written at once
        job = catalog.job(job_id)
        assert job is not None and job.message == "replaying WAL"
        assert catalog.byte_progress()[job_id] == (100, 100)


# the hold during an in-place restore --------------------------------------------------------

def test_scheduler_holds_a_cluster_during_an_in_place_restore(tmp_path: Path) -> None:
    config = _config(tmp_path, '[clusters.main.schedules.hourly]\ncron = "0 * * * *"\n')
    with Catalog.open(config) as catalog:
        scheduler = Scheduler(config, catalog)
        start = _ts("2026-11-25T12:30:00")
        scheduler.tick(start)
        # a restore elsewhere holds nothing; one into the cluster's own directory does
        elsewhere = jobs.enqueue(catalog, config, "restore", "main", {"pgdata": str(tmp_path / "x")}, "a")
        catalog.finish(elsewhere, SUCCEEDED, {})
        own = str(tmp_path / "pgdata" / ".." / "pgdata")  # the same directory, spelled otherwise
        restore = jobs.enqueue(catalog, config, "restore", "main", {"pgdata": own, "force": True}, "admin")
        assert [catalog.job(i).schedule for i in scheduler.tick(start + 3600)] == []
        assert scheduler.tick(start + 2 * 3600) == []
        held = catalog.events(kind="schedule_held")
        assert len(held) == 1 and f"restore job {restore}" in held[0].message
        assert not [j for j in catalog.jobs(cluster="main") if j.schedule == "hourly"]
        catalog.mark_running(restore, "agent", 1)
        assert scheduler.tick(start + 2.5 * 3600) == []  # running: still held
        catalog.finish(restore, SUCCEEDED, {})
        fired = scheduler.tick(start + 2.6 * 3600)
        assert [catalog.job(i).schedule for i in fired] == ["hourly"]  # once, not per missed fire
        released = catalog.events(kind="schedule_released")
        assert released and "3 fire(s)" in released[0].message  # 13:00, 14:00, 15:00


def test_executor_holds_queued_scheduled_jobs_during_an_in_place_restore(tmp_path: Path) -> None:
    config = _config(tmp_path, '[clusters.main.schedules.hourly]\ncron = "0 * * * *"\n')
    with Catalog.open(config) as catalog:
        scheduled = jobs.enqueue(catalog, config, "backup", "main", {}, "schedule:hourly", schedule="hourly")
        restore = jobs.enqueue(catalog, config, "restore", "main",
                               {"pgdata": str(tmp_path / "pgdata"), "force": True}, "admin")
        catalog.mark_running(restore, "elsewhere", 1)  # another agent runs it
        executor = Executor(config, catalog, ["false"], tmp_path / "logs")
        executor.tick()
        job = catalog.job(scheduled)
        assert job is not None and job.state == WAITING and f"restore job {restore}" in job.message
        assert not executor.running
        catalog.finish(restore, SUCCEEDED, {})
        executor.tick()
        assert scheduled in executor.running  # released: it starts
        executor.stop()


# the plan's checks that need no repository ----------------------------------------------------

def test_plan_names_a_non_empty_destination_and_a_busy_port_without_raising(tmp_path: Path) -> None:
    config = _config(tmp_path)
    target = tmp_path / "restored"
    target.mkdir()
    (target / "somefile").write_text("x")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        params = jobs.restore_params({"pgdata": str(target), "start": True, "port": port,
                                      "target": "time", "target_value": "yesterday"})
        plan = plan_restore(Context(config, tmp_path / "test.toml", "main"), params)
    assert not plan.runnable
    text = "\n".join(plan.problems)
    assert f"destination {target} exists and is not empty" in text
    assert f"port {port} is in use" in text and plan.port_free is False
    assert "is not a time" in text  # the target, as a problem too
    assert plan.destination_state == "not empty" and not plan.in_place
    data = json.loads(json.dumps(plan.to_json()))
    assert data["runnable"] is False and data["problems"] == plan.problems


def test_plan_of_the_clusters_own_directory_is_in_place(tmp_path: Path) -> None:
    config = _config(tmp_path)
    (tmp_path / "pgdata").mkdir()
    plan = plan_restore(Context(config, tmp_path / "test.toml", "main"),
                        jobs.restore_params({"pgdata": str(tmp_path / "pgdata")}))
    assert plan.in_place and plan.destination_state == "the cluster's own data directory"
    assert not plan.server_running


# the CLI's audit trail ----------------------------------------------------------------------

def _audit(capsys: pytest.CaptureFixture[str], config: Path) -> list[dict[str, object]]:
    capsys.readouterr()
    assert main(["--config", str(config), "audit", "--output", "json"]) == 0
    return list(json.loads(capsys.readouterr().out)["entries"])


def test_cli_commands_that_change_something_are_audited(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "lifeboat.toml"
    (tmp_path / "repo").mkdir()
    config.write_text(f'os_user = "root"\n[repository]\npath = "{tmp_path}/repo"\n[catalog]\npath = '
                      f'"{tmp_path}/catalog.db"\n[clusters.main]\npgdata = "{tmp_path}/pgdata"\nport = 1\n')
    assert main(["--config", str(config), "enqueue", "backup", "--type", "incr",
                 "--requested-by", "carol"]) == 0
    assert main(["--config", str(config), "cancel", "4242"]) == 1  # no such job: refused
    assert main(["--config", str(config), "enqueue", "restore", "--pgdata", "/x",
                 "--target-time", "not a time"]) == 2
    assert main(["--config", str(config), "jobs"]) == 0  # reads only: not audited
    assert main(["--config", str(config), "restore", "--pgdata", str(tmp_path / "r"), "--plan"]) == 1
    entries = _audit(capsys, config)
    assert [(e["action"], e["result"], e["source"]) for e in entries] == [
        ("enqueue", "refused", "cli"), ("cancel", "refused", "cli"), ("enqueue", "queued", "cli")]
    queued = entries[2]
    assert queued["actor"] == "carol" and queued["cluster"] == "main"
    assert queued["params"]["kind"] == "backup" and queued["params"]["type"] == "incr"  # type: ignore[index]
    assert isinstance(queued["params"]["job"], int)  # type: ignore[index]
    assert "4242" in str(entries[1]["detail"]) and entries[1]["actor"].endswith("@cli")  # type: ignore[union-attr]


def test_an_unwritable_catalog_never_fails_the_command(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "lifeboat.toml"
    (tmp_path / "repo").mkdir()
    config.write_text(f'os_user = "root"\n[repository]\npath = "{tmp_path}/repo"\n[catalog]\npath = '
                      f'"{tmp_path}/lifeboat.toml/catalog.db"\n[clusters.main]\npgdata = "{tmp_path}/p"\n')
    code = main(["--config", str(config), "cancel", "1"])
    err = capsys.readouterr().err
    assert code == 1  # the command's own outcome (it needs the catalog itself), not the audit's
    assert "cancel is not in the audit trail" in err and "Traceback" not in err
