"""Cutting files into blocks, hashing and compressing them in parallel, into packs.

Work is split into chunks of a few MB (whole blocks, so relation files are cut on
page boundaries). Worker threads read a chunk with one pread, hash each block, and
compress each frame (a run of consecutive new blocks) with zstandard; hashlib and
zstandard release the GIL, so threads run on every core. Frames are appended to a
pack borrowed for the moment. Results come back in file order; the number of chunks
in flight is bounded, so memory is too.

An incremental backup passes the base backup's files: a block whose SHA-256 the base
already holds for the same file is not stored again but referenced, so every backup
still lists all of its blocks and restores on its own.
"""

from __future__ import annotations

import contextlib
import os
import queue
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from engine.postgres.pgdata import Entry, file_kind, relation_segment
from engine.repository import layout
from engine.repository.codec import ZSTD, Codec
from engine.repository.manifest import BlockRef, FileEntry, Manifest
from engine.repository.storage import ObjectWriter, Storage

CHUNK_BYTES = 4 * 1024 * 1024
MTIME_MARGIN = 1.0  # seconds: a file modified this close to the base backup is re-read
ADAPT_EVERY = 5.0  # seconds between two changes of the compression level
Progress = Callable[[int], None]
ChunkResult = tuple[list[BlockRef], list[int]] | None  # block refs, corrupt pages; None: gone


@dataclass
class _OpenPack:
    index: int
    writer: ObjectWriter


class PackSet:
    """The packs one backup refers to: those it writes, and those of its base it reuses.

    A pack being written is used by one thread at a time.
    """

    def __init__(self, storage: Storage, cluster: str, pack_size: int) -> None:
        self._storage = storage
        self._cluster = cluster
        self._pack_size = pack_size
        self._lock = threading.Lock()
        self._idle: queue.SimpleQueue[_OpenPack] = queue.SimpleQueue()
        self._open: list[_OpenPack] = []
        self._adopted: dict[str, int] = {}
        self._written: list[str] = []
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
            self._written.append(pack_id)
            self._open.append(pack)
        return pack

    def adopt(self, pack_id: str) -> int:
        """The index under which this backup refers to an existing pack."""
        with self._lock:
            index = self._adopted.get(pack_id)
            if index is None:
                index = self._adopted[pack_id] = len(self.ids)
                self.ids.append(pack_id)
            return index

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
        """Commit every open pack (durably); the ids of all packs referred to."""
        for pack in list(self._open):
            self._commit(pack)
        return list(self.ids)

    def discard(self) -> None:
        """Remove what this backup wrote (it failed before its manifest); never a base's."""
        for pack in list(self._open):
            pack.writer.abort()
        self._open.clear()
        for pack_id in self._written:
            with contextlib.suppress(Exception):
                self._storage.delete(layout.pack_key(self._cluster, pack_id))


class BaseFiles:
    """The base backup's files, looked up in the order the data directory is walked.

    Both the walk and the manifest are in that order, so the base manifest is read as a
    stream, one file at a time, whatever the database's size.
    """

    def __init__(self, manifest: Manifest, trust_mtime_before: float, use_mtime: bool) -> None:
        self.id = manifest.summary.id
        self.pack_ids = manifest.summary.packs
        self.trust_mtime_before = trust_mtime_before
        self.use_mtime = use_mtime
        self._entries = manifest.entries()
        self._current: FileEntry | None = next(self._entries, None)

    def find(self, path: str) -> FileEntry | None:
        key = path.split("/")
        while self._current is not None and self._current.path.split("/") < key:
            self._current = next(self._entries, None)
        if self._current is not None and self._current.path == path:
            return self._current
        return None

    def unchanged(self, prior: FileEntry, entry: Entry) -> bool:
        """Safe to reuse without reading: same size and mtime, and that mtime well before
        the base backup began (a change in the same second could keep the mtime)."""
        return (self.use_mtime and prior.kind == "file" and prior.size == entry.size
                and prior.mtime == entry.mtime and entry.mtime < self.trust_mtime_before)


@dataclass
class _Prior:
    """What the base holds of the file a chunk belongs to."""

    blocks: list[BlockRef]
    by_digest: dict[bytes, BlockRef] = field(default_factory=dict)


@dataclass
class CopyStats:
    reused_files: int = 0
    reused_bytes: int = 0
    kinds: dict[str, list[int]] = field(default_factory=dict)  # kind -> [raw, stored] of new data
    level_changes: list[str] = field(default_factory=list)


class BlockCopier:
    """Turns data-directory entries into manifest entries, storing their new blocks."""

    def __init__(self, packs: PackSet, codec: Codec, block_size: int, frame_size: int,
                 jobs: int, base: BaseFiles | None = None, check_pages_before: int | None = None,
                 time_budget: float | None = None) -> None:
        """``check_pages_before``: verify PostgreSQL page checksums of relation files, judging
        pages whose LSN is below this (the backup's start LSN); None when the cluster has no
        data checksums."""
        self._packs = packs
        self._codec = codec
        self._block_size = block_size
        self._frame_blocks = max(1, frame_size // block_size)
        self._jobs = jobs
        self._chunk = max(frame_size, CHUNK_BYTES // frame_size * frame_size)
        self._base = base
        self.stats = CopyStats()
        self._stats_lock = threading.Lock()
        self._compresses: set[str] = set()  # files seen to compress well
        self._adopted: dict[int, int] = {}  # base pack index -> this backup's
        self._budget = time_budget
        self._started = time.monotonic()
        self._last_change = self._started
        self._start_lsn = check_pages_before
        self._pagecheck = None
        if check_pages_before is not None:
            from engine.postgres import pagecheck  # only for clusters with data checksums

            self._pagecheck = pagecheck

    def _reuse(self, ref: BlockRef) -> BlockRef:
        assert self._base is not None
        pack = self._adopted.get(ref.pack)
        if pack is None:
            pack = self._adopted[ref.pack] = self._packs.adopt(self._base.pack_ids[ref.pack])
        return BlockRef(ref.digest, pack, ref.offset, ref.stored, ref.raw, ref.codec, ref.skip,
                        ref.frame_digest)

    def _copy_chunk(self, source: Path, offset: int, length: int, prior: _Prior | None,
                    first_page: int | None, kind: str) -> ChunkResult:
        try:
            fd = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            data = os.pread(fd, length, offset)
        finally:
            os.close(fd)
        view = memoryview(data)
        size = self._block_size
        digests = [layout.block_id(view[i:i + size]) for i in range(0, len(view), size)]
        refs: list[BlockRef | None] = [None] * len(digests)
        reused = 0
        if prior is not None:
            for i, digest in enumerate(digests):
                raw = min(size, len(view) - i * size)
                old = prior.blocks[i] if i < len(prior.blocks) else None
                if old is None or old.digest != digest:
                    old = prior.by_digest.get(digest)
                if old is not None and old.raw == raw:
                    refs[i] = self._reuse(old)
                    reused += raw
        if reused:
            with self._stats_lock:
                self.stats.reused_bytes += reused
        corrupt = self._check_pages(source, view, offset, first_page, refs)
        raw, stored = self._store_new(view, digests, refs, str(source))
        if raw:
            with self._stats_lock:
                totals = self.stats.kinds.setdefault(kind, [0, 0])
                totals[0] += raw
                totals[1] += stored
        return refs, corrupt  # type: ignore[return-value]

    def _check_pages(self, source: Path, view: memoryview, offset: int, first_page: int | None,
                     refs: list[BlockRef | None]) -> list[int]:
        """PostgreSQL page checksums of the new blocks (those of reused blocks were checked
        when they were first stored): block numbers that fail, even when read again."""
        if first_page is None or self._pagecheck is None:
            return []
        per_block = self._block_size // self._pagecheck.PAGE
        new = [i for i, ref in enumerate(refs) if ref is None]
        if not new:
            return []
        pages = len(view) // self._pagecheck.PAGE  # the last block may hold fewer pages
        only = None if len(new) == len(refs) else [
            page for i in new for page in range(i * per_block, min(pages, (i + 1) * per_block))]
        suspects = self._pagecheck.bad_pages(view, first_page, self._start_lsn, only)
        if not suspects:
            return []
        return self._pagecheck.confirm(str(source), suspects, offset, first_page, self._start_lsn)

    def _store_new(self, view: memoryview, digests: list[bytes],
                   refs: list[BlockRef | None], path: str) -> tuple[int, int]:
        """Compress the chunk's new blocks, in order, in frames of up to frame_size and append
        them to a pack; the raw and stored bytes of what was new.

        New blocks need not be neighbours: the scattered blocks an incremental backup stores
        share frames, which compress far better than each block alone.
        """
        size = self._block_size
        new = [i for i, ref in enumerate(refs) if ref is None]
        frames: list[tuple[list[int], int, bytes]] = []  # blocks, codec, stored bytes
        raw_total = 0
        for start in range(0, len(new), self._frame_blocks):
            members = new[start:start + self._frame_blocks]
            if members[-1] - members[0] == len(members) - 1:  # neighbours: no copy needed
                frame: memoryview | bytes = view[members[0] * size:(members[-1] + 1) * size]
            else:
                frame = b"".join(view[i * size:(i + 1) * size] for i in members)
            codec_id, stored = self._codec.compress(frame, probe=path not in self._compresses)
            if len(stored) < 0.8 * len(frame):
                self._compresses.add(path)  # the rest of this file need not be probed
            frames.append((members, codec_id, stored))
            raw_total += len(frame)
        if not frames:
            return 0, 0
        pack = self._packs.borrow()
        try:
            position = pack.writer.write(b"".join(f[2] for f in frames))
        finally:
            self._packs.give_back(pack)
        for members, codec_id, stored in frames:
            frame_digest = layout.frame_checksum(stored)
            skip = 0
            for i in members:
                raw = min(size, len(view) - i * size)
                refs[i] = BlockRef(digests[i], pack.index, position, len(stored), raw, codec_id,
                                   skip, frame_digest)
                skip += raw
            position += len(stored)
        return raw_total, sum(len(f[2]) for f in frames)

    def _chunks(self, entry: Entry) -> Iterator[tuple[int, int]]:
        for offset in range(0, entry.size, self._chunk):
            yield offset, min(self._chunk, entry.size - offset)

    def _prior_for(self, prior: FileEntry | None, offset: int) -> _Prior | None:
        if prior is None:
            return None
        first = offset // self._block_size
        blocks = prior.blocks[first:first + self._chunk // self._block_size]
        return _Prior(blocks, self._by_digest(prior))

    def _by_digest(self, prior: FileEntry) -> dict[bytes, BlockRef]:
        cached = getattr(self, "_digest_cache", None)
        if cached is None or cached[0] is not prior:
            cached = (prior, {b.digest: b for b in prior.blocks})
            self._digest_cache = cached
        return cached[1]

    def _adapt(self, done: int, total: int) -> None:
        """Lower the zstd level by one when the copy is projected to overrun its time budget
        (at most every few seconds, so each change can show its effect)."""
        now = time.monotonic()
        level = self._codec.level
        if (self._budget is None or done <= 0 or level <= 1 or self._codec.codec_id != ZSTD
                or now - self._last_change < ADAPT_EVERY):
            return
        projected = (now - self._started) * total / done
        if projected > self._budget:
            self._codec.set_level(level - 1)
            self._last_change = now
            self.stats.level_changes.append(
                f"zstd level {level} -> {level - 1} at {100 * done / total:.0f}%: projected "
                f"{projected:.0f}s > time budget {self._budget:g}s")

    def copy(self, entries: Iterable[Entry], progress: Progress | None = None) -> Iterator[FileEntry]:
        """Manifest entries in input order; files that vanished meanwhile are left out."""
        entries = list(entries)
        total = sum(e.size for e in entries) or 1
        done = 0
        window: deque[tuple[Entry, list[Future[ChunkResult]], FileEntry | None]] = deque()
        in_flight = 0
        limit = self._jobs * 4
        with ThreadPoolExecutor(self._jobs, thread_name_prefix="lifeboat-copy") as pool:
            try:
                for entry in entries:
                    futures: list[Future[ChunkResult]] = []
                    reused: FileEntry | None = None
                    if entry.kind == "file":
                        prior = self._base.find(entry.path) if self._base else None
                        if prior is not None and self._base is not None and \
                                self._base.unchanged(prior, entry):
                            reused = FileEntry(entry.path, "file", entry.mode, prior.size,
                                               entry.mtime, None, [self._reuse(b) for b in prior.blocks])
                            self.stats.reused_files += 1
                            self.stats.reused_bytes += prior.size
                            if progress is not None:
                                progress(entry.size)
                        else:
                            segment = (relation_segment(entry.path)
                                       if self._pagecheck is not None else None)
                            for offset, length in self._chunks(entry):
                                first_page = None if segment is None else (
                                    segment * self._pagecheck.SEGMENT_PAGES + offset // 8192)
                                future = pool.submit(self._copy_chunk, entry.source, offset, length,
                                                     self._prior_for(prior, offset), first_page,
                                                     file_kind(entry.path))
                                if progress is not None:
                                    future.add_done_callback(lambda _f, n=length: progress(n))
                                futures.append(future)
                    window.append((entry, futures, reused))
                    in_flight += len(futures)
                    while window and (in_flight > limit or all(f.done() for f in window[0][1])):
                        head = window.popleft()
                        in_flight -= len(head[1])
                        finished = self._finish(*head)
                        done += head[0].size
                        self._adapt(done, total)
                        if finished is not None:
                            yield finished
                while window:
                    head = window.popleft()
                    finished = self._finish(*head)
                    done += head[0].size
                    self._adapt(done, total)
                    if finished is not None:
                        yield finished
            except BaseException:
                for _, futures, _ in window:
                    for future in futures:
                        future.cancel()
                raise

    def _finish(self, entry: Entry, futures: list[Future[ChunkResult]],
                reused: FileEntry | None) -> FileEntry | None:
        if reused is not None:
            return reused
        if entry.kind != "file":
            return FileEntry(entry.path, entry.kind, entry.mode, 0, entry.mtime, entry.target)
        blocks: list[BlockRef] = []
        corrupt: list[int] = []
        for future in futures:
            result = future.result()
            if result is None:
                return None  # removed during the backup; WAL replay removes it too
            refs, bad = result
            blocks.extend(refs)
            corrupt.extend(bad)
            if not refs or refs[-1].raw < self._block_size:
                break  # file shrank while read: the rest is replayed from WAL
        size = sum(ref.raw for ref in blocks)
        return FileEntry(entry.path, "file", entry.mode, size, entry.mtime, None, blocks, corrupt)
