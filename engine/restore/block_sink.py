"""Writing blocks into a file: consecutive blocks are gathered in a page-aligned buffer
and written with one call.

Large files are written with O_DIRECT, which spares the CPU the copy into the page
cache (on a VM as costly as a SHA-256 of the data) and leaves fsync little to do.
Small or unaligned files and file systems without O_DIRECT go through the page cache.
A delta restore patches a batch in an aligned buffer holding what is on disk and writes
the span from its first to its last changed block at once (:func:`write_span`): many
small direct writes would each wait for the device.
"""

from __future__ import annotations

import errno
import mmap
import os
import threading
from pathlib import Path

from engine.durable import read_into

WRITE_BYTES = 1024 * 1024  # blocks gathered into one write
DIRECT_MIN = 1024 * 1024  # files at least this large are written with O_DIRECT
DIRECT_ALIGN = 4096

_buffers = threading.local()
_direct_works = hasattr(os, "O_DIRECT")
_fallocate = None  # libc's fallocate(2), looked up once


def preallocate(fd: int, size: int) -> None:
    """Give the file ``size`` bytes of allocated (unwritten) space, or at least that size.

    Direct writes into the holes of a sparse file make ext4 allocate under the inode's
    exclusive lock, so threads writing parts of one big file wait for each other; into
    preallocated space they proceed together. fallocate(2) is called directly because
    glibc's posix_fallocate falls back to writing zeros where it is not supported.
    """
    global _fallocate
    if size >= DIRECT_MIN:
        if _fallocate is None:
            import ctypes
            import ctypes.util

            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            _fallocate = libc.fallocate
            _fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
        if _fallocate(fd, 0, 0, size) == 0:
            return
    os.ftruncate(fd, size)


def _buffer(size: int, slot: str = "view") -> memoryview:
    """This thread's page-aligned buffer of at least ``size`` bytes in ``slot``."""
    buffer = getattr(_buffers, slot, None)
    if buffer is None or len(buffer) < size:
        buffer = memoryview(mmap.mmap(-1, size))  # anonymous maps are page-aligned
        setattr(_buffers, slot, buffer)
    return buffer


def read_span(path: Path, length: int, offset: int) -> tuple[memoryview, int]:
    """A view of ``length`` bytes of this thread's patch buffer holding what ``path`` has at
    ``offset``, and how many bytes it had (fewer past its end: the rest of the view is
    not the file's). Valid until the thread's next call; patched in place, then given to
    :func:`write_span`."""
    view = _buffer(length, "patch")[:length]
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return view, read_into(fd, view, offset)
    finally:
        os.close(fd)


def write_span(path: Path, size: int, data: memoryview, offset: int) -> None:
    """Write ``data`` (a slice of the patch buffer starting at a block) at ``offset`` of the
    existing file ``path`` of ``size`` bytes, with one direct write where it can."""
    fd = open_for_blocks(path, size)
    try:
        while data:
            n = os.pwrite(fd, data, offset)
            data, offset = data[n:], offset + n
    finally:
        os.close(fd)


def open_for_blocks(path: Path, size: int, direct: bool = True) -> int:
    """A descriptor to write blocks into the existing file ``path`` of ``size`` bytes."""
    global _direct_works
    if direct and _direct_works and size >= DIRECT_MIN and size % DIRECT_ALIGN == 0:
        try:
            return os.open(path, os.O_WRONLY | os.O_CLOEXEC | os.O_DIRECT)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            _direct_works = False  # this file system does not do direct I/O
    return os.open(path, os.O_RDWR | os.O_CLOEXEC)


class BlockSink:
    """Blocks of one file, written at ``block_no * block_size``, gathered while consecutive."""

    def __init__(self, fd: int, block_size: int, capacity: int) -> None:
        self._fd = fd
        self._block_size = block_size
        self._buffer = _buffer(max(WRITE_BYTES, capacity))
        self._filled = 0
        self._first = self._next = -1

    def write(self, block_no: int, data: memoryview) -> None:
        """``data`` is block ``block_no`` and the blocks that follow it."""
        size = self._block_size
        while data:
            if self._filled and (block_no != self._next or self._filled == len(self._buffer)):
                self.flush()
            if not self._filled:
                self._first = block_no
            room = (len(self._buffer) - self._filled) // size * size
            piece = data[:room]
            self._buffer[self._filled:self._filled + len(piece)] = piece
            self._filled += len(piece)
            block_no += -(-len(piece) // size)
            self._next = block_no
            data = data[len(piece):]

    def flush(self) -> None:
        if self._filled:
            os.pwrite(self._fd, self._buffer[:self._filled], self._first * self._block_size)
            self._filled = 0
