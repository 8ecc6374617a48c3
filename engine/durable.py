"""Durable file-system writes: temp file, fsync file, rename (or link), fsync directory;
and the loops that write or read a buffer whole.

A reader sees a whole file or none, and once a call returns the data survives a
crash of the machine.
"""

from __future__ import annotations

import os

PathLike = str | os.PathLike[str]


def fsync_dir(path: PathLike) -> None:
    """Make a directory's entries (created, renamed, removed files) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(path: PathLike, mode: int = 0o750) -> None:
    """Create ``path`` and missing parents, making each new directory entry durable."""
    missing: list[str] = []
    current = os.path.abspath(path)
    while not os.path.exists(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, mode)
        except FileExistsError:
            continue
        fsync_dir(os.path.dirname(directory))


def temp_name(path: PathLike) -> str:
    """A unique temporary name beside ``path`` (same directory, so rename is atomic)."""
    head, name = os.path.split(os.fspath(path))
    return os.path.join(head, f".{name}.tmp-{os.getpid()}-{os.urandom(4).hex()}")


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def read_into(fd: int, view: memoryview, offset: int) -> int:
    """Fill ``view`` from ``offset`` of ``fd``; the bytes read (fewer only at the file's end)."""
    done = 0
    while done < len(view):
        n = os.preadv(fd, [view[done:]], offset + done)
        if n == 0:
            break
        done += n
    return done


def _unlink_quietly(path: str) -> None:
    """Remove a temp file; one already gone (or not removable) is not an error here."""
    try:
        os.unlink(path)
    except OSError:
        pass


def _write_temp(path: PathLike, data: bytes | bytearray | memoryview, mode: int) -> str:
    tmp = temp_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        write_all(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        _unlink_quietly(tmp)
        raise
    os.close(fd)
    return tmp


def write_atomic(path: PathLike, data: bytes | bytearray | memoryview, mode: int = 0o640) -> None:
    """Replace ``path`` with ``data`` atomically and durably."""
    tmp = _write_temp(path, data, mode)
    try:
        os.rename(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    fsync_dir(os.path.dirname(os.path.abspath(path)))


def write_new(path: PathLike, data: bytes | bytearray | memoryview, mode: int = 0o640) -> bool:
    """Create ``path`` with ``data`` atomically and durably unless it already exists.

    Returns False, writing nothing, when ``path`` exists (put-if-absent: the link
    either creates the name with the complete content or fails).
    """
    tmp = _write_temp(path, data, mode)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        _unlink_quietly(tmp)
    fsync_dir(os.path.dirname(os.path.abspath(path)))
    return True
