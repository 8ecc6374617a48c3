"""Remediation actions against a real PostgreSQL cluster, with real faults: a stopped server,
a missing copy, a killed receiver, a dropped slot, a failing archive_command, a read-only
repository, a held lock, a killed writer's temp object, an abandoned drill scratch
directory, a backup that failed.

One cluster serves every test (module scope). The actions run in this process as root
(the agent runs them as os_user), so the repository and the catalog are given back to
postgres before each ``lifeboat`` command.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from alerts.remediation.actions import ACTIONS
from alerts.remediation.base import ActionResult, RemediationContext
from engine.agent.loop import Agent, job_command
from engine.catalog.store import FAILED
from engine.context import Context, open_context
from engine.repository import layout
from engine.repository.locks import cluster_lock
from engine.wal import names as wal
from engine.wal.streaming import StreamingSupervisor
from tests.integration.agent import receiver_pids, wait_for
from tests.integration.pg import PG_USER, Lifeboat, Workspace

RECEIVER = "lifeboat_receiver"
OLD = 2 * 3600.0  # seconds: older than the stale_after these tests set (10 min)


@dataclass
class Site:
    env: Lifeboat
    workspace: Workspace
    state: Path
    stream: Path
    spool: Path
    scratch: Path

    @property
    def cluster(self):  # type: ignore[no-untyped-def]
        return self.env.cluster

    def config(self, cluster_extra: str = "", top_extra: str = "", repository: Path | None = None,
               copies: str = "", streaming: bool = False) -> Path:
        """A configuration for this process (os_user root, as the agent's streaming needs)
        sharing the repository and the catalog of the CLI's."""
        path = self.workspace.root / f"remediation-{time.monotonic_ns()}.toml"
        stream = (f'\n[clusters.main.streaming]\nenabled = true\ndirectory = "{self.stream}"\n'
                  f'synchronous = false\n') if streaming else ""
        path.write_text(
            f'os_user = "root"\n[repository]\npath = "{repository or self.env.repo}"\n{copies}\n'
            f'[clusters.main]\npgdata = "{self.cluster.pgdata}"\nhost = "127.0.0.1"\n'
            f'port = {self.cluster.port}\nconnect_timeout = "3s"\n{cluster_extra}\n'
            f'[clusters.main.drills]\nscratch_dir = "{self.scratch}"\n{stream}\n'
            f'[catalog]\npath = "{self.state}/catalog.sqlite3"\n\n'
            f'[agent]\nstate_dir = "{self.state}"\npoll_interval = "0.1s"\n\n'
            f'[alerts.remediation]\nstale_after = "10m"\n{top_extra}\n')
        return path

    def context(self, **kwargs: object) -> Context:
        return open_context(self.config(**kwargs), "main")  # type: ignore[arg-type]

    def give_back(self) -> None:
        """What this process (root) wrote in the repository and the catalog, to postgres."""
        for place in (self.env.repo, self.state):
            subprocess.run(["chown", "-R", f"{PG_USER}:{PG_USER}", str(place)], check=True)


@pytest.fixture(scope="module")
def site(workspace: Workspace) -> Iterator[Site]:
    env = Lifeboat.create(workspace)
    state = workspace.path("state")
    spool = workspace.path("spool")
    env.write_config(env.cluster, extra=f'\n[catalog]\npath = "{state}/catalog.sqlite3"\n'
                                        f'[agent]\nstate_dir = "{state}"\n')
    try:
        env.cluster.start()
        env.run("init")
        env.cluster.sql("CREATE TABLE t (id int)")
        env.run("backup")
        yield Site(env, workspace, state, workspace.path("stream"), spool, workspace.path("scratch"))
    finally:
        env.cleanup()


def run(action: str, ctx: Context, hooks: object = None, labels: dict[str, str] | None = None,
        round_: int = 1, timeout: float = 60.0) -> ActionResult:
    book = ctx.catalog.alerts
    alert_id = book.create(f"fp-{time.monotonic_ns()}", "backup_failure", "LifeboatBackupFailed", "main",
                           "critical", {"cluster": "main", **(labels or {})}, {}, "firing", 1.0,
                           "prometheus", time.time(), time.time())
    alert = book.get(alert_id)
    assert alert is not None
    rctx = RemediationContext(ctx, alert, round_, 3, time.monotonic() + timeout,
                              hooks)  # type: ignore[arg-type]
    return ACTIONS[action](rctx)


def write_wal(site: Site, switches: int = 1) -> None:
    for _ in range(switches):
        site.cluster.sql("INSERT INTO t SELECT generate_series(1, 1000)")
        site.cluster.sql("SELECT pg_switch_wal()")


def set_archive_command(site: Site, command: str | None) -> None:
    if command is None:
        site.cluster.sql("ALTER SYSTEM RESET archive_command")
    else:
        site.cluster.sql(f"ALTER SYSTEM SET archive_command = '{command}'")
    site.cluster.sql("SELECT pg_reload_conf()")


def archiving_caught_up(site: Site) -> None:
    """Archiving works again and has archived everything written so far."""
    write_wal(site)
    current = site.cluster.value("SELECT pg_walfile_name(pg_current_wal_lsn())")
    wait_for(lambda: (site.cluster.value("SELECT last_archived_wal FROM pg_stat_archiver") or "")
             >= wal.segment_name(1, wal.parse_segment(current).segno - 1), 60, "archiving to catch up")


# check_network_connectivity -------------------------------------------------------------

def test_network_names_a_missing_copy_and_a_stopped_server(site: Site) -> None:
    missing = site.workspace.root / "copy-eu-never-made"
    copies = f'[repository.copies.eu]\npath = "{missing}"\n'
    with site.context(copies=copies) as ctx:
        result = run("check_network_connectivity", ctx)
        assert not result.ok
        assert result.output.startswith(f"did not answer: copy 'eu' {missing}")
        assert f"copy 'eu' {missing}: FAILED: did not answer: {missing} does not exist" in result.output
        assert f"PostgreSQL server of cluster 'main' (127.0.0.1:{site.cluster.port}): ok" in result.output
        assert f"repository {site.env.repo}: ok" in result.output

        site.cluster.stop()
        try:
            down = run("verify_network_connectivity", ctx)
        finally:
            site.cluster.start()
        assert not down.ok
        assert down.output.startswith(f"did not answer: PostgreSQL server of cluster 'main' "
                                      f"(127.0.0.1:{site.cluster.port}); copy 'eu' {missing}")
        assert f"PostgreSQL server of cluster 'main' (127.0.0.1:{site.cluster.port}): FAILED: " \
               "did not answer" in down.output
    with site.context() as ctx:
        assert run("check_network_connectivity", ctx).ok


# check_disk_space -----------------------------------------------------------------------

def test_disk_space_fails_above_the_real_free_share_naming_the_path(site: Site) -> None:
    usage = shutil.disk_usage(site.cluster.pgdata)
    above = usage.free / usage.total + (1 - usage.free / usage.total) / 2
    with site.context(top_extra=f"disk_min_free = {above:.6f}") as ctx:
        result = run("check_disk_space", ctx)
    assert not result.ok
    assert f"PGDATA {site.cluster.pgdata}: FAILED" in result.output
    assert f"pg_wal {site.cluster.pgdata}/pg_wal: FAILED" in result.output
    assert f"repository {site.env.repo}: FAILED" in result.output
    with site.context() as ctx:
        fine = run("check_disk_space", ctx)
    assert fine.ok, fine.output
    assert f"PGDATA {site.cluster.pgdata}: ok" in fine.output


# restart_replication --------------------------------------------------------------------

class Ticker:
    """The agent's loop for one streaming supervisor: starts and ticks it from one thread."""

    def __init__(self, supervisor: StreamingSupervisor) -> None:
        self.supervisor = supervisor
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        self.supervisor.start()
        while not self.stop.is_set():
            self.supervisor.tick()
            self.stop.wait(0.1)
        self.supervisor.stop()

    def __enter__(self) -> Ticker:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)


def streaming_now(site: Site) -> bool:
    return site.cluster.value("SELECT state FROM pg_stat_replication WHERE application_name = %s",
                              (RECEIVER,)) == "streaming"


def test_restart_replication_brings_a_killed_receiver_back(site: Site) -> None:
    with site.context(streaming=True) as ctx:
        supervisor = StreamingSupervisor(ctx.config, "main", ctx.storage)
        agent = Agent(ctx.config, ctx.catalog, ctx.storage, job_command(ctx.config_path))
        agent.streamers.append(supervisor)
        try:
            with Ticker(supervisor):
                wait_for(lambda: streaming_now(site), 30, "the receiver to stream")
                killed = receiver_pids(site.stream)
                assert len(killed) == 1
                os.kill(killed[0], signal.SIGKILL)
                wait_for(lambda: supervisor._process is None, 10, "the supervisor to reap it")
                supervisor._next_launch = time.monotonic() + 3600  # a supervisor in a long backoff
                time.sleep(1.5)
                assert receiver_pids(site.stream) == [] and not streaming_now(site)

                result = run("restart_replication", ctx, hooks=agent)
                assert result.ok and result.changed, result.output
                back = receiver_pids(site.stream)
                assert len(back) == 1 and back != killed
                assert "pg_receivewal was not running (last exit code -9" in result.output
                assert f"restarted as pid {back[0]} with slot 'lifeboat'" in result.output
                assert f"pg_stat_replication shows '{RECEIVER}' streaming" in result.output
                assert streaming_now(site)

                again = run("restart_replication", ctx, hooks=agent)
                assert again.ok, again.output
                assert f"pg_receivewal (pid {back[0]}) was running" in again.output
                assert receiver_pids(site.stream) not in ([], back)

                seen = run("check_network_connectivity", ctx, labels={"replica": RECEIVER})
                assert seen.ok and f"replica '{RECEIVER}' of cluster 'main' (pg_stat_replication): ok: " \
                                   "streaming" in seen.output
                gone = run("check_network_connectivity", ctx, labels={"replica": "nobody"})
                assert not gone.ok and "replica 'nobody'" in gone.output and "not connected" in gone.output
        finally:
            site.give_back()


# restart_replication_slot ---------------------------------------------------------------

def test_restart_replication_slot_recreates_a_dropped_slot_and_names_the_missing_wal(site: Site) -> None:
    for entry in site.stream.iterdir():  # what the receiver had is archived (its stop pushed it)
        entry.unlink()
    with site.context(streaming=True) as ctx:
        if site.cluster.value("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'lifeboat'") == 0:
            site.cluster.sql("SELECT pg_create_physical_replication_slot('lifeboat', true)")
        fine = run("restart_replication_slot", ctx)
        assert fine.ok and not fine.changed and "is fine" in fine.output and "nothing changed" in fine.output

        set_archive_command(site, "/bin/false")
        try:
            write_wal(site)
            last = wait_for(lambda: site.cluster.value(
                "SELECT last_archived_wal FROM pg_stat_archiver WHERE last_failed_time > "
                "coalesce(last_archived_time, 'epoch')"), 30, "archiving to fail")
            write_wal(site, 2)
            site.cluster.sql("CHECKPOINT")
            site.cluster.sql("SELECT pg_drop_replication_slot('lifeboat')")
            first_missing = wal.segment_name(1, wal.parse_segment(last[:24]).segno + 1)

            result = run("restart_replication_slot", ctx)
            assert result.ok and result.changed, result.output
            slot = site.cluster.sql("SELECT slot_type, restart_lsn::text FROM pg_replication_slots "
                                    "WHERE slot_name = 'lifeboat'")
            assert slot and slot[0][0] == "physical" and slot[0][1] is not None
            assert "replication slot 'lifeboat' was missing; recreated, starting at " \
                   f"{slot[0][1]}" in result.output
            assert f"from {first_missing} (the first missing)" in result.output
            assert "still in pg_wal (archive_command can still archive them): " \
                   f"{first_missing}" in result.output
        finally:
            set_archive_command(site, None)
            archiving_caught_up(site)
            site.cluster.sql("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                             "WHERE slot_name = 'lifeboat'")
            site.give_back()


# verify_backup_dependencies -------------------------------------------------------------

def test_backup_dependencies_name_a_failing_archive_command_and_a_held_lock(site: Site) -> None:
    with site.context() as ctx:
        fine = run("verify_backup_dependencies", ctx)
        assert fine.ok, fine.output
        assert "WAL archiving of cluster 'main': ok: working" in fine.output
        assert "(writing clusters/main/probes/" in fine.output and "read back and deleted" in fine.output
        assert ctx.storage.list(layout.cluster_prefix("main") + "/probes") == []

        with cluster_lock(ctx.storage, "main", "a test holding the lock"):
            held = run("verify_backup_dependencies", ctx)
        assert not held.ok
        assert "lock of cluster 'main': FAILED: held by a test holding the lock (pid" in held.output

        set_archive_command(site, "/bin/false")
        try:
            write_wal(site)
            failed_wal = wait_for(lambda: site.cluster.value(
                "SELECT last_failed_wal FROM pg_stat_archiver WHERE last_failed_time > "
                "coalesce(last_archived_time, 'epoch')"), 30, "archiving to fail")
            broken = run("verify_backup_dependencies", ctx)
        finally:
            set_archive_command(site, None)
            archiving_caught_up(site)
    assert not broken.ok
    assert f"WAL archiving of cluster 'main': FAILED: failing: archive_command failed for {failed_wal}" \
        in broken.output
    assert "repository" in broken.output and "FAILED" not in broken.output.split("repository ", 1)[1].split(
        "\n", 1)[0]
    site.give_back()


def test_backup_dependencies_name_a_read_only_repository(site: Site) -> None:
    mount = site.workspace.path("read-only-repo")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0755", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    assert done.returncode == 0, f"the test mounts tmpfs (as root): {done.stderr}"
    try:
        (mount / "lifeboat.repo").write_text("")
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        with site.context(repository=mount) as ctx:
            result = run("verify_backup_dependencies", ctx)
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)
    assert not result.ok
    assert f"repository {mount} (writing clusters/main/probes/" in result.output
    assert "FAILED: not writable" in result.output and "read-only" in result.output.lower()
    assert "WAL archiving of cluster 'main': ok" in result.output


# cleanup_staging_area -------------------------------------------------------------------

def killed_writer(repo: Path, key: str) -> Path:
    """A process that dies (SIGKILL) in the middle of writing ``key``: its temp file."""
    code = ("import os; from engine.repository.storage import open_storage; "
            f"w = open_storage({str(repo)!r}).open_writer({key!r}); w.write(b'x' * 100000); "
            "os.kill(os.getpid(), 9)")
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[2], capture_output=True)
    assert done.returncode == -9, done.stderr
    directory = repo / key.rsplit("/", 1)[0]
    temps = [p for p in directory.iterdir() if p.name.startswith(f".{key.rsplit('/', 1)[1]}.tmp-")]
    assert len(temps) == 1
    return temps[0]


def aged(*paths: Path) -> None:
    then = time.time() - OLD
    for path in paths:
        for place in [path, *(path.rglob("*") if path.is_dir() else [])]:
            os.utime(place, (then, then), follow_symlinks=False)


def test_cleanup_removes_a_killed_writers_remains_and_an_abandoned_scratch_but_verify_passes(
        site: Site) -> None:
    async_archive = f'[clusters.main.archive]\nmode = "async"\nspool = "{site.spool}"\n'
    stale_temp = killed_writer(site.env.repo, layout.pack_key("main", "ab" * 16))
    fresh_temp = killed_writer(site.env.repo, layout.pack_key("main", "cd" * 16))
    stale_probe = layout.probe_key("main", "gone-host-1-dead")
    fresh_probe = layout.probe_key("main", "busy-host-2-beef")
    archived = next(k for k in (site.env.repo / "clusters/main/wal").rglob("0*") if k.is_file())
    spool = site.spool / "main"
    spool.mkdir(exist_ok=True)
    stale_ack = spool / f"{archived.name}.ack"
    stale_ack.write_text(f"lifeboat-ack-1 16777216 1 2 3 main {site.env.repo}\n")
    ack_temp = spool / f".{archived.name}.ack.tmp-4242-0badcafe"
    ack_temp.write_text("lifeboat-ack-1")
    heartbeat = spool / "agent.alive"
    heartbeat.write_text("1\n")
    abandoned = site.scratch / "lifeboat-drill-full-20260101T030000Z-dead"
    (abandoned / "pgdata" / "base" / "5").mkdir(parents=True)
    (abandoned / "pgdata" / "base" / "5" / "1259").write_bytes(b"\0" * 8192 * 4)
    (abandoned / "server.log").write_text("LOG:  database system is ready to accept connections\n")
    fresh_scratch = site.scratch / "lifeboat-drill-partial-20261203T010000Z-beef"
    (fresh_scratch / "pgdata").mkdir(parents=True)
    not_ours = site.scratch / "someone-elses"
    not_ours.mkdir()
    with site.context(cluster_extra=async_archive) as ctx:
        ctx.storage.put(stale_probe, b"probe")
        ctx.storage.put(fresh_probe, b"probe")
        aged(stale_temp, site.env.repo / stale_probe, stale_ack, ack_temp, heartbeat, abandoned, not_ours)

        drill = ctx.catalog.start_run("drill", "main", {"kind": "full"}, "test", 60, "cli@test", os.getpid())
        kept = run("cleanup_staging_area", ctx)
        assert kept.ok, kept.output
        assert abandoned.exists()
        assert f"drill scratch directories in {site.scratch} left: drill job {drill} of cluster 'main' " \
               "is running" in kept.output
        assert not stale_temp.exists() and not stale_ack.exists()  # the rest was cleaned meanwhile
        ctx.catalog.finish(drill, FAILED, error="killed")

        stale_temp2 = killed_writer(site.env.repo, layout.pack_key("main", "ef" * 16))
        aged(stale_temp2)
        result = run("cleanup_staging_area", ctx)
        assert result.ok and result.changed, result.output
        assert f"removed repository temp object {stale_temp2.relative_to(site.env.repo)}" in result.output
        assert f"removed drill scratch directory {abandoned} (" in result.output
        assert result.output.startswith("removed 2 leftover(s), ")
        assert not stale_temp2.exists() and not abandoned.exists()
    assert "probe" in kept.output and "acknowledgement of " + archived.name in kept.output
    assert "temp file of an acknowledgement" in kept.output
    for still in (fresh_temp, site.env.repo / fresh_probe, heartbeat, fresh_scratch, not_ours):
        assert still.exists(), still
    assert not (site.env.repo / stale_probe).exists() and not ack_temp.exists()

    site.give_back()
    verify = site.env.run("verify", check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    fresh_temp.unlink()


# retry_backup_operation -----------------------------------------------------------------

def test_retry_requeues_a_failed_backup_with_its_parameters_once_and_it_runs(site: Site) -> None:
    with site.context() as ctx:
        with cluster_lock(ctx.storage, "main", "a test holding the lock"):
            site.give_back()
            refused = site.env.run("backup", "--type", "incr", "--checksum", "--no-expire", check=False)
        assert refused.returncode != 0
        failed = ctx.catalog.jobs("main", states=("failed",), kind="backup", limit=1)[0]
        assert "busy" in (failed.error or "")

        result = run("retry_backup_operation", ctx)
        assert result.ok and result.changed, result.output
        queued = ctx.catalog.jobs("main", states=("queued",), kind="backup")
        assert len(queued) == 1
        job = queued[0]
        assert job.params == failed.params and job.params["type"] == "incr" and job.params["checksum"]
        assert job.requested_by == "lifeboat-remediation"
        assert f"backup job {failed.id} failed" in result.output
        assert f"queued again as job {job.id}" in result.output

        twice = run("retry_backup_operation", ctx)
        assert twice.ok and not twice.changed
        assert f"backup job {job.id} is already queued" in twice.output
        assert len(ctx.catalog.jobs("main", states=("queued",), kind="backup")) == 1

        assert ctx.catalog.mark_running(job.id, "test", None)
        site.give_back()
        site.env.run("run-job", str(job.id))
        assert ctx.catalog.job(job.id).state == "succeeded"  # type: ignore[union-attr]
        done = run("retry_backup_operation", ctx)
        assert not done.changed and f"the newest backup job, {job.id}, ended succeeded" in done.output
