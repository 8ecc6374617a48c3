"""Streaming WAL: pg_receivewal supervised by ``lifeboat agent``.

Clients record a transaction only after its COMMIT returned; then the primary is killed
(SIGKILL, postmaster and every child) and its data directory destroyed, and a restore to
latest must hold every acknowledged transaction when the receiver is synchronous (RPO 0).
The same run with asynchronous streaming, and with archive_command alone, reports how
many acknowledged transactions were lost.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from tests.integration.agent import configure, events, receiver_pids, running_agent, wait_for
from tests.integration.pg import Cluster, Lifeboat, Workspace, chown_postgres

RECEIVER = "lifeboat_receiver"
WRITE_SECONDS = 3.0


class Writers:
    """Client threads inserting numbered rows; an id is recorded once its COMMIT returned."""

    def __init__(self, cluster: Cluster, threads: int = 4) -> None:
        self.cluster = cluster
        self.acknowledged: list[int] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._write, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Writers:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)

    def _write(self) -> None:
        try:
            conn = self.cluster.connect()
        except psycopg.Error:
            return
        with conn:
            while not self._stop.is_set():
                with self._lock:
                    row_id = next(self._ids)
                try:
                    conn.execute("INSERT INTO acked (id) VALUES (%s)", (row_id,))
                except psycopg.Error:
                    return  # the server is gone: this one was never acknowledged
                with self._lock:
                    self.acknowledged.append(row_id)

    def count(self) -> int:
        with self._lock:
            return len(self.acknowledged)

    def so_far(self) -> set[int]:
        with self._lock:
            return set(self.acknowledged)


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def crash(cluster: Cluster) -> None:
    """SIGKILL the postmaster and every process it started, then destroy the data directory."""
    postmaster = int((cluster.pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
    children = children_of(postmaster)
    cluster.kill()
    for pid in children:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in children), 10,
             "the server's processes to die")
    shutil.rmtree(cluster.pgdata)
    cluster.pgdata.mkdir(mode=0o750)  # empty: the restored copy keeps it as its socket directory
    chown_postgres(cluster.pgdata)


def started_at(pid: int) -> float:
    """When process ``pid`` started, in CLOCK_BOOTTIME seconds (to a clock tick)."""
    ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    return ticks / os.sysconf("SC_CLK_TCK")


def sync_state(cluster: Cluster) -> str | None:
    return cluster.value("SELECT sync_state FROM pg_stat_replication WHERE application_name = %s",
                         (RECEIVER,))


def primary(workspace: Workspace, mode: str) -> tuple[Lifeboat, Path]:
    """A started, initialised cluster with a full backup; ``mode`` sync, async or archive."""
    env = Lifeboat.create(workspace)
    stream = workspace.path("stream")
    extra = ""
    if mode != "archive":
        extra = (f'[clusters.main.streaming]\nenabled = true\ndirectory = "{stream}"\n'
                 + ("" if mode == "sync" else "synchronous = false\n"))
    if mode == "sync":
        extra += '[clusters.main.objectives]\nrpo = "0s"\n'  # synchronous = "auto" follows it
    configure(env, extra)
    env.cluster.start()
    env.run("init")
    env.cluster.sql("CREATE TABLE acked (id bigint PRIMARY KEY)")
    env.run("backup")
    return env, stream


def write_crash_restore(env: Lifeboat, before_crash: Callable[[Writers], None] | None = None
                        ) -> tuple[int, list[int]]:
    """Write, crash the primary (``before_crash`` runs just before, the writers still
    writing), restore to latest: (acknowledged, lost ids)."""
    with Writers(env.cluster) as writers:
        time.sleep(WRITE_SECONDS)
        if before_crash is not None:
            before_crash(writers)
        crash(env.cluster)
    assert writers.count() > 50, "the writers made no progress"
    restored, _ = env.restore()
    present = {row[0] for row in restored.sql("SELECT id FROM acked")}
    lost = sorted(set(writers.acknowledged) - present)
    return len(writers.acknowledged), lost


def received(cluster: Cluster) -> int:
    """The WAL position the receiver last reported written (pg_stat_replication.write_lsn)."""
    return int(cluster.value("SELECT coalesce(write_lsn - '0/0'::pg_lsn, 0) FROM pg_stat_replication "
                             "WHERE application_name = %s", (RECEIVER,)))


def report(capsys: pytest.CaptureFixture[str], mode: str, acknowledged: int, lost: list[int]) -> None:
    with capsys.disabled():
        print(f"\n[streaming] {mode}: {acknowledged} transactions acknowledged, {len(lost)} lost "
              "after SIGKILL of the primary and loss of its data directory")


@pytest.fixture
def envs() -> Iterator[list[Lifeboat]]:
    made: list[Lifeboat] = []
    yield made
    for env in made:
        env.cleanup()


def test_synchronous_streaming_loses_no_acknowledged_transaction(
        workspace: Workspace, envs: list[Lifeboat], capsys: pytest.CaptureFixture[str]) -> None:
    env, stream = primary(workspace, "sync")
    envs.append(env)
    with running_agent(env):
        wait_for(lambda: sync_state(env.cluster) == "sync", 30, "the receiver to be synchronous")
        assert env.cluster.value("SHOW synchronous_standby_names") == f'"{RECEIVER}"'
        acknowledged, lost = write_crash_restore(env)
        kinds = {e["kind"] for e in events(env)}
    report(capsys, "synchronous streaming", acknowledged, lost)
    assert lost == []
    assert {"slot_created", "receiver_started", "synchronous_set", "synchronous_active"} <= kinds
    assert "stream_archive_failed" not in kinds
    assert any(name.endswith(".partial") for name in os.listdir(stream))


def test_asynchronous_streaming_and_archive_only_losses_are_measured(
        workspace: Workspace, envs: list[Lifeboat], capsys: pytest.CaptureFixture[str]) -> None:
    """Asynchronous streaming may lose only what the receiver had not yet received: every
    transaction acknowledged before a WAL position it reported written survives. Archiving
    alone loses the segment being written (the control: the harness sees loss)."""
    env, _ = primary(workspace, "async")
    envs.append(env)
    streamed: set[int] = set()

    def wait_until_received(writers: Writers) -> None:
        streamed.update(writers.so_far())  # acknowledged: their commits are flushed at or before ...
        position = int(env.cluster.value("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn"))  # ... this
        wait_for(lambda: received(env.cluster) >= position, 30,  # its status interval is 10 s
                 "the receiver to report that position written")

    with running_agent(env):
        wait_for(lambda: sync_state(env.cluster) == "async", 30, "the receiver to stream")
        assert env.cluster.value("SHOW synchronous_standby_names") == ""
        acknowledged, lost = write_crash_restore(env, wait_until_received)
    report(capsys, "asynchronous streaming", acknowledged, lost)
    assert len(streamed) > 50
    assert not streamed & set(lost), "transactions the receiver had were lost"
    assert len(lost) <= acknowledged - len(streamed)

    env, _ = primary(workspace, "archive")
    envs.append(env)
    acknowledged, lost = write_crash_restore(env)
    report(capsys, "archive_command only", acknowledged, lost)
    assert lost, "archive_command alone lost nothing: the segment being written was never archived"


def test_a_killed_receiver_is_restarted(workspace: Workspace, envs: list[Lifeboat]) -> None:
    """The agent restarts a killed synchronous receiver; meanwhile commits wait (held in
    PostgreSQL's SyncRep wait) and return once the new receiver has their WAL."""
    env, stream = primary(workspace, "sync")
    envs.append(env)
    with running_agent(env) as agent:
        wait_for(lambda: sync_state(env.cluster) == "sync", 30, "the receiver to be synchronous")
        [first] = receiver_pids(stream)
        os.kill(agent.pid, signal.SIGSTOP)  # no restart while the waiting commit is watched
        try:
            os.kill(first, signal.SIGKILL)
            wait_for(lambda: receiver_pids(stream) == [], 10, "the receiver to die")
            conn = env.cluster.connect()
            backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[index]
            returned: list[float] = []

            def insert() -> None:
                conn.execute("INSERT INTO acked VALUES (1)")
                returned.append(time.clock_gettime(time.CLOCK_BOOTTIME))

            commit = threading.Thread(target=insert)
            commit.start()
            wait_for(lambda: env.cluster.value("SELECT wait_event FROM pg_stat_activity WHERE pid = %s",
                                               (backend,)) == "SyncRep", 10, "the commit to wait")
            assert commit.is_alive() and receiver_pids(stream) == []
        finally:
            os.kill(agent.pid, signal.SIGCONT)
        commit.join(30)
        assert not commit.is_alive(), "the commit still waits: no receiver came back"
        conn.close()
        running = receiver_pids(stream)
        assert running, "the commit returned while no receiver ran"
        [second] = running
        assert second != first and sync_state(env.cluster) == "sync"
        assert len(returned) == 1 and started_at(second) <= returned[0]  # not before it ran
        died = wait_for(lambda: events(env, "receiver_died"), 10, "the receiver_died event")
        assert f"pid {first}" in died[0]["message"] and "code -9" in died[0]["message"]
        assert died[0]["severity"] == "critical"
        assert events(env, "receiver_restarted")
        lsn = env.cluster.value("SELECT pg_current_wal_lsn()")
        env.cluster.sql("INSERT INTO acked VALUES (2)")
        flushed = env.cluster.value("SELECT flush_lsn >= %s::pg_lsn FROM pg_stat_replication "
                                    "WHERE application_name = %s", (str(lsn), RECEIVER))
        assert flushed is True
    assert receiver_pids(stream) == []  # the agent stopped it on SIGTERM
    assert "stopped" in events(env, "receiver_stopped")[-1]["message"]
