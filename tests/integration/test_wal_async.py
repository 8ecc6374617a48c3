"""Async WAL archiving on a real cluster: the agent pushes ``.ready`` files ahead, and
``wal-push`` (PostgreSQL's archive_command) confirms them from the acknowledgement."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from engine.repository.storage.posix import PosixStorage
from engine.wal import archive
from engine.wal.async_archive import archive_backlog
from tests.integration.agent import configure, events, running_agent, wait_for
from tests.integration.pg import Lifeboat, Workspace

ASYNC_FAILURES = ("archive_push_failed", "archive_async_error")
FILE_TIME_TICK = 0.02  # file times come from the kernel's coarse clock (a tick behind at most)


def async_config(env: Lifeboat) -> Path:
    """Ask for async archiving (the agent's state in the workspace); returns the cluster's spool."""
    spool = env.workspace.path("spool")
    configure(env, cluster_extra=f'[clusters.main.archive]\nmode = "async"\nspool = "{spool}"\n'
                                 'push_jobs = 3\n')
    return spool / env.name


@contextmanager
def archiver(env: Lifeboat) -> Iterator[None]:
    """``lifeboat agent`` (it becomes the OS user postgres and pushes ahead), until SIGTERM;
    it must stop cleanly and record no push failure."""
    with running_agent(env) as process:
        yield
    assert process.returncode == 0, process.log.read_text()
    failures = [e for e in events(env) if e["kind"] in ASYNC_FAILURES]
    assert not failures, failures


def archiver_stats(env: Lifeboat) -> tuple[int, int, str]:
    row = env.cluster.sql("SELECT archived_count, failed_count, coalesce(last_archived_wal, '') "
                          "FROM pg_stat_archiver")[0]
    return int(row[0]), int(row[1]), str(row[2])


def acks(spool: Path) -> set[str]:
    """WAL files the agent has acknowledged and wal-push not yet confirmed."""
    if not spool.exists():
        return set()
    return {n.removesuffix(".ack") for n in os.listdir(spool) if n.endswith(".ack")}


def segno(name: str) -> int:
    return int(name[8:16], 16) * 0x100 + int(name[16:24], 16)  # 16 MB segments


def set_archive_command(env: Lifeboat, command: str | None) -> None:
    """ALTER SYSTEM archive_command ('' pauses archiving without failures; None: the file's)."""
    if command is None:
        env.cluster.sql("ALTER SYSTEM RESET archive_command")
    else:
        env.cluster.sql(f"ALTER SYSTEM SET archive_command = '{command}'")
    env.cluster.sql("SELECT pg_reload_conf()")
    wanted = env.archive_command() if command is None else command
    wait_for(lambda: env.cluster.value("SELECT current_setting('archive_command')") == wanted, 10,
             "the new archive_command")


@pytest.fixture
def async_lifeboat(workspace: Workspace) -> Iterator[tuple[Lifeboat, Path]]:
    """A started cluster in async mode, its repository initialised, and its spool."""
    env = Lifeboat.create(workspace)
    spool = async_config(env)
    try:
        env.cluster.start()
        env.run("init")
        yield env, spool
    finally:
        env.cleanup()


def test_wal_push_confirms_segments_the_agent_pushed_ahead(
        async_lifeboat: tuple[Lifeboat, Path]) -> None:
    env, spool = async_lifeboat
    pgdata = env.cluster.pgdata
    wait_for(lambda: archive_backlog(pgdata)[0] == 0, 20, "an empty archive queue")
    set_archive_command(env, "")  # PostgreSQL keeps .ready files, counting no failure
    env.cluster.sql("CREATE TABLE t (id int)")
    names = []
    before_first = time.time()
    for i in range(6):
        env.cluster.sql("INSERT INTO t SELECT generate_series(1, 1000) + %s", (i * 1000,))
        names.append(env.cluster.value("SELECT pg_walfile_name(pg_switch_wal())"))
        if i == 0:
            after_first = time.time()
            time.sleep(0.5)  # the oldest .ready is clearly older than the others
    now = time.time()
    ready, age = archive_backlog(pgdata, now)
    assert ready == 6
    # the age is the oldest .ready's: made during the first switch (file times may lag
    # the clock by one kernel tick)
    assert now - after_first <= age <= now - before_first + FILE_TIME_TICK
    archived_before, failed_before, _ = archiver_stats(env)

    with archiver(env):
        wait_for(lambda: acks(spool) >= set(names), 20, "acknowledgements of the 6 segments")
    for name in names:  # in the archive, and they decode to PostgreSQL's own files
        env.run("wal-get", name, str(env.workspace.root / "fetched"))
        assert (env.workspace.root / "fetched").read_bytes() == (pgdata / "pg_wal" / name).read_bytes()

    # With the cluster's identity gone from the repository a real push would fail; the
    # confirmations below need neither the repository nor a running agent.
    info = env.repo / "clusters" / env.name / "cluster.json"
    info.rename(info.with_suffix(".aside"))
    try:
        set_archive_command(env, None)
        wait_for(lambda: archiver_stats(env)[0] >= archived_before + len(names), 20,
                 "PostgreSQL to archive the 6 segments")
        _archived, failed, last = archiver_stats(env)
    finally:
        info.with_suffix(".aside").rename(info)
    assert failed == failed_before == 0
    assert last >= names[-1]
    assert not acks(spool) & set(names)  # each acknowledgement was consumed by wal-push
    assert archive_backlog(pgdata) == (0, 0.0)


def test_catching_up_under_load_with_the_agent_then_restore(
        async_lifeboat: tuple[Lifeboat, Path]) -> None:
    """A backlog (archiving paused while pgbench -i loads) drains under pgbench with the agent
    pushing ahead of archive_command; every segment is archived once and restores."""
    env, spool = async_lifeboat
    env.run("backup")
    archived_before, _, last_before = archiver_stats(env)
    set_archive_command(env, "")
    assert env.cluster.pgbench("-i", "-s", "8", "-q", timeout=60).returncode == 0
    assert archive_backlog(env.cluster.pgdata)[0] >= 5
    seen: set[str] = set()
    watching = threading.Event()

    def watch() -> None:  # acknowledgements appear briefly: wal-push consumes them
        while not watching.is_set():
            seen.update(acks(spool))
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    with archiver(env):
        watcher.start()
        try:
            wait_for(lambda: seen, 20, "the agent to push the backlog ahead")
            set_archive_command(env, None)
            done = env.cluster.pgbench("-c", "4", "-j", "2", "-T", "4", timeout=60)
            assert done.returncode == 0, done.stderr
            last = env.cluster.value("SELECT pg_walfile_name(pg_switch_wal())")
            wait_for(lambda: archiver_stats(env)[2] >= last, 30, "the archive to catch up")
        finally:
            watching.set()
            watcher.join(5)
    archived, failed, last_archived = archiver_stats(env)
    assert failed == 0 and last_archived >= last
    span = range(segno(last_before) + 1, segno(last_archived) + 1)
    assert len(span) >= 5
    assert archived - archived_before == len(span)  # each segment archived once, none twice
    stored = archive.segments_by_timeline(PosixStorage(env.repo), env.name, 16 * 2**20)[1]
    assert set(span) <= set(stored)  # and each is in the repository
    assert seen, "the agent never pushed a segment ahead of archive_command"
    assert archive_backlog(env.cluster.pgdata) == (0, 0.0)
    expected = env.cluster.table_checksums()
    assert expected["public.pgbench_accounts"][0] == 800000

    restored, done = env.restore()
    assert "recovery promoted" in done.stdout
    assert restored.table_checksums() == expected
