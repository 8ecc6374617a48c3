"""Cutting files into blocks, hashing and compressing them in parallel, into packs.

Work is split into chunks of a few MB (whole blocks, so relation files are cut on
page boundaries). Worker threads read a chunk with one pread, hash each block and
compress each frame of consecutive blocks (hashlib and zstandard release the GIL,
so threads run on every core), and append the frames to a pack borrowed for the
moment. Results come back in file order; the number of chunks in flight is
bounded, so memory is too.
"""

from __future__ import annotations

import contextlib
import os
import queue
import secrets
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from engine import layout
from engine.codec import Codec
from engine.manifest import BlockRef, FileEntry
from engine.pgdata import Entry
from engine.storage import ObjectWriter, Storage

CHUNK_BYTES = 4 * 1024 * 1024
Progress = Callable[[int], None]


@dataclass
class _OpenPack:
    index: int
    writer: ObjectWriter


class PackSet:
    """The packs one backup writes. A pack is used by one thread at a time."""

    def __init__(self, storage: Storage, cluster: str, pack_size: int) -> None:
        self._storage = storage
        self._cluster = cluster
        self._pack_size = pack_size
        self._lock = threading.Lock()
        self._idle: queue.SimpleQueue[_OpenPack] = queue.SimpleQueue()
        self._open: list[_OpenPack] = []
        self.ids: list[str] = []
        self.stored_bytes = 0

    def borrow(self) -> _OpenPack:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        pack_id = secrets.token_hex(16)
        writer = self._storage.open_writer(layout.pack_key(self._cluster, pack_id))
        with self._lock:
            pack = _OpenPack(len(self.ids), writer)
            self.ids.append(pack_id)
            self._open.append(pack)
        return pack

    def give_back(self, pack: _OpenPack) -> None:
        if pack.writer.tell() >= self._pack_size:
            self._commit(pack)
        else:
            self._idle.put(pack)

    def _commit(self, pack: _OpenPack) -> None:
        pack.writer.commit()
        with self._lock:
            self._open.remove(pack)
            self.stored_bytes += pack.writer.tell()

    def finish(self) -> list[str]:
        """Commit every open pack (durably); the ids of all packs written."""
        for pack in list(self._open):
            self._commit(pack)
        return list(self.ids)

    def discard(self) -> None:
        """Remove everything written (the backup failed before its manifest)."""
        for pack in list(self._open):
            pack.writer.abort()
        self._open.clear()
        for pack_id in self.ids:
            with contextlib.suppress(Exception):
                self._storage.delete(layout.pack_key(self._cluster, pack_id))


class BlockCopier:
    """Turns data-directory entries into manifest entries, storing their blocks."""

    def __init__(self, packs: PackSet, codec: Codec, block_size: int, frame_size: int,
                 jobs: int) -> None:
        self._packs = packs
        self._codec = codec
        self._block_size = block_size
        self._frame_size = frame_size
        self._jobs = jobs
        self._chunk = max(frame_size, CHUNK_BYTES // frame_size * frame_size)

    def _copy_chunk(self, source: Path, offset: int, length: int) -> list[BlockRef] | None:
        try:
            fd = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            data = os.pread(fd, length, offset)
        finally:
            os.close(fd)
        view = memoryview(data)
        block, frame_size = self._block_size, self._frame_size
        frames: list[tuple[int, bytes, list[tuple[bytes, int, int]]]] = []
        for frame_start in range(0, len(view), frame_size):
            frame = view[frame_start:frame_start + frame_size]
            blocks = [(layout.block_id(frame[skip:skip + block]), skip, len(frame[skip:skip + block]))
                      for skip in range(0, len(frame), block)]
            codec_id, stored = self._codec.compress(frame)
            frames.append((codec_id, stored, blocks))
        if not frames:
            return []
        pack = self._packs.borrow()
        try:
            position = pack.writer.write(b"".join(f[1] for f in frames))
        finally:
            self._packs.give_back(pack)
        refs = []
        for codec_id, stored, blocks in frames:
            frame_digest = layout.block_id(stored)
            refs.extend(BlockRef(digest, pack.index, position, len(stored), raw, codec_id, skip,
                                 frame_digest)
                        for digest, skip, raw in blocks)
            position += len(stored)
        return refs

    def _chunks(self, entry: Entry) -> Iterator[tuple[int, int]]:
        for offset in range(0, entry.size, self._chunk):
            yield offset, min(self._chunk, entry.size - offset)

    def copy(self, entries: Iterable[Entry], progress: Progress | None = None) -> Iterator[FileEntry]:
        """Manifest entries in input order; files that vanished meanwhile are left out."""
        window: deque[tuple[Entry, list[Future[list[BlockRef] | None]]]] = deque()
        in_flight = 0
        limit = self._jobs * 4
        with ThreadPoolExecutor(self._jobs, thread_name_prefix="lifeboat-copy") as pool:
            try:
                for entry in entries:
                    futures = []
                    if entry.kind == "file":
                        for offset, length in self._chunks(entry):
                            future = pool.submit(self._copy_chunk, entry.source, offset, length)
                            if progress is not None:
                                future.add_done_callback(lambda _f, n=length: progress(n))
                            futures.append(future)
                    window.append((entry, futures))
                    in_flight += len(futures)
                    while window and (in_flight > limit or all(f.done() for f in window[0][1])):
                        head, head_futures = window.popleft()
                        in_flight -= len(head_futures)
                        done = self._finish(head, head_futures)
                        if done is not None:
                            yield done
                while window:
                    head, head_futures = window.popleft()
                    done = self._finish(head, head_futures)
                    if done is not None:
                        yield done
            except BaseException:
                for _, futures in window:
                    for future in futures:
                        future.cancel()
                raise

    def _finish(self, entry: Entry, futures: list[Future[list[BlockRef] | None]]) -> FileEntry | None:
        if entry.kind != "file":
            return FileEntry(entry.path, entry.kind, entry.mode, 0, entry.mtime, entry.target)
        blocks: list[BlockRef] = []
        for future in futures:
            refs = future.result()
            if refs is None:
                return None  # removed during the backup; WAL replay removes it too
            blocks.extend(refs)
            if not refs or refs[-1].raw < self._block_size:
                break  # file shrank while read: the rest is replayed from WAL
        size = sum(ref.raw for ref in blocks)
        return FileEntry(entry.path, "file", entry.mode, size, entry.mtime, None, blocks)
