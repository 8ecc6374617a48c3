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
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.integration.agent import configure, events, running_agent, wait_for
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


def receiver_pids(stream: Path) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv[0].endswith(b"pg_receivewal") and str(stream).encode() in argv:
                pids.append(int(entry))
    return pids


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


def write_crash_restore(env: Lifeboat) -> tuple[int, list[int]]:
    """Write, crash the primary, restore to latest: (acknowledged, lost ids)."""
    with Writers(env.cluster) as writers:
        time.sleep(WRITE_SECONDS)
        crash(env.cluster)
    assert writers.count() > 50, "the writers made no progress"
    restored, _ = env.restore()
    present = {row[0] for row in restored.sql("SELECT id FROM acked")}
    lost = sorted(set(writers.acknowledged) - present)
    return len(writers.acknowledged), lost


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
    env, _ = primary(workspace, "async")
    envs.append(env)
    with running_agent(env):
        wait_for(lambda: sync_state(env.cluster) == "async", 30, "the receiver to stream")
        assert env.cluster.value("SHOW synchronous_standby_names") == ""
        acknowledged, lost = write_crash_restore(env)
    report(capsys, "asynchronous streaming", acknowledged, lost)
    assert 0 <= len(lost) <= acknowledged

    env, _ = primary(workspace, "archive")
    envs.append(env)
    acknowledged, lost = write_crash_restore(env)
    report(capsys, "archive_command only", acknowledged, lost)
    assert 0 <= len(lost) <= acknowledged


def test_a_killed_receiver_is_restarted(workspace: Workspace, envs: list[Lifeboat],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    env, stream = primary(workspace, "sync")
    envs.append(env)
    with running_agent(env):
        wait_for(lambda: sync_state(env.cluster) == "sync", 30, "the receiver to be synchronous")
        [first] = receiver_pids(stream)
        os.kill(first, signal.SIGKILL)
        # a synchronous commit returns only once a restarted receiver has flushed its WAL
        killed = time.monotonic()
        env.cluster.sql("INSERT INTO acked VALUES (1)")
        with capsys.disabled():
            print(f"\n[streaming] a commit waited {time.monotonic() - killed:.1f}s for the "
                  "restarted synchronous receiver")
        [second] = wait_for(lambda: receiver_pids(stream), 30, "a new receiver")
        assert second != first and sync_state(env.cluster) == "sync"
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
