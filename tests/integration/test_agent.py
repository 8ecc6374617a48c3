"""The agent with a real cluster: enqueued and scheduled jobs, priorities, limits,
max_duration, throttling and jobs that survive an agent restart."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest

from tests.integration.agent import (
    configure,
    enqueue,
    events,
    job,
    jobs,
    running_agent,
    slow_archiving,
    wait_for,
    wait_job,
    wait_running,
)
from tests.integration.pg import Lifeboat, Workspace


@pytest.fixture
def env(workspace: Workspace) -> Iterator[Lifeboat]:
    lifeboat = Lifeboat.create(workspace)
    try:
        configure(lifeboat)
        lifeboat.cluster.start()
        lifeboat.run("init")
        yield lifeboat
    finally:
        lifeboat.cleanup()


def _backup_ids(env: Lifeboat) -> list[str]:
    info = json.loads(env.run("info", "--output", "json").stdout)
    return [b["id"] for b in info["clusters"][0]["backups"]]


def test_enqueued_backup_runs_and_is_recorded(env: Lifeboat) -> None:
    with running_agent(env):
        job_id = enqueue(env, "backup", "--requested-by", "alice")
        done = wait_job(env, job_id)
    assert done["state"] == "succeeded", done
    assert done["progress"] == 100 and done["requested_by"] == "alice"
    assert done["started_at"] and done["finished_at"] and done["duration_seconds"] > 0
    assert done["result"]["backup"] in _backup_ids(env)
    kinds = [e["kind"] for e in events(env) if e["job_id"] == job_id]
    assert kinds == ["job_queued", "job_started", "job_succeeded"]


def test_wait_returns_the_jobs_outcome(env: Lifeboat) -> None:
    with running_agent(env):
        ok = env.run("enqueue", "backup", "--wait", "--wait-timeout", "120")
        failed = env.run("enqueue", "verify", "--backup", "20990101-000000F", "--wait",
                         "--wait-timeout", "120", check=False)
    assert ok.returncode == 0
    assert failed.returncode == 1
    job_id = int(failed.stdout.strip())
    assert "does not exist" in job(env, job_id)["error"]


def test_bad_job_parameters_are_refused_when_asked(env: Lifeboat) -> None:
    done = env.run("enqueue", "restore", "--pgdata", "/tmp/x", "--target-time", "yesterday",
                   check=False)
    assert done.returncode == 2
    assert done.stderr.startswith("lifeboat: --target-time 'yesterday' is not a time (use ISO 8601")
    assert "usage:" not in done.stderr
    assert jobs(env) == []


def test_a_restore_outranks_a_scheduled_backup_and_concurrency_is_bounded(
        env: Lifeboat, workspace: Workspace) -> None:
    configure(env, max_jobs=1)
    env.run("backup")
    backup = enqueue(env, "backup", "--priority", "40", "--requested-by", "schedule:nightly")
    verify = enqueue(env, "verify", "--priority", "45")
    target = workspace.path("restore-target", create=False)
    restore = enqueue(env, "restore", "--pgdata", str(target))
    with running_agent(env):
        for job_id in (backup, verify, restore):
            wait_job(env, job_id)
    finished = {j["id"]: j for j in jobs(env)}
    assert all(finished[i]["state"] == "succeeded" for i in (backup, verify, restore)), finished
    started = [e["job_id"] for e in events(env, "job_started")]
    assert started == [restore, verify, backup]  # priorities 100, 45, 40; queued in reverse
    for earlier, later in itertools.pairwise(started):  # one at a time
        assert finished[earlier]["finished_at"] <= finished[later]["started_at"]
    assert (target / "PG_VERSION").exists()


def test_max_duration_stops_an_overrunning_backup_and_leaves_no_backup(env: Lifeboat) -> None:
    slow_archiving(env, 10)
    try:
        with running_agent(env):
            job_id = enqueue(env, "backup", "--max-duration", "3s")
            done = wait_job(env, job_id, timeout=60)
    finally:
        slow_archiving(env, 0)
    assert done["state"] == "cancelled"
    assert "exceeded max_duration 3s" in done["error"]
    assert [e for e in events(env, "job_overran") if e["job_id"] == job_id]
    assert _backup_ids(env) == []
    env.run("backup")  # the lock and the repository are fine


def test_a_job_interrupted_by_an_agent_crash_is_marked_failed(env: Lifeboat) -> None:
    slow_archiving(env, 60)
    try:
        with running_agent(env) as agent:
            job_id = enqueue(env, "backup")
            running = wait_running(env, job_id)
            agent.send_signal(signal.SIGKILL)
            agent.wait()
        child = running["pid"]
        assert child and _alive(child)  # its own session: it outlived the agent
        with running_agent(env):
            wait_for(lambda: not _alive(child), 30, "the orphaned job to be stopped")
            done = wait_job(env, job_id, timeout=30)
    finally:
        slow_archiving(env, 0)
    assert done["state"] == "failed" and "interrupted" in done["error"]
    assert [e for e in events(env, "job_interrupted") if e["job_id"] == job_id]
    assert _backup_ids(env) == []


def test_cancel_stops_a_running_job(env: Lifeboat) -> None:
    slow_archiving(env, 60)
    try:
        with running_agent(env):
            job_id = enqueue(env, "backup")
            running = wait_running(env, job_id)
            env.run("cancel", str(job_id))
            wait_for(lambda: not _alive(running["pid"]), 30, "the cancelled job to stop")
    finally:
        slow_archiving(env, 0)
    assert job(env, job_id)["state"] == "cancelled"
    assert _backup_ids(env) == []


def test_schedule_fires_with_resource_limits(env: Lifeboat) -> None:
    configure(env, cluster_extra=(
        '[clusters.main.schedules.hourly]\ncron = "0 * * * *"\ntype = "full"\n'
        'max_duration = "10m"\n[clusters.main.schedules.hourly.resources]\n'
        'io_priority = "low"\ncpu_limit = "50%"\n'))
    _seed_schedule(env, "hourly", time.time() - 2 * 3600)  # two fires were missed
    slow_archiving(env, 8)
    try:
        with running_agent(env):
            scheduled = wait_for(lambda: [j for j in jobs(env) if j["schedule"] == "hourly"], 30,
                                 "the scheduled job")
            job_id = scheduled[0]["id"]
            running = wait_running(env, job_id)
            nice, io_class = _limits(running["pid"])
            done = wait_job(env, job_id, timeout=90)
    finally:
        slow_archiving(env, 0)
    assert done["state"] == "succeeded", done
    assert done["requested_by"] == "schedule:hourly" and done["priority"] == 40
    assert done["params"]["jobs"] == max(1, (os.cpu_count() or 1) // 2)
    assert nice == 10 and "idle" in io_class
    missed = events(env, "schedule_missed")
    assert missed and "missed 1 run" in missed[0]["message"]
    assert len([j for j in jobs(env) if j["schedule"] == "hourly"]) == 1  # caught up once


def test_a_job_waits_while_the_server_is_busy(env: Lifeboat) -> None:
    configure(env, cluster_extra=(
        '[clusters.main.schedules.quiet]\ncron = "0 * * * *"\nmax_active_sessions = 0\n'))
    _seed_schedule(env, "quiet", time.time() - 3600)
    def hold_a_session() -> None:
        with contextlib.suppress(Exception):  # cancelled below
            env.cluster.sql("SELECT pg_sleep(20)")

    busy = threading.Thread(target=hold_a_session, daemon=True)
    busy.start()
    wait_for(lambda: env.cluster.value("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                                       "AND query LIKE 'SELECT pg_sleep%'"), 10, "the busy session")
    with running_agent(env):
        waiting = wait_for(lambda: [j for j in jobs(env) if j["state"] == "waiting"], 30,
                           "the job to wait")
        assert "active sessions" in waiting[0]["message"]
        env.cluster.sql("SELECT pg_cancel_backend(pid) FROM pg_stat_activity "
                        "WHERE query LIKE 'SELECT pg_sleep%' AND pid <> pg_backend_pid()")
        done = wait_job(env, waiting[0]["id"], timeout=90)
    assert done["state"] == "succeeded"
    assert [e for e in events(env, "job_waiting") if "active sessions" in e["message"]]


def _seed_schedule(env: Lifeboat, name: str, last_fire: float) -> None:
    """Record an earlier last fire, as an agent that stopped a while ago would have."""
    from engine.catalog.store import Catalog
    from engine.config.schema import load_config

    config = load_config(env.config)
    catalog_dir = config.catalog.path.parent
    with Catalog.open(config) as catalog:
        catalog.set_schedule_last("main", name, last_fire)
    for path in catalog_dir.iterdir():  # made as root here: hand them to postgres
        os.chown(path, *_postgres_ids())


def _postgres_ids() -> tuple[int, int]:
    import pwd

    entry = pwd.getpwnam("postgres")
    return entry.pw_uid, entry.pw_gid


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as handle:
        return handle.read().split(") ", 1)[1].split()[0] != "Z"


def _limits(pid: int) -> tuple[int, str]:
    """The nice value and I/O class of the job's process (the run-job under nice/ionice)."""
    import subprocess

    with open(f"/proc/{pid}/stat") as handle:
        nice = int(handle.read().split(") ", 1)[1].split()[16])
    io_class = subprocess.run(["ionice", "-p", str(pid)], capture_output=True, text=True).stdout
    return nice, io_class


def test_stakeholders_are_told_once_before_a_full_drill(env: Lifeboat) -> None:
    from datetime import UTC, datetime, timedelta

    from tests.integration.test_notifiers import Receiver

    soon = datetime.now(UTC) + timedelta(days=1)
    receiver = Receiver()
    try:
        configure(env, cluster_extra=(f'[clusters.main.drills]\nfull = "0 3 {soon.day} {soon.month} *"\n'),
                  top_extra=(f'[notifications]\nslack_webhook_url = "{receiver.url}/slack/200"\n'
                             f'webhook_url = "{receiver.url}/hook/200"\nstakeholders = ["ops_team"]\n'))
        with running_agent(env):
            notice = wait_for(lambda: events(env, "drill_notice"), 30, "the drill notice")
        with running_agent(env):  # a restarted agent does not announce it again
            wait_for(lambda: events(env, "agent_started")[1:], 30, "the second agent")
            time.sleep(1.5)
        assert len(events(env, "drill_notice")) == 1
        assert "(slack: ok, webhook: ok)" in notice[0]["message"] and notice[0]["severity"] == "info"
        paths = sorted(r["path"] for r in receiver.requests)
        assert paths == ["/hook/200", "/slack/200"]
        text = json.dumps([r["json"] for r in receiver.requests])
        assert "main" in text and "ops_team" in text and f"{soon:%Y-%m-%d}" in text
    finally:
        receiver.close()


def test_a_running_job_is_paused_while_the_server_is_busy(env: Lifeboat) -> None:
    configure(env, cluster_extra=(
        '[clusters.main.schedules.gentle]\ncron = "0 * * * *"\nmax_active_sessions = 0\n'))
    _seed_schedule(env, "gentle", time.time() - 3600)
    slow_archiving(env, 6)

    def hold_a_session() -> None:
        with contextlib.suppress(Exception):  # cancelled below
            env.cluster.sql("SELECT pg_sleep(60)")

    try:
        with running_agent(env):
            job_id = wait_for(lambda: [j["id"] for j in jobs(env) if j["state"] == "running"], 30,
                              "the job to start")[0]
            pid = wait_running(env, job_id)["pid"]
            threading.Thread(target=hold_a_session, daemon=True).start()
            wait_for(lambda: events(env, "job_paused"), 30, "the job to be paused")
            assert _state(pid) == "T"  # stopped
            env.cluster.sql("SELECT pg_cancel_backend(pid) FROM pg_stat_activity "
                            "WHERE query LIKE 'SELECT pg_sleep%' AND pid <> pg_backend_pid()")
            wait_for(lambda: events(env, "job_resumed"), 30, "the job to resume")
            done = wait_job(env, job_id, timeout=90)
    finally:
        slow_archiving(env, 0)
    assert done["state"] == "succeeded"
    # paused once, by the client session only: the backup's own session (waiting in
    # pg_backup_stop for the slow archive) is not load, so it does not pause and resume it
    paused = events(env, "job_paused")
    assert len(paused) == 1 and len(events(env, "job_resumed")) == 1, paused
    assert "1 active sessions" in paused[0]["message"] and paused[0]["job_id"] == job_id


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as handle:
        return handle.read().split(") ", 1)[1].split()[0]


def test_the_agent_works_with_a_postgresql_catalog(env: Lifeboat) -> None:
    """Teams share one catalog in PostgreSQL (here the machine's server on 5432)."""
    import psycopg

    database = f"lifeboat_agent_{os.getpid()}"
    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres",
                         autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {database}")
        conn.execute(f"CREATE DATABASE {database}")
    try:
        configure(env, top_extra="")
        text = env.config.read_text().replace(
            "[catalog]\n", f'[catalog]\ndsn = "postgresql://postgres@127.0.0.1:5432/{database}"\n')
        env.config.write_text(text)
        with running_agent(env):
            job_id = enqueue(env, "backup", "--type", "incr")
            done = wait_job(env, job_id)
        assert done["state"] == "succeeded" and done["result"]["type"] == "full"  # nothing to build on
        with psycopg.connect(f"host=127.0.0.1 port=5432 user=postgres dbname={database}") as conn:
            rows = conn.execute("SELECT kind, state, requested_by FROM jobs").fetchall()
            kinds = [r[0] for r in conn.execute("SELECT kind FROM events ORDER BY id").fetchall()]
        assert rows == [("backup", "succeeded", done["requested_by"])]
        assert "agent_started" in kinds and "job_succeeded" in kinds
    finally:
        with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres",
                             autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
