"""Async WAL archiving: the agent's pass, the acknowledgements, wal-push's confirmation."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from engine.config.schema import Config, parse_config
from engine.repository import layout
from engine.repository.storage.posix import PosixStorage
from engine.wal import archive
from engine.wal import async_archive as wal_async
from lifeboat.cli import main
from tests.overlap import Overlap, OverlapStorage
from tests.unit.conftest import fake_segment

SEG = [f"0000000100000000000000{n:02X}" for n in range(1, 8)]


def make_config(tmp_path: Path, mode: str = "async") -> Path:
    path = tmp_path / "lifeboat.toml"
    path.write_text(f'os_user = "root"\n[repository]\npath = "{tmp_path}/repo"\n'
                    f'[clusters.main]\npgdata = "{tmp_path}/pgdata"\nport = 1\n'
                    f'[clusters.main.archive]\nmode = "{mode}"\nspool = "{tmp_path}/spool"\n'
                    "push_jobs = 3\n")
    return path


def load(path: Path) -> Config:
    return parse_config(path.read_bytes(), path)


def wal_file(tmp_path: Path, name: str, data: bytes | None = None, ready: bool = True) -> Path:
    """A completed WAL file in pg_wal, with its .ready status unless told otherwise."""
    status = tmp_path / "pgdata" / "pg_wal" / "archive_status"
    status.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "pgdata" / "pg_wal" / name
    path.write_bytes(fake_segment(1, int(name[16:], 16)) if data is None else data)
    if ready:  # completed a while ago: past the archiver's grace
        (status / f"{name}.ready").touch()
        os.utime(status / f"{name}.ready", (time.time() - 60, time.time() - 60))
    return path


def mark_archived(tmp_path: Path, name: str) -> None:
    """What PostgreSQL does once archive_command succeeded."""
    status = tmp_path / "pgdata" / "pg_wal" / "archive_status"
    os.rename(status / f"{name}.ready", status / f"{name}.done")


def wal_push(tmp_path: Path, path: Path) -> int:
    return main(["--config", str(tmp_path / "lifeboat.toml"), "wal-push", str(path)])


@pytest.fixture
def archiver(tmp_path: Path, storage: PosixStorage) -> wal_async.AsyncArchiver:
    return wal_async.AsyncArchiver(load(make_config(tmp_path)), "main", storage)


def archived(storage: PosixStorage, name: str) -> bool:
    return storage.exists(layout.wal_key("main", name))


def test_pass_pushes_ready_files_in_parallel_and_acknowledges_them(
        tmp_path: Path, storage: PosixStorage) -> None:
    overlap = Overlap(want=3)
    archiver = wal_async.AsyncArchiver(load(make_config(tmp_path)), "main",
                                       OverlapStorage(storage, overlap, ("put_if_absent",)))
    for name in SEG[:5]:
        wal_file(tmp_path, name)
    wal_file(tmp_path, SEG[5], ready=False)  # still being written: not ready
    assert archiver.push_ready() == 5
    assert overlap.calls == 5 and overlap.peak == archiver.jobs == 3  # push_jobs at once, no more
    assert [archived(storage, n) for n in SEG[:6]] == [True] * 5 + [False]
    assert sorted(os.listdir(tmp_path / "spool" / "main")) == [f"{n}.ack" for n in SEG[:5]]
    dest = tmp_path / "restored"
    assert archive.get(storage, "main", SEG[2], dest)
    assert dest.read_bytes() == fake_segment(1, 3)
    assert archiver.push_ready() == 0  # acknowledged: nothing more to do


def test_a_pass_is_bounded_so_a_stop_is_seen_soon(tmp_path: Path, storage: PosixStorage) -> None:
    """A stop asked during the first push is obeyed once that pass ends: after push_jobs x
    BATCH_PER_JOB files, not after the whole backlog."""
    names = [f"0000000100000000000000{n:02X}" for n in range(1, 16)]
    for name in names:
        wal_file(tmp_path, name)
    stop = threading.Event()
    stopping = OverlapStorage(storage, Overlap(want=1), ("put_if_absent",),
                              before=lambda _name: stop.set())
    archiver = wal_async.AsyncArchiver(load(make_config(tmp_path)), "main", stopping)
    thread = threading.Thread(target=archiver.run, args=(stop, 0.02))
    thread.start()
    thread.join(30)
    assert not thread.is_alive()
    pushed = [name for name in names if archived(storage, name)]
    assert pushed == names[:3 * wal_async.BATCH_PER_JOB] and len(pushed) == 12  # push_jobs = 3
    again = wal_async.AsyncArchiver(load(make_config(tmp_path)), "main", storage)
    assert again.push_ready() == 3  # the rest, in the next pass
    assert all(archived(storage, name) for name in names)


def test_wal_push_confirms_a_matching_ack_without_pushing(
        tmp_path: Path, storage: PosixStorage, archiver: wal_async.AsyncArchiver) -> None:
    path = wal_file(tmp_path, SEG[0])
    assert archiver.push_ready() == 1
    storage.delete(layout.wal_key("main", SEG[0]))  # so a real push would show
    assert wal_push(tmp_path, path) == 0
    assert not archived(storage, SEG[0])  # the ack path did not push (nor read) it
    assert not (tmp_path / "spool" / "main" / f"{SEG[0]}.ack").exists()  # consumed
    assert wal_push(tmp_path, path) == 0 and archived(storage, SEG[0])  # now a real push


def test_ack_of_a_changed_file_does_not_match(
        tmp_path: Path, storage: PosixStorage, archiver: wal_async.AsyncArchiver) -> None:
    path = wal_file(tmp_path, SEG[0])
    assert archiver.push_ready() == 1
    storage.delete(layout.wal_key("main", SEG[0]))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    assert not wal_async.ack_matches(str(tmp_path / "spool" / "main"), str(path), "main",
                                     str(tmp_path / "repo"))
    assert wal_push(tmp_path, path) == 0
    assert archived(storage, SEG[0])  # pushed for real
    assert not (tmp_path / "spool" / "main" / f"{SEG[0]}.ack").exists()


def test_stale_ack_for_another_file_is_ignored_and_a_real_push_happens(
        tmp_path: Path, storage: PosixStorage) -> None:
    make_config(tmp_path)
    other = wal_file(tmp_path, SEG[1], ready=False)  # another file's identity
    path = wal_file(tmp_path, SEG[0])
    spool = tmp_path / "spool" / "main"
    spool.mkdir(parents=True)
    (spool / f"{SEG[0]}.ack").write_text(
        wal_async.ack_text(other.stat(), "main", str(tmp_path / "repo")))
    assert wal_push(tmp_path, path) == 0
    assert archived(storage, SEG[0])
    assert not (spool / f"{SEG[0]}.ack").exists()


def test_ack_for_another_repository_or_cluster_does_not_match(tmp_path: Path) -> None:
    path = wal_file(tmp_path, SEG[0])
    spool = tmp_path / "spool"
    spool.mkdir()
    ack = spool / f"{SEG[0]}.ack"
    ack.write_text(wal_async.ack_text(path.stat(), "main", "/elsewhere"))
    assert not wal_async.ack_matches(str(spool), str(path), "main", str(tmp_path / "repo"))
    ack.write_text(wal_async.ack_text(path.stat(), "other", str(tmp_path / "repo")))
    assert not wal_async.ack_matches(str(spool), str(path), "main", str(tmp_path / "repo"))
    ack.write_text(wal_async.ack_text(path.stat(), "main", str(tmp_path / "repo"))[:-8])  # torn
    assert wal_async.consume_ack(str(spool), str(path), "main", str(tmp_path / "repo")) is False
    assert not ack.exists()
    ack.write_text(wal_async.ack_text(path.stat(), "main", str(tmp_path / "repo")))
    assert wal_async.consume_ack(str(spool), str(path), "main", str(tmp_path / "repo")) is True
    assert wal_async.consume_ack(str(spool), str(path), "main", str(tmp_path / "repo")) is None


def test_agent_repushes_a_file_whose_ack_is_stale(
        tmp_path: Path, storage: PosixStorage, archiver: wal_async.AsyncArchiver) -> None:
    other = wal_file(tmp_path, SEG[1], ready=False)
    path = wal_file(tmp_path, SEG[0])
    spool = tmp_path / "spool" / "main"
    spool.mkdir(parents=True)
    (spool / f"{SEG[0]}.ack").write_text(
        wal_async.ack_text(other.stat(), "main", str(tmp_path / "repo")))
    assert archiver.pending() == [SEG[0]]
    assert archiver.push_ready() == 1 and archived(storage, SEG[0])
    assert wal_async.ack_matches(str(spool), str(path), "main", str(tmp_path / "repo"))


def test_acks_of_an_earlier_agent_are_adopted(tmp_path: Path, storage: PosixStorage) -> None:
    config = load(make_config(tmp_path))
    wal_file(tmp_path, SEG[0])
    assert wal_async.AsyncArchiver(config, "main", storage).push_ready() == 1
    assert wal_async.AsyncArchiver(config, "main", storage).pending() == []


def test_sync_mode_ignores_acks(tmp_path: Path, storage: PosixStorage) -> None:
    path = wal_file(tmp_path, SEG[0])
    wal_async.AsyncArchiver(load(make_config(tmp_path)), "main", storage).push_ready()
    storage.delete(layout.wal_key("main", SEG[0]))
    make_config(tmp_path, mode="sync")
    assert wal_push(tmp_path, path) == 0 and archived(storage, SEG[0])


def test_cleanup_removes_acks_of_archived_files_only(
        tmp_path: Path, archiver: wal_async.AsyncArchiver) -> None:
    for name in SEG[:3]:
        wal_file(tmp_path, name)
    assert archiver.push_ready() == 3
    spool = tmp_path / "spool" / "main"
    leftover = spool / f".{SEG[0]}.ack.tmp-1-abcd"
    leftover.write_text("x")
    os.utime(leftover, (time.time() - 3600, time.time() - 3600))
    mark_archived(tmp_path, SEG[0])
    mark_archived(tmp_path, SEG[1])
    assert archiver.cleanup() == 3
    assert sorted(os.listdir(spool)) == [f"{SEG[2]}.ack"]
    assert archiver.pending() == []


def test_fresh_files_are_pushed_at_once(tmp_path: Path, storage: PosixStorage,
                                        archiver: wal_async.AsyncArchiver) -> None:
    for name in SEG[:3]:
        wal_file(tmp_path, name)
        (tmp_path / "pgdata" / "pg_wal" / "archive_status" / f"{name}.ready").touch()  # just now
    assert archiver.pending() == SEG[:3]
    assert archiver.push_ready() == 3  # the first pass, no grace period
    assert all(archived(storage, name) for name in SEG[:3])
    spool = str(tmp_path / "spool" / "main")
    assert all(wal_async.ack_matches(spool, str(tmp_path / "pgdata" / "pg_wal" / name), "main",
                                     str(tmp_path / "repo")) for name in SEG[:3])


def test_wal_push_waits_for_a_live_agent_and_not_for_a_dead_one(
        tmp_path: Path, archiver: wal_async.AsyncArchiver) -> None:
    path = wal_file(tmp_path, SEG[0])
    spool, repo = archiver.spool, archiver.repository
    assert not wal_async.agent_alive(spool)
    started = time.monotonic()
    assert not wal_async.await_ack(spool, str(path), "main", repo, wait=5)  # no agent: no wait
    assert time.monotonic() - started < 1
    archiver.heartbeat()
    assert wal_async.agent_alive(spool)
    pusher = threading.Timer(0.3, archiver.push_ready)
    pusher.start()
    started = time.monotonic()
    assert wal_async.await_ack(spool, str(path), "main", repo, wait=10)  # the agent's push
    assert 0.2 < time.monotonic() - started < 5
    pusher.join()
    other = wal_file(tmp_path, SEG[1], ready=False)  # never pushed ahead: wait, then give up
    started = time.monotonic()
    assert not wal_async.await_ack(spool, str(other), "main", repo, wait=0.5)
    assert time.monotonic() - started >= 0.5
    # an acknowledgement for another file of that name: the agent will not send another,
    # so wal-push pushes the file itself at once instead of waiting
    Path(wal_async.ack_path(spool, SEG[1])).write_text(wal_async.ack_text(path.stat(), "main", repo))
    started = time.monotonic()
    assert not wal_async.await_ack(spool, str(other), "main", repo, wait=10)
    assert time.monotonic() - started < 1
    stale = time.time() - wal_async.HEARTBEAT_FRESH - 1
    os.utime(os.path.join(spool, wal_async.HEARTBEAT), (stale, stale))
    assert not wal_async.agent_alive(spool)
    archiver.close()
    assert not os.path.exists(os.path.join(spool, wal_async.HEARTBEAT))


def test_history_files_go_first(tmp_path: Path) -> None:
    wal_file(tmp_path, SEG[0])
    wal_file(tmp_path, "00000002.history", b"1\t0/3000000\tno recovery target specified\n")
    assert wal_async.ready_names(tmp_path / "pgdata") == ["00000002.history", SEG[0]]


def test_a_failing_push_is_reported_once_and_does_not_stop_the_others(
        tmp_path: Path, storage: PosixStorage) -> None:
    events: list[tuple[str, str, str]] = []
    archiver = wal_async.AsyncArchiver(load(make_config(tmp_path)), "main", storage,
                                       on_event=lambda *event: events.append(event))
    archiver.retry_delay = 0.2
    wal_file(tmp_path, SEG[0], data=b"too short")  # refused by archive.push
    wal_file(tmp_path, SEG[1])
    assert archiver.push_ready() == 1 and archived(storage, SEG[1])
    assert archiver.pending() == []  # backing off
    time.sleep(0.25)
    assert archiver.pending() == [SEG[0]]
    assert archiver.push_ready() == 0  # retried, not reported again
    time.sleep(0.45)  # the delay doubled
    assert [(kind, severity) for kind, severity, _ in events] == [("archive_push_failed", "error")]
    assert SEG[0] in events[0][2] and "bytes" in events[0][2]
    wal_file(tmp_path, SEG[0])  # PostgreSQL's real segment
    assert archiver.push_ready() == 1
    assert events[-1][:2] == ("archive_push_recovered", "info")


def test_run_survives_errors_and_stops(tmp_path: Path, storage: PosixStorage) -> None:
    events: list[tuple[str, str, str]] = []
    archiver = wal_async.AsyncArchiver(load(make_config(tmp_path)), "main", storage,
                                       on_event=lambda *event: events.append(event))
    stop = threading.Event()
    thread = threading.Thread(target=archiver.run, args=(stop, 0.02))
    thread.start()
    try:
        time.sleep(0.2)  # no pg_wal yet: every pass fails
        wal_file(tmp_path, SEG[0])
        deadline = time.monotonic() + 10
        while not archived(storage, SEG[0]) and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    assert archived(storage, SEG[0])
    assert [kind for kind, _, _ in events] == ["archive_async_error"]


def test_archive_backlog(tmp_path: Path) -> None:
    status = tmp_path / "pgdata" / "pg_wal" / "archive_status"
    status.mkdir(parents=True)
    assert wal_async.archive_backlog(tmp_path / "pgdata") == (0, 0.0)
    for name, mtime in ((SEG[0], 1000.0), (SEG[1], 1004.5), (SEG[2], 1009.0)):
        (status / f"{name}.ready").touch()
        os.utime(status / f"{name}.ready", (mtime, mtime))
    (status / f"{SEG[3]}.done").touch()
    os.utime(status / f"{SEG[3]}.done", (1.0, 1.0))
    assert wal_async.archive_backlog(tmp_path / "pgdata", now=1010.0) == (3, 10.0)
    assert wal_async.archive_backlog(tmp_path / "pgdata", now=900.0) == (3, 0.0)


def test_confirming_imports_nothing_heavy(tmp_path: Path, storage: PosixStorage) -> None:
    config = make_config(tmp_path)
    path = wal_file(tmp_path, SEG[0])
    wal_async.AsyncArchiver(load(config), "main", storage).push_ready()
    heavy = ("pydantic", "psycopg", "argparse", "concurrent.futures", "engine.wal.archive",
             "engine.repository.codec", "zstandard")
    probe = ("import sys; from lifeboat.cli import main; rc = main(sys.argv[1:]); "
             f"print(rc, [m for m in {heavy!r} if m in sys.modules]); sys.exit(rc)")
    command = [sys.executable, "-c", probe, "--config", str(config), "wal-push", str(path)]
    env = {"LIFEBOAT_CACHE_DIR": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-c", "from engine.config.cache import validated_plain; "
                    f"validated_plain({str(config)!r})"], env=env, check=True, cwd=os.getcwd())
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=30)
    assert (done.returncode, done.stdout.strip()) == (0, "0 []"), done.stderr
    assert not (tmp_path / "spool" / "main" / f"{SEG[0]}.ack").exists()
