"""Streamed WAL without a server: wal-get from the streaming directory, archiving and pruning
what pg_receivewal wrote, and the pure helpers of the supervisor."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config.schema import parse_config
from engine.errors import ArchiveDamagedError
from engine.repository import layout
from engine.repository.codec import Codec
from engine.repository.storage.posix import PosixStorage
from engine.restore.physical import expected_end
from engine.restore.recovery import RecoveryTarget
from engine.wal import archive
from engine.wal.streaming import StreamingSupervisor, conninfo, standby_names
from lifeboat.cli import main
from tests.unit.conftest import SEGMENT_SIZE, fake_segment
from tests.unit.helpers import summary

CODEC = Codec("zstd", 3)


def seg(segno: int, timeline: int = 1) -> str:
    return f"{timeline:08X}00000000{segno:08X}"


def archived(storage: PosixStorage, tmp_path: Path, *segnos: int) -> None:
    source = tmp_path / "pg_wal"
    source.mkdir(exist_ok=True)
    for segno in segnos:
        (source / seg(segno)).write_bytes(fake_segment(1, segno))
        archive.push(storage, "main", source / seg(segno), CODEC)


def streamed(stream: Path, name: str, data: bytes) -> Path:
    stream.mkdir(exist_ok=True)
    (stream / name).write_bytes(data)
    return stream / name


def partial(segno: int) -> bytes:
    """What pg_receivewal leaves for a segment being received: some WAL, then zeros."""
    return fake_segment(1, segno)[:100_000] + bytes(SEGMENT_SIZE - 100_000)


def test_wal_get_serves_segments_the_repository_lacks_from_the_stream(
        storage: PosixStorage, tmp_path: Path) -> None:
    stream = tmp_path / "stream"
    archived(storage, tmp_path, 2, 3)
    streamed(stream, seg(3), fake_segment(1, 3, fill=9))  # the repository's copy wins
    streamed(stream, seg(4), fake_segment(1, 4))
    streamed(stream, seg(5) + ".partial", partial(5))
    dest = tmp_path / "RECOVERYXLOG"
    for segno, expected in ((3, fake_segment(1, 3)), (4, fake_segment(1, 4)), (5, partial(5))):
        assert archive.get(storage, "main", seg(segno), dest, str(stream))
        assert dest.read_bytes() == expected
    assert not archive.get(storage, "main", seg(6), dest, str(stream))  # past the end
    assert not archive.get(storage, "main", seg(6), dest, str(tmp_path / "no-such-dir"))
    assert not archive.get(storage, "main", "00000002.history", dest, str(stream))


def test_a_gap_before_streamed_wal_stops_recovery(storage: PosixStorage, tmp_path: Path) -> None:
    stream = tmp_path / "stream"
    archived(storage, tmp_path, 2)
    streamed(stream, seg(4) + ".partial", partial(4))
    with pytest.raises(ArchiveDamagedError, match=rf"{seg(3)} is missing.*{seg(4)}\.partial"):
        archive.get(storage, "main", seg(3), tmp_path / "x", str(stream))
    streamed(stream, seg(3) + ".partial", b"truncated")
    with pytest.raises(ArchiveDamagedError, match="not a whole"):
        archive.get(storage, "main", seg(3), tmp_path / "x", str(stream))


def write_config(tmp_path: Path, streaming: str = "enabled = true") -> Path:
    (tmp_path / "repo").mkdir(exist_ok=True)
    path = tmp_path / "lifeboat.toml"
    path.write_text(f'os_user = "root"\n[repository]\npath = "{tmp_path}/repo"\n'
                    f'[clusters.main]\npgdata = "{tmp_path}/pgdata"\nport = 1\n'
                    f'[clusters.main.streaming]\ndirectory = "{tmp_path}/stream"\n{streaming}\n'
                    f'[clusters.main.objectives]\nrpo = "0s"\n')
    return path


def test_wal_get_command_reads_the_configured_stream(
        storage: PosixStorage, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = str(write_config(tmp_path))
    streamed(tmp_path / "stream", seg(2) + ".partial", partial(2))
    dest = tmp_path / "RECOVERYXLOG"
    assert main(["--config", config, "wal-get", seg(2), str(dest)]) == 0
    assert dest.read_bytes() == partial(2)
    assert main(["--config", config, "wal-get", seg(3), str(dest)]) == 1
    streamed(tmp_path / "stream", seg(5) + ".partial", partial(5))
    assert main(["--config", config, "wal-get", seg(3), str(dest)]) == 128
    assert "missing" in capsys.readouterr().err
    off = str(write_config(tmp_path, "enabled = false"))
    assert main(["--config", off, "wal-get", seg(2), str(dest)]) == 1


def test_supervisor_archives_complete_segments_and_prunes_them(
        storage: PosixStorage, tmp_path: Path) -> None:
    config = parse_config(write_config(tmp_path).read_bytes(), "test")
    seen: list[tuple[str, str, str]] = []
    supervisor = StreamingSupervisor(config, "main", storage, lambda *e: seen.append(e))
    assert supervisor.synchronous  # rpo 0 with synchronous = "auto"
    stream = tmp_path / "stream"
    for segno in (2, 3, 4, 5):
        streamed(stream, seg(segno), fake_segment(1, segno))
    streamed(stream, seg(6) + ".partial", partial(6))
    archived(storage, tmp_path, 2)  # archive_command was first for this one: a no-op
    assert supervisor.archive_streamed() == 4
    for segno in (2, 3, 4, 5):
        assert storage.exists(layout.wal_key("main", seg(segno)))
    assert sorted(p.name for p in stream.iterdir()) == [seg(4), seg(5), seg(6) + ".partial"]
    assert supervisor.archive_streamed() == 0
    streamed(stream, seg(7), fake_segment(1, 7, fill=3))
    archived(storage, tmp_path, 7)  # different content in the repository: refused, reported
    assert supervisor.archive_streamed() == 0
    assert [kind for kind, _, _ in seen] == ["stream_archive_failed"]
    assert "different content" in seen[0][2] and (stream / seg(7)).exists()
    assert supervisor.status().archived_segments == 4 and not supervisor.status().running


def test_expected_end_counts_complete_streamed_segments(storage: PosixStorage, tmp_path: Path) -> None:
    stream = tmp_path / "stream"
    archived(storage, tmp_path, 2, 3)
    backup = summary(start_lsn="0/2000028", stop_lsn="0/2000100")
    latest = RecoveryTarget("latest")
    assert expected_end(storage, "main", backup, latest, str(stream)) == seg(3)
    streamed(stream, seg(4), fake_segment(1, 4))
    streamed(stream, seg(5) + ".partial", partial(5))
    assert expected_end(storage, "main", backup, latest, str(stream)) == seg(4)
    assert expected_end(storage, "main", backup, latest) == seg(3)


@pytest.mark.parametrize(("setting", "names"), [
    ("", []),
    ('"lifeboat_receiver"', ["lifeboat_receiver"]),
    ("FIRST 1 (s1, \"Lifeboat_Receiver\")", ["s1", "lifeboat_receiver"]),
    ("ANY 2 (a,b , c)", ["a", "b", "c"]),
    ("2 (a, b)", ["a", "b"]),
    ("a, *", ["a", "*"]),
])
def test_standby_names(setting: str, names: list[str]) -> None:
    assert standby_names(setting) == names


def test_conninfo_quotes_every_value() -> None:
    assert conninfo(host="/run/pg", port=5432, user="o'brien", application_name=None,
                    password="a\\b") == "host='/run/pg' port='5432' user='o\\'brien' password='a\\\\b'"


def test_stopping_a_stopped_receiver_lets_it_exit_cleanly_at_once(storage: PosixStorage,
                                                                  tmp_path: Path) -> None:
    """A receiver frozen by SIGSTOP (a debugger, a frozen cgroup) keeps SIGINT pending: the
    supervisor continues it, so it flushes and exits now rather than being killed after
    STOP_TIMEOUT while the agent's loop waits."""
    import signal
    import subprocess
    import sys
    import time

    config = parse_config(write_config(tmp_path).read_bytes(), "test")
    supervisor = StreamingSupervisor(config, "main", storage)
    code = "import signal, sys, time; signal.signal(signal.SIGINT, lambda *_: sys.exit(0)); time.sleep(60)"
    process = subprocess.Popen([sys.executable, "-c", code])
    time.sleep(0.5)  # the handler is in place
    process.send_signal(signal.SIGSTOP)
    supervisor._active, supervisor._process = True, process  # a receiver it started, now frozen
    started = time.monotonic()
    supervisor.stop()
    assert process.returncode == 0  # exited through its SIGINT handler, not killed
    assert time.monotonic() - started < 5
