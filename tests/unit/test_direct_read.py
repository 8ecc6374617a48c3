"""Reading large files for a backup around the page cache (engine.backup.direct_read)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from engine.backup import direct_read
from engine.backup.direct_read import ALIGN, DIRECT_MIN, read_chunk

CHUNK = 4 * 1024 * 1024


def _file(path: Path, size: int) -> bytes:
    data = os.urandom(size)
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # out of the page cache
    finally:
        os.close(fd)
    return data


def _cached_bytes(path: Path) -> int:
    out = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return int(out.split()[0])


def test_chunks_come_back_exactly_to_the_end_of_an_unaligned_file(tmp_path: Path) -> None:
    size = 2 * CHUNK + 3 * ALIGN + 123  # the last chunk ends inside a page
    data = _file(tmp_path / "16384", size)
    got = b"".join(bytes(read_chunk(tmp_path / "16384", offset, min(CHUNK, size - offset), size))
                   for offset in range(0, size, CHUNK))
    assert got == data
    assert direct_read.available()


def test_a_file_that_shrank_gives_what_it_still_has(tmp_path: Path) -> None:
    data = _file(tmp_path / "16384", 3 * CHUNK)
    os.truncate(tmp_path / "16384", CHUNK + 5000)
    view = read_chunk(tmp_path / "16384", CHUNK, CHUNK, 3 * CHUNK)
    assert view is not None and bytes(view) == data[CHUNK:CHUNK + 5000]
    assert read_chunk(tmp_path / "gone", 0, CHUNK, 3 * CHUNK) is None


@pytest.mark.skipif(shutil.which("fincore") is None, reason="util-linux fincore not installed")
def test_large_files_are_read_without_filling_the_page_cache(tmp_path: Path) -> None:
    """What a backup reads does not push PostgreSQL's working set out of memory; a small
    file goes through the cache."""
    big = tmp_path / "big"
    _file(big, 2 * CHUNK)
    assert _cached_bytes(big) == 0
    for offset in (0, CHUNK):
        assert read_chunk(big, offset, CHUNK, 2 * CHUNK) is not None
    assert _cached_bytes(big) == 0
    small = tmp_path / "small"
    _file(small, DIRECT_MIN // 2)
    assert read_chunk(small, 0, DIRECT_MIN // 2, DIRECT_MIN // 2) is not None
    assert _cached_bytes(small) > 0


def test_a_file_system_without_direct_io_is_read_through_the_cache(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _file(tmp_path / "16384", CHUNK + 77)
    real_open = os.open

    def refusing_open(path: str | os.PathLike[str], flags: int, *args: int) -> int:
        if flags & os.O_DIRECT:
            raise OSError(22, "Invalid argument", str(path))  # as tmpfs answers
        return real_open(path, flags, *args)

    monkeypatch.setattr(direct_read, "_direct_works", True)
    monkeypatch.setattr(os, "open", refusing_open)
    view = read_chunk(tmp_path / "16384", 0, CHUNK, CHUNK + 77)
    assert view is not None and bytes(view) == data[:CHUNK]
    assert not direct_read.available()
