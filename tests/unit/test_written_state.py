"""The record a restore leaves for the next delta restore: which files are still as it wrote them."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from engine.restore import written_state
from engine.restore.written_state import RECORD


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_recorded_files_are_known_until_taken(tmp_path: Path) -> None:
    a = _write(tmp_path / "base" / "1" / "1259", b"a" * 8192)
    b = _write(tmp_path / "PG_VERSION", b"15\n")
    assert written_state.record(tmp_path, [("base/1/1259", b"\x01" * 32), ("PG_VERSION", b"")]) == 2
    known = written_state.take(tmp_path)
    assert set(known) == {"base/1/1259", "PG_VERSION"}
    assert known["base/1/1259"].signature == written_state.current(a)
    assert known["base/1/1259"].list_key == b"\x01" * 32
    assert known["PG_VERSION"].signature == written_state.current(b)
    assert not (tmp_path / RECORD).exists()  # the restore that takes it changes the files
    assert written_state.take(tmp_path) == {}


def test_a_write_that_keeps_size_and_mtime_is_still_seen(tmp_path: Path) -> None:
    path = _write(tmp_path / "base" / "1" / "2600", b"x" * 16384)
    before = os.stat(path)
    written_state.record(tmp_path, [("base/1/2600", b"\x02" * 32)])
    known = written_state.take(tmp_path)["base/1/2600"]
    with open(path, "r+b") as handle:  # same size, then the old mtime put back
        handle.write(b"y" * 8192)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    now = os.stat(path)
    assert (now.st_size, now.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert written_state.current(path) != known.signature  # the ctime moved: it is read again


def test_files_written_just_before_the_record_are_in_it(tmp_path: Path) -> None:
    """The record waits for the file system's clock to pass the newest ctime instead of
    leaving out the files written in its last tick."""
    names = [f"f{i}" for i in range(20)]
    for name in names:
        _write(tmp_path / name, name.encode())
    assert written_state.record(tmp_path, [(n, b"") for n in names]) == len(names)
    assert not (tmp_path / (RECORD + ".clock")).exists()


def test_missing_odd_and_non_regular_paths_are_left_out(tmp_path: Path) -> None:
    _write(tmp_path / "tab\tname", b"1")
    (tmp_path / "dir").mkdir()
    os.symlink(tmp_path / "dir", tmp_path / "link")
    _write(tmp_path / "kept", b"2")
    files = [("tab\tname", b""), ("dir", b""), ("link", b""), ("gone", b""), ("kept", b"")]
    assert written_state.record(tmp_path, files) == 1
    assert set(written_state.take(tmp_path)) == {"kept"}


def test_a_damaged_or_foreign_record_is_ignored(tmp_path: Path) -> None:
    _write(tmp_path / "kept", b"2")
    written_state.record(tmp_path, [("kept", b"")])
    text = (tmp_path / RECORD).read_text()
    for damaged in (text.replace("lifeboat-restored 1", "lifeboat-restored 9"),
                    text.replace("\t", " ", 1), text[:-1], "\x00\x01garbage"):
        (tmp_path / RECORD).write_text(damaged)
        assert written_state.take(tmp_path) == {}
    (tmp_path / RECORD).write_bytes(b"\xff\xfe not text")
    assert written_state.take(tmp_path) == {}


def test_a_record_that_cannot_be_written_leaves_the_restore_complete(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The restore's files are durable before the record is written: a full disk then
    costs the next delta restore its speed-up, not this restore its result."""
    _write(tmp_path / "kept", b"2")

    def full(*_args: object, **_kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(written_state.durable, "write_atomic", full)
    assert written_state.record(tmp_path, [("kept", b"")]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"]  # no record, no probe left
    assert written_state.take(tmp_path) == {}
