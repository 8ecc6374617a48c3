"""Cutting files into blocks, hashing and compressing them in parallel, into packs.

Work is split into chunks of a few MB (whole blocks, so relation files are cut on
page boundaries). Worker threads read a chunk with one pread, hash each block, and
compress each frame (a run of consecutive new blocks) with zstandard; hashlib and
zstandard release the GIL, so threads run on every core. Frames are appended to a
pack borrowed for the moment. Results come back in file order; the number of chunks
in flight is bounded, so memory is too. Each file's blocks are described by a block
list (:mod:`engine.repository.blocklist`), stored once and shared by every backup that
holds the file with the same blocks.

An incremental backup passes the base backup's files. A file whose size and mtime have
not changed takes the base's entry over (its block list) without being read. A changed
file is read, and each block whose id equals the base's block at the same place is
referenced where the base stored it, not stored again; so every backup still lists all
of its blocks and restores on its own.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from engine.backup import direct_read
from engine.backup.direct_read import read_chunk
from engine.backup.packset import PackSet
from engine.errors import LifeboatError
from engine.postgres.pgdata import Entry, file_kind, relation_segment
from engine.repository import layout
from engine.repository.blocklist import INLINE_MAX, BlockList, Frame, ListBuilder
from engine.repository.codec import PROBE_MIN, ZSTD, Choice, Codec
from engine.repository.manifest import FileEntry, Manifest

__all__ = ["BaseFiles", "BlockCopier", "PackSet"]

CHUNK_BYTES = 4 * 1024 * 1024
MTIME_MARGIN = 1.0  # seconds: a file modified this close to the base backup is re-read
ADAPT_EVERY = 5.0  # seconds between two changes of the compression level
Progress = Callable[[int], None]
Run = tuple[Frame, int, int]  # frame, blocks, skip of the first


@dataclass
class ChunkResult:
    read: int  # bytes read (fewer than asked: the file shrank)
    ids: bytes  # the ids of its blocks, concatenated
    runs: list[Run]
    corrupt: list[int]


class BaseFiles:
    """The base backup's files, looked up in the order the data directory is walked.

    Both the walk and the manifest are in that order, so the base manifest is read as a
    stream, one file at a time, whatever the database's size.
    """

    def __init__(self, manifest: Manifest, trust_mtime_before: float, use_mtime: bool) -> None:
        self.id = manifest.summary.id
        self.manifest = manifest
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

    def list_packs(self, prior: FileEntry) -> list[str]:
        """The ids of the packs the block list of ``prior`` uses, without reading a stored list."""
        if prior.list_id is not None:
            return [self.pack_ids[i] for i in prior.packs]
        if prior.inline is not None:
            return BlockList(prior.inline, f"{self.manifest.key} file {prior.path}").packs
        return []


@dataclass
class CopyStats:
    reused_files: int = 0
    reused_bytes: int = 0
    kinds: dict[str, list[int]] = field(default_factory=dict)  # kind -> [raw, stored] of new data
    level_changes: list[str] = field(default_factory=list)
    base_problems: list[str] = field(default_factory=list)  # base lists that could not be read


class BlockCopier:
    """Turns data-directory entries into manifest entries, storing their new blocks and lists."""

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
        # Direct reads leave a thread waiting on the device part of the time (the kernel's
        # readahead no longer overlaps them with the work): half as many threads again keep
        # the cores busy meanwhile (measured on 12 GB, 2 cores, cold: 2 threads 32.8 s, 3
        # threads 28.2 s, 4 threads 27.8 s with 6 MiB more memory each).
        self._threads = jobs + (jobs + 1) // 2 if direct_read.available() else jobs
        self._chunk = max(frame_size, CHUNK_BYTES // frame_size * frame_size)
        self._base = base
        self.stats = CopyStats()
        self._stats_lock = threading.Lock()
        self._compresses: set[str] = set()  # files seen to compress well
        self._choices: dict[str, Choice] = {}  # file -> how its first frame chose to compress
        # relation files whose heap split was tried, on their first frame of PROBE_MIN bytes or
        # more (a few pages are no sample: an incremental's first new frame may be one page)
        self._sampled: set[str] = set()
        self._budget = time_budget
        self._started = time.monotonic()
        self._last_change = self._started
        self._start_lsn = check_pages_before
        self._pagecheck = None
        if check_pages_before is not None:
            from engine.postgres import pagecheck  # only for clusters with data checksums

            self._pagecheck = pagecheck

    def _copy_chunk(self, source: Path, offset: int, length: int, file_size: int,
                    prior: BlockList | None, first_page: int | None, kind: str) -> ChunkResult | None:
        view = read_chunk(source, offset, length, file_size)
        if view is None:
            return None
        size = self._block_size
        ids = layout.block_ids(view, size, self._packs.name_key)
        width = layout.BLOCK_ID_BYTES
        count = len(ids) // width
        first = offset // size
        places: list[tuple[Frame, int] | None] = [None] * count
        if prior is not None:
            if prior.ids[first * width:first * width + len(ids)] == ids:  # nothing changed
                self._count_reused(len(view))
                runs = [(frame, n, skip) for frame, _, n, skip in prior.segments(first, first + count)]
                return ChunkResult(len(view), ids, runs, [])
            reused = 0
            for i in range(count):
                number = first + i
                if prior.ids[number * width:(number + 1) * width] == ids[i * width:(i + 1) * width]:
                    places[i] = prior.place(number)
                    reused += min(size, len(view) - i * size)
            self._count_reused(reused)
        new = [i for i, place in enumerate(places) if place is None]
        corrupt = self._check_pages(source, view, offset, first_page, new, len(places))
        raw, stored = self._store_new(view, new, places, str(source), kind == "relation")
        if raw:
            with self._stats_lock:
                totals = self.stats.kinds.setdefault(kind, [0, 0])
                totals[0] += raw
                totals[1] += stored
        return ChunkResult(len(view), ids, _runs(places, size), corrupt)  # type: ignore[arg-type]

    def _count_reused(self, reused: int) -> None:
        if reused:
            with self._stats_lock:
                self.stats.reused_bytes += reused

    def _check_pages(self, source: Path, view: memoryview, offset: int, first_page: int | None,
                     new: list[int], blocks: int) -> list[int]:
        """PostgreSQL page checksums of the new blocks (those of reused blocks were checked
        when they were first stored): block numbers that fail, even when read again."""
        if first_page is None or self._pagecheck is None:
            return []
        per_block = self._block_size // self._pagecheck.PAGE
        if not new:
            return []
        pages = len(view) // self._pagecheck.PAGE  # the last block may hold fewer pages
        only = None if len(new) == blocks else [
            page for i in new for page in range(i * per_block, min(pages, (i + 1) * per_block))]
        suspects = self._pagecheck.bad_pages(view, first_page, self._start_lsn, only)
        if not suspects:
            return []
        return self._pagecheck.confirm(str(source), suspects, offset, first_page, self._start_lsn)

    def _store_new(self, view: memoryview, new: list[int], places: list[tuple[Frame, int] | None],
                   path: str, heap: bool) -> tuple[int, int]:
        """Compress the chunk's new blocks, in order, in frames of up to frame_size, append
        them to a pack and fill in their places; the raw and stored bytes of what was new.

        New blocks need not be neighbours: the scattered blocks an incremental backup stores
        share frames, which compress far better than each block alone.
        """
        size = self._block_size
        frames: list[tuple[list[int], int, bytes]] = []  # blocks, codec, stored bytes
        raw_total = 0
        for start in range(0, len(new), self._frame_blocks):
            members = new[start:start + self._frame_blocks]
            if members[-1] - members[0] == len(members) - 1:  # neighbours: no copy needed
                frame: memoryview | bytes = view[members[0] * size:(members[-1] + 1) * size]
            else:
                frame = b"".join(view[i * size:(i + 1) * size] for i in members)
            choice = self._choices.get(path)
            sample = heap and len(frame) >= PROBE_MIN and path not in self._sampled
            if choice is None or sample:  # the file's first frame: which way suits it
                codec_id, stored, choice = self._codec.compress_smaller(frame, sample)
                if choice is not None:
                    self._choices[path] = choice
                if sample:
                    self._sampled.add(path)
            else:
                codec_id, stored = self._codec.compress(frame, probe=path not in self._compresses,
                                                        tuned=choice.tuned, split=choice.split)
            if len(stored) < 0.8 * len(frame):
                self._compresses.add(path)  # the rest of this file need not be probed
            frames.append((members, codec_id, stored))
            raw_total += len(frame)
        if not frames:
            return 0, 0
        placed = self._packs.store([f[2] for f in frames])
        for (members, codec_id, _), (pack_id, offset, stored, digest) in zip(frames, placed, strict=True):
            frame = Frame(pack_id, offset, stored, codec_id, digest)
            for skip, i in enumerate(members):
                places[i] = (frame, skip * size)
        return raw_total, sum(len(f[2]) for f in frames)

    def _chunks(self, entry: Entry) -> Iterator[tuple[int, int]]:
        for offset in range(0, entry.size, self._chunk):
            yield offset, min(self._chunk, entry.size - offset)

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
        window: deque[tuple[Entry, list[Future[ChunkResult]], FileEntry | None,
                            tuple[bytes, bytes] | None]] = deque()
        in_flight = 0
        limit = self._threads * 4
        with ThreadPoolExecutor(self._threads, thread_name_prefix="lifeboat-copy") as pool:
            try:
                for entry in entries:
                    futures: list[Future[ChunkResult]] = []
                    reused: FileEntry | None = None
                    root: tuple[bytes, bytes] | None = None
                    if entry.kind == "file":
                        prior = self._base.find(entry.path) if self._base else None
                        if prior is not None and self._base is not None and \
                                self._base.unchanged(prior, entry):
                            reused = self._take_over(prior, entry)
                            self.stats.reused_files += 1
                            self.stats.reused_bytes += prior.size
                            if progress is not None:
                                progress(entry.size)
                        else:
                            segment = (relation_segment(entry.path)
                                       if self._pagecheck is not None else None)
                            base_list = self._base_list(prior)
                            root = _root_of(prior, base_list)
                            for offset, length in self._chunks(entry):
                                first_page = None if segment is None else (
                                    segment * self._pagecheck.SEGMENT_PAGES + offset // 8192)
                                future = pool.submit(self._copy_chunk, entry.source, offset, length,
                                                     entry.size, base_list, first_page,
                                                     file_kind(entry.path))
                                if progress is not None:
                                    future.add_done_callback(lambda _f, n=length: progress(n))
                                futures.append(future)
                    window.append((entry, futures, reused, root))
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
                for _, futures, _, _ in window:
                    for future in futures:
                        future.cancel()
                raise

    def _take_over(self, prior: FileEntry, entry: Entry) -> FileEntry:
        """The base's entry of an unchanged file: its block list, referred to by its id."""
        assert self._base is not None
        packs = tuple(sorted(self._packs.adopt(p) for p in self._base.list_packs(prior)))
        return FileEntry(entry.path, "file", entry.mode, prior.size, entry.mtime, None,
                         prior.list_id, prior.inline, packs if prior.list_id is not None else (),
                         list(prior.corrupt_pages), prior.base)

    def _base_list(self, prior: FileEntry | None) -> BlockList | None:
        """The base's block list of a changed file, to compare its blocks with."""
        if prior is None or prior.kind != "file" or prior.size == 0 or self._base is None:
            return None
        try:
            blocks = self._base.manifest.block_list(prior)
        except LifeboatError as exc:  # the base is damaged: this backup stores the file anew
            self.stats.base_problems.append(str(exc))
            return None
        return blocks if blocks.block_size == self._block_size else None

    def _finish(self, entry: Entry, futures: list[Future[ChunkResult | None]],
                reused: FileEntry | None, root: tuple[bytes, bytes] | None) -> FileEntry | None:
        """The entry of a copied file; ``root``: the id and ids of the base's list (or of
        that list's own base) its list may take its first ids from."""
        if reused is not None:
            return reused
        if entry.kind != "file":
            return FileEntry(entry.path, entry.kind, entry.mode, 0, entry.mtime, entry.target)
        builder = ListBuilder(self._block_size)
        corrupt: list[int] = []
        size = 0
        for (_, length), future in zip(self._chunks(entry), futures, strict=True):
            result = future.result()
            if result is None:
                return None  # removed during the backup; WAL replay removes it too
            builder.add_ids(result.ids)
            for run in result.runs:
                builder.add(*run)
            corrupt.extend(result.corrupt)
            size += result.read
            if result.read < length:
                break  # file shrank while read: the rest is replayed from WAL
        done = FileEntry(entry.path, "file", entry.mode, size, entry.mtime, corrupt_pages=corrupt)
        if size == 0:
            return done
        data = builder.finish(size, root)
        for pack_id in builder.pack_ids:
            self._packs.adopt(pack_id)
        if len(data) <= INLINE_MAX:
            done.inline = data
        else:
            done.list_id = self._packs.put_list(data)
            done.base = BlockList.base_of(data)
            done.packs = tuple(sorted(self._packs.adopt(p) for p in builder.pack_ids))
        return done


def _root_of(prior: FileEntry | None, blocks: BlockList | None) -> tuple[bytes, bytes] | None:
    """The id and ids of the stored list without a base that the base backup's list of a
    file is, or takes its first ids from."""
    if prior is None or blocks is None or prior.list_id is None:
        return None
    if prior.base is None:
        return prior.list_id, blocks.ids
    return prior.base, blocks.root.ids  # the manifest checked the list's base is prior.base


def _runs(places: list[tuple[Frame, int]], size: int) -> list[Run]:
    """Consecutive blocks that are consecutive in one frame, as runs."""
    runs: list[Run] = []
    last: list = [None, 0, 0]  # frame, blocks, skip of the first
    for frame, skip in places:
        if frame is last[0] and skip == last[2] + last[1] * size:
            last[1] += 1
        else:
            if last[0] is not None:
                runs.append((last[0], last[1], last[2]))
            last = [frame, 1, skip]
    if last[0] is not None:
        runs.append((last[0], last[1], last[2]))
    return runs
