"""Writing a backup's files into a data directory.

Blocks are fetched, decompressed and checked against their SHA-256 in parallel; a
block that fails is named with its file and the restore stops. Each file is fsynced
as soon as its last block is written, in the background, so flushing overlaps the
work on the next files. ``global/pg_control`` is written last, after every other
file and directory is durable, so a directory whose restore was interrupted cannot
be started by mistake.
"""

from __future__ import annotations

import errno
import mmap
import os
import shutil
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from engine import durable, layout
from engine.codec import RAW, decompress
from engine.errors import ChecksumError, RestoreError, StorageError
from engine.manifest import BackupSummary, BlockRef, FileEntry, Manifest
from engine.storage import Storage

CONTROL_FILE = "global/pg_control"
BATCH_BYTES = 8 * 1024 * 1024
WRITE_BYTES = 1024 * 1024  # blocks gathered into one write
DIRECT_MIN = 1024 * 1024  # files at least this large are written with O_DIRECT
DIRECT_ALIGN = 4096
Progress = Callable[[int], None]


@dataclass
class WriteResult:
    files: int = 0
    bytes: int = 0
    tablespaces: dict[int, Path] = field(default_factory=dict)


def prepare_directory(path: Path, force: bool, what: str = "data directory") -> None:
    """An empty directory at ``path``; a non-empty one only with ``force`` (then emptied)."""
    if path.exists() and not path.is_dir():
        raise RestoreError(f"{path} exists and is not a directory")
    if path.is_dir() and any(path.iterdir()):
        if not force:
            raise RestoreError(f"{what} {path} is not empty: refusing to overwrite it "
                               "(use --force to replace its contents)")
        _refuse_if_running(path)
        for child in path.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    durable.make_dirs(path, 0o700)
    os.chmod(path, 0o700)


def _refuse_if_running(pgdata: Path) -> None:
    pid_file = pgdata / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return
    except PermissionError:
        pass
    raise RestoreError(f"{pgdata} belongs to a running server (pid {pid}): stop it first")


def tablespace_locations(summary: BackupSummary, remap: dict[int, Path]) -> dict[int, Path]:
    unknown = set(remap) - {t["oid"] for t in summary.tablespaces}
    if unknown:
        known = ", ".join(f"{t['oid']} ({t['name']})" for t in summary.tablespaces) or "none"
        raise RestoreError(f"--tablespace-map names tablespace OID {sorted(unknown)[0]}, which "
                           f"backup {summary.id} does not have (it has: {known})")
    return {t["oid"]: remap.get(t["oid"], Path(t["location"])) for t in summary.tablespaces}


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Flusher:
    """fsyncs each file once all of its batches are written, on threads of its own."""

    def __init__(self, threads: int = 2) -> None:
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="lifeboat-fsync")
        self._lock = threading.Lock()
        self._remaining: dict[Path, int] = {}
        self._futures: list[Future[None]] = []

    def expect(self, path: Path, batches: list[Future[int]]) -> None:
        if not batches:
            self._flush(path)
            return
        with self._lock:
            self._remaining[path] = len(batches)
        for batch in batches:
            batch.add_done_callback(lambda done, p=path: self._batch_done(p, done))

    def _batch_done(self, path: Path, done: Future[int]) -> None:
        if done.cancelled() or done.exception() is not None:
            return
        with self._lock:
            self._remaining[path] -= 1
            last = self._remaining[path] == 0
        if last:
            self._flush(path)

    def _flush(self, path: Path) -> None:
        future = self._pool.submit(_fsync_file, path)
        with self._lock:
            self._futures.append(future)

    def finish(self, check: bool = True) -> None:
        """Wait until every file handed over is durable; with ``check``, raise the first
        failure. Call it once no batch can complete any more (after the pool is shut down)."""
        try:
            for future in self._futures:
                if check:
                    future.result()
                else:
                    future.exception()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)


def _damaged(entry: FileEntry, first_index: int, refs: list[BlockRef], index: int,
             stored: memoryview, key: str) -> ChecksumError:
    """Name what is damaged in a frame that failed its checksum: the very block when the
    frame is stored raw, else the blocks the frame holds."""
    frame = [i for i in range(index, len(refs)) if refs[i].offset == refs[index].offset
             and refs[i].pack == refs[index].pack]
    culprit = f"blocks {first_index + frame[0]}..{first_index + frame[-1]}" if len(frame) > 1 \
        else f"block {first_index + frame[0]}"
    if refs[index].codec == RAW:
        for i in frame:
            ref = refs[i]
            if layout.block_id(stored[ref.skip:ref.skip + ref.raw]) != ref.digest:
                culprit = f"block {first_index + i}"
                break
    return ChecksumError(f"{entry.path} {culprit} (pack {key.rsplit('/', 1)[-1]}): checksum "
                         "mismatch, the stored data is damaged; refusing to restore it")


class FileWriter:
    """Writes a manifest's files under a data directory, verifying every block.

    Consecutive blocks are gathered in a page-aligned buffer and written with one
    call; large files are written with O_DIRECT, which spares the CPU the copy into
    the page cache (as costly as the SHA-256 check on a VM) and leaves fsync little
    to do. Small or unaligned files, and file systems without O_DIRECT, are written
    through the page cache.
    """

    def __init__(self, storage: Storage, cluster: str, summary: BackupSummary, pgdata: Path,
                 jobs: int, progress: Progress | None = None) -> None:
        self._storage = storage
        self._pack_keys = [layout.pack_key(cluster, p) for p in summary.packs]
        self._pgdata = pgdata
        self._jobs = jobs
        self._progress = progress
        self._block_size = summary.block_size
        self._frame_limit = max(summary.frame_size, summary.block_size)
        self._major = summary.pg_version // 10000
        self._direct = hasattr(os, "O_DIRECT")
        self._buffers = threading.local()

    def _buffer(self) -> memoryview:
        buffer = getattr(self._buffers, "view", None)
        if buffer is None:
            buffer = memoryview(mmap.mmap(-1, max(WRITE_BYTES, self._frame_limit)))  # page-aligned
            self._buffers.view = buffer
        return buffer

    def _open(self, entry: FileEntry) -> int:
        path = self._pgdata / entry.path
        if self._direct and entry.size >= DIRECT_MIN and entry.size % DIRECT_ALIGN == 0:
            try:
                return os.open(path, os.O_WRONLY | os.O_CLOEXEC | os.O_DIRECT)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                self._direct = False  # this file system does not do direct I/O
        return os.open(path, os.O_WRONLY | os.O_CLOEXEC)

    def _write_batch(self, entry: FileEntry, first_index: int, refs: list[BlockRef]) -> int:
        """Write blocks ``first_index``.. of ``entry``: contiguous frames are read with one
        request; each frame is checked against its SHA-256, then decompressed once."""
        buffer = self._buffer()
        filled, run_start = 0, first_index
        fd = self._open(entry)
        try:
            start = 0
            while start < len(refs):
                end = start + 1
                while end < len(refs) and refs[end].pack == refs[start].pack and refs[end].offset in (
                        refs[end - 1].offset, refs[end - 1].offset + refs[end - 1].stored):
                    end += 1
                base = refs[start].offset
                key = self._pack_keys[refs[start].pack]
                try:
                    data = memoryview(self._storage.read_range(
                        key, base, refs[end - 1].offset + refs[end - 1].stored - base))
                except StorageError as exc:
                    raise RestoreError(f"cannot read blocks of {entry.path}: {exc}") from None
                frame_at, frame = -1, memoryview(b"")
                for index in range(start, end):
                    ref = refs[index]
                    block_no = first_index + index
                    what = f"{entry.path} block {block_no} (pack {key.rsplit('/', 1)[-1]})"
                    if ref.offset != frame_at:
                        local = ref.offset - base
                        stored = data[local:local + ref.stored]
                        if layout.block_id(stored) != ref.frame_digest:
                            raise _damaged(entry, first_index, refs, index, stored, key)
                        frame = memoryview(decompress(ref.codec, stored, None, what,
                                                      limit=self._frame_limit))
                        frame_at = ref.offset
                    block = frame[ref.skip:ref.skip + ref.raw]
                    if len(block) != ref.raw:
                        raise ChecksumError(f"{what}: the stored frame is shorter than the "
                                            "manifest says; refusing to restore it")
                    if filled + ref.raw > len(buffer):
                        os.pwrite(fd, buffer[:filled], run_start * self._block_size)
                        filled, run_start = 0, block_no
                    buffer[filled:filled + ref.raw] = block
                    filled += ref.raw
                start = end
            if filled:
                os.pwrite(fd, buffer[:filled], run_start * self._block_size)
        finally:
            os.close(fd)
        written = sum(ref.raw for ref in refs)
        if self._progress is not None:
            self._progress(written)
        return written

    def _create(self, entry: FileEntry) -> None:
        fd = os.open(self._pgdata / entry.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                     entry.mode)
        try:
            os.ftruncate(fd, entry.size)
        finally:
            os.close(fd)

    def _create_and_write(self, entry: FileEntry,
                          work: list[tuple[FileEntry, int, list[BlockRef]]]) -> int:
        self._create(entry)
        return sum(self._write_batch(*batch) for batch in work)

    def _batches(self, entry: FileEntry) -> list[tuple[FileEntry, int, list[BlockRef]]]:
        per_batch = max(1, BATCH_BYTES // self._frame_limit) * (self._frame_limit // self._block_size)
        return [(entry, i, entry.blocks[i:i + per_batch])
                for i in range(0, len(entry.blocks), per_batch)]

    def write(self, manifest: Manifest, locations: dict[int, Path]) -> WriteResult:
        """Write every file (pg_control last), each durable before this returns."""
        result = WriteResult(tablespaces=dict(locations))
        directories = {self._pgdata, *locations.values()}
        flusher = _Flusher()
        completed = False
        try:
            control = self._write_all(manifest, locations, result, directories, flusher)
            completed = True
        finally:
            flusher.finish(check=completed)  # the pool is shut down: every callback has run
        if control is None:
            raise RestoreError(f"backup {manifest.summary.id} has no {CONTROL_FILE}: damaged")
        for directory in directories:
            durable.fsync_dir(directory)
        self._create(control)
        for batch in self._batches(control):
            result.bytes += self._write_batch(*batch)
        _fsync_file(self._pgdata / CONTROL_FILE)
        result.files += 1
        durable.fsync_dir(self._pgdata / "global")
        return result

    def _write_all(self, manifest: Manifest, locations: dict[int, Path], result: WriteResult,
                   directories: set[Path], flusher: _Flusher) -> FileEntry | None:
        control: FileEntry | None = None
        futures: deque[Future[int]] = deque()
        limit = self._jobs * 8
        with ThreadPoolExecutor(self._jobs, thread_name_prefix="lifeboat-restore") as pool:
            try:
                for entry in manifest.entries():
                    target = self._pgdata / entry.path
                    if entry.kind == "dir":
                        target.mkdir(mode=entry.mode, exist_ok=True)
                        directories.add(target)
                    elif entry.kind == "link":
                        self._link_tablespace(entry, locations)
                    elif entry.path == CONTROL_FILE:
                        control = entry
                    else:
                        work = self._batches(entry)
                        if len(work) > 1:
                            self._create(entry)
                            batches = [pool.submit(self._write_batch, *batch) for batch in work]
                        else:  # most files are small: a worker creates and writes them
                            batches = [pool.submit(self._create_and_write, entry, work)]
                        flusher.expect(target, batches)
                        futures.extend(batches)
                        result.files += 1
                    while len(futures) > limit:
                        result.bytes += futures.popleft().result()
                for future in futures:
                    result.bytes += future.result()
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
        return control

    def _link_tablespace(self, entry: FileEntry, locations: dict[int, Path]) -> None:
        oid = int(entry.path.rsplit("/", 1)[-1])
        location = locations.get(oid, Path(entry.target or ""))
        version_dirs = list(location.glob(f"PG_{self._major}_*")) if location.is_dir() else []
        if any(any(p.iterdir()) for p in version_dirs if p.is_dir()):
            raise RestoreError(
                f"tablespace {oid} location {location} already holds data: map it elsewhere "
                f"with --tablespace-map {oid}=DIR")
        durable.make_dirs(location, 0o700)
        link = self._pgdata / entry.path
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink(location, link)
