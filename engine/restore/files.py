"""Writing a backup's files into a data directory (empty, or an old copy with delta).

Each file is fsynced as soon as its last block is written, in the background, so
flushing overlaps the work on the next files. ``global/pg_control`` is written last,
after every other file and directory is durable, so a directory whose restore was
interrupted cannot be started by mistake. A delta restore hashes what is on disk and
rewrites only the blocks whose SHA-256 differs, then removes what the backup does not
have: the result is the same as a clean restore. Files untouched since the last restore
wrote them (:mod:`engine.restore.written_state`) are not read: their block ids are those
of the list they were written from. (In an encrypted repository block ids
are HMAC-SHA256 under its name key: what is on disk is hashed the same way.)
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from engine import durable
from engine.errors import LifeboatError, RestoreError, path_error
from engine.repository import layout
from engine.repository.blocklist import BlockList, BlockRef, load_stored
from engine.repository.encryption import name_key_of
from engine.repository.frames import FrameReader
from engine.repository.manifest import BackupSummary, FileEntry, Manifest
from engine.repository.storage import Storage
from engine.restore import written_state
from engine.restore.block_sink import BlockSink, open_for_blocks, preallocate, read_span, write_span

CONTROL_FILE = "global/pg_control"
IN_PROGRESS = ".lifeboat-restore"  # present while a restore writes the directory
BATCH_BYTES = 8 * 1024 * 1024
OLD_LIST_MIN = 8 * 1024 * 1024  # smaller changed files are hashed: cheaper than fetching a list
_TABLESPACE_LINK = re.compile(r"^pg_tblspc/\d+$")
Progress = Callable[[int], None]
Batch = tuple[FileEntry, BlockList, int, int]  # a file, its blocks, the first block, how many


@dataclass
class WriteResult:
    files: int = 0
    bytes: int = 0
    written_bytes: int = 0  # less than bytes after a delta restore
    unread_bytes: int = 0  # delta: in files known unchanged since a restore wrote them (not read)
    removed: int = 0
    tablespaces: dict[int, Path] = field(default_factory=dict)


def prepare_directory(path: Path, force: bool, delta: bool = False,
                      what: str = "data directory") -> None:
    """A directory to restore into: empty, or emptied with ``force``, or left as it is
    for ``delta`` (which compares and patches); never one a running server uses."""
    if path.exists() and not path.is_dir():
        raise RestoreError(f"{path} exists and is not a directory")
    if delta and path.is_dir() and any(path.iterdir()):
        if not (path / "PG_VERSION").exists() and not (path / IN_PROGRESS).exists():
            raise RestoreError(f"{path} does not look like a PostgreSQL data directory (no "
                               "PG_VERSION): refusing --delta, which removes what the backup "
                               "does not have (use --force to replace its contents)")
        _refuse_if_running(path)
        control = path / CONTROL_FILE
        if control.exists():  # until the end, an interrupted delta restore cannot start
            control.unlink()
            durable.fsync_dir(control.parent)
    elif path.is_dir() and any(path.iterdir()):
        if not force:
            raise RestoreError(f"{what} {path} is not empty: refusing to overwrite it "
                               "(use --delta to update it in place, or --force to replace "
                               "its contents)")
        _refuse_if_running(path)
        for child in path.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    durable.make_dirs(path, 0o700)
    os.chmod(path, 0o700)
    durable.write_atomic(path / IN_PROGRESS, b"", 0o600)


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


class FileWriter:
    """Writes a manifest's files under a data directory; every stored frame is verified."""

    def __init__(self, storage: Storage, cluster: str, summary: BackupSummary, pgdata: Path,
                 jobs: int, progress: Progress | None = None, delta: bool = False,
                 checksum: bool = False) -> None:
        self._pgdata = pgdata
        self._jobs = jobs
        self._progress = progress
        self._delta = delta
        self._block_size = summary.block_size
        self._frame_limit = max(summary.frame_size, summary.block_size)
        self._major = summary.pg_version // 10000
        self._reader = FrameReader(storage, cluster, self._frame_limit, summary.block_size)
        self._name_key = name_key_of(storage)  # block ids are keyed in an encrypted repository
        self._storage, self._cluster = storage, cluster
        # what the last restore into this directory wrote (taken even with checksum: the
        # files are about to change, so the record must not outlive this restore)
        known = written_state.take(pgdata) if delta else {}
        self._known = {} if checksum else known
        self._written: list[tuple[str, bytes]] = []  # (path, list key) of every file, for the record
        self._unread = 0

    def _write_batch(self, entry: FileEntry, blocks: BlockList, first: int, count: int) -> int:
        """Write ``count`` blocks from ``first`` of a new file."""
        try:
            return self._write_blocks(entry, blocks, first, count)
        except OSError as exc:
            raise path_error(exc, "write", self._pgdata / entry.path) from None

    def _write_blocks(self, entry: FileEntry, blocks: BlockList, first: int, count: int) -> int:
        raw = self._write_runs(entry, blocks.runs(first, count))
        return self._done(raw, raw)

    def _write_runs(self, entry: FileEntry, runs: list[tuple[int, BlockRef]],
                    direct: bool = True) -> int:
        """Write these runs of blocks into the existing file (direct I/O where it can with
        ``direct``); the bytes written."""
        fd = open_for_blocks(self._pgdata / entry.path, entry.size, direct)
        try:
            sink = BlockSink(fd, self._block_size, self._frame_limit)
            for block_no, data in self._reader.blocks(entry.path, runs):
                sink.write(block_no, data)
            sink.flush()
        finally:
            os.close(fd)
        return sum(ref.raw for _, ref in runs)

    def _patch_batch(self, entry: FileEntry, blocks: BlockList, first: int, count: int) -> int:
        """Rewrite those of ``count`` blocks from ``first`` of an existing file that differ.

        The batch's blocks are consecutive: they are read and hashed at once, the stale
        ones patched into that buffer, and the span from the first to the last stale one
        written back with one call (the blocks between are rewritten as they were)."""
        path = self._pgdata / entry.path
        size = self._block_size
        width = layout.BLOCK_ID_BYTES
        start = first * size
        length = min(count * size, entry.size - start)
        span, found = read_span(path, length, start)
        on_disk = layout.block_ids(span[:found], size, self._name_key)  # past the end: stale
        wanted = blocks.ids[first * width:(first + count) * width]
        if on_disk == wanted:  # the usual case for most of a file: nothing to rewrite
            return self._done(length, 0)
        stale = [run for at, n in layout.differing_runs(on_disk, wanted)
                 for run in blocks.runs(first + at, n)]
        if stale:
            for block_no, data in self._reader.blocks(entry.path, stale):
                at = block_no * size - start
                span[at:at + len(data)] = data
            low = stale[0][0] * size - start
            high = stale[-1][0] * size - start + stale[-1][1].raw  # a run's raw: all its blocks
            write_span(path, entry.size, span[low:high], start + low)
        return self._done(length, sum(ref.raw for _, ref in stale))

    def _patch_known(self, entry: FileEntry, blocks: BlockList, first: int, count: int,
                     on_disk_ids: bytes) -> int:
        """Rewrite those of ``count`` blocks from ``first`` that differ from ``on_disk_ids``,
        the ids of what the file holds (known from the list a restore wrote it from: it is
        not read). Written through the page cache, run by run; fsync makes them durable."""
        width = layout.BLOCK_ID_BYTES
        start = first * self._block_size
        length = min(count * self._block_size, entry.size - start)
        wanted = blocks.ids[first * width:(first + count) * width]
        on_disk = on_disk_ids[first * width:first * width + len(wanted)]  # shorter: it grew
        if on_disk == wanted:
            return self._done(length, 0)
        stale = [run for at, n in layout.differing_runs(on_disk, wanted)
                 for run in blocks.runs(first + at, n)]
        try:
            return self._done(length, self._write_runs(entry, stale, direct=False))
        except OSError as exc:
            raise path_error(exc, "write", self._pgdata / entry.path) from None

    def _known_ids(self, entry: FileEntry, target: Path) -> bytes | bool | None:
        """What is known of an existing file without reading it: True when it holds exactly
        the blocks ``entry`` wants, the ids of its blocks when it holds those of another list
        that can still be read, None when it must be read and hashed (see
        :mod:`engine.restore.written_state`)."""
        known = self._known.get(entry.path)
        if known is None or written_state.current(target) != known.signature:
            return None
        if known.list_key == (entry.list_key or b""):
            return known.signature[0] == entry.size or None
        block = self._block_size
        if entry.size < OLD_LIST_MIN or known.signature[0] % block or entry.size % block:
            return None  # small, or a partial last block whose id a new size would change
        key = layout.list_key(self._cluster, known.list_key.hex())
        try:
            old = load_stored(self._storage, self._cluster, known.list_key, f"block list {key}")
        except LifeboatError:  # expired, damaged, unreadable: read the file instead
            return None
        if old.size != known.signature[0] or old.block_size != block:
            return None
        return old.ids

    def _done(self, checked: int, written: int) -> int:
        if self._progress is not None:
            self._progress(checked)
        return written

    def _create(self, entry: FileEntry) -> None:
        path = self._pgdata / entry.path
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, entry.mode)
            try:
                preallocate(fd, entry.size)
            finally:
                os.close(fd)
        except OSError as exc:
            raise path_error(exc, "write", path) from None

    def _create_and_write(self, entry: FileEntry, work: list[Batch]) -> int:
        self._create(entry)
        return sum(self._write_batch(*batch) for batch in work)

    def _batches(self, entry: FileEntry, blocks: BlockList | None) -> list[Batch]:
        """The file's blocks in batches (a few numbers each: refs are made by the task)."""
        if blocks is None:
            return []
        per_batch = max(1, BATCH_BYTES // self._frame_limit) * (self._frame_limit // self._block_size)
        return [(entry, blocks, i, min(per_batch, blocks.count - i))
                for i in range(0, blocks.count, per_batch)]

    def write(self, manifest: Manifest, locations: dict[int, Path]) -> WriteResult:
        """Write every file (pg_control last), each durable before this returns."""
        result = WriteResult(tablespaces=dict(locations))
        directories = {self._pgdata, *locations.values()}
        flusher = _Flusher()
        completed = False
        try:
            control, kept = self._write_all(manifest, locations, result, directories, flusher)
            completed = True
        finally:
            flusher.finish(check=completed)  # the pool is shut down: every callback has run
        if control is None:
            raise RestoreError(f"backup {manifest.summary.id} has no {CONTROL_FILE}: damaged")
        if self._delta:
            kept.update((IN_PROGRESS, written_state.RECORD))
            result.removed = self._remove_extras("", self._pgdata, kept, directories)
        for directory in directories:
            durable.fsync_dir(directory)
        self._create(control[0])
        for batch in self._batches(*control):
            written = self._write_batch(*batch)
            result.bytes += written
            result.written_bytes += written
        _fsync_file(self._pgdata / CONTROL_FILE)
        result.files += 1
        durable.fsync_dir(self._pgdata / "global")
        (self._pgdata / IN_PROGRESS).unlink(missing_ok=True)
        durable.fsync_dir(self._pgdata)
        written_state.record(self._pgdata, self._written)
        result.unread_bytes = self._unread
        return result

    def _write_all(self, manifest: Manifest, locations: dict[int, Path], result: WriteResult,
                   directories: set[Path], flusher: _Flusher
                   ) -> tuple[tuple[FileEntry, BlockList | None] | None, set[str]]:
        control: tuple[FileEntry, BlockList | None] | None = None
        kept: set[str] = set()
        futures: deque[Future[int]] = deque()
        limit = self._jobs * 8
        with ThreadPoolExecutor(self._jobs, thread_name_prefix="lifeboat-restore") as pool:
            try:
                for entry in manifest.entries():
                    kept.add(entry.path)
                    target = self._pgdata / entry.path
                    if entry.kind == "dir":
                        self._make_dir(target, entry.mode)
                        directories.add(target)
                    elif entry.kind == "link":
                        self._link_tablespace(entry, locations)
                    elif entry.path == CONTROL_FILE:
                        control = (entry, _blocks(manifest, entry))
                        self._written.append((entry.path, entry.list_key or b""))
                    else:
                        result.files += 1
                        result.bytes += entry.size
                        self._written.append((entry.path, entry.list_key or b""))
                        batches = self._schedule(pool, entry, _blocks(manifest, entry), target)
                        if batches is not None:
                            flusher.expect(target, batches)
                            futures.extend(batches)
                    while len(futures) > limit:
                        result.written_bytes += futures.popleft().result()
                for future in futures:
                    result.written_bytes += future.result()
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
        return control, kept

    def _schedule(self, pool: ThreadPoolExecutor, entry: FileEntry, blocks: BlockList | None,
                  target: Path) -> list[Future[int]] | None:
        """The file's batches, submitted; None when it is already as the backup has it and
        durable (unchanged since a restore wrote it from the same list)."""
        work = self._batches(entry, blocks)
        if self._delta and self._known:
            known = self._known_ids(entry, target)
            if known is not None and os.lstat(target).st_mode & 0o7777 != entry.mode:
                os.chmod(target, entry.mode)
            if known is not None:
                self._unread += entry.size
            if known is True:
                self._done(entry.size, 0)
                return None
            if isinstance(known, bytes):  # whole blocks: a new size cuts or adds whole blocks
                if len(known) // layout.BLOCK_ID_BYTES * self._block_size != entry.size:
                    os.truncate(target, entry.size)
                return [pool.submit(self._patch_known, *batch, known) for batch in work]
        if self._delta and target.is_file() and not target.is_symlink():
            if target.stat().st_size != entry.size:
                os.truncate(target, entry.size)
            os.chmod(target, entry.mode)
            return [pool.submit(self._patch_batch, *batch) for batch in work]
        if self._delta and (target.is_symlink() or target.exists()):
            _remove(target)
        if len(work) > 1:
            self._create(entry)
            return [pool.submit(self._write_batch, *batch) for batch in work]
        return [pool.submit(self._create_and_write, entry, work)]  # small: one task does all

    def _make_dir(self, target: Path, mode: int) -> None:
        if self._delta and (target.is_symlink() or (target.exists() and not target.is_dir())):
            _remove(target)
        target.mkdir(mode=mode, exist_ok=True)
        if self._delta:
            os.chmod(target, mode)

    def _remove_extras(self, rel: str, directory: Path, kept: set[str],
                       directories: set[Path]) -> int:
        """Remove what the backup does not have (delta). In a tablespace's location only
        this server's version directory is ours; anything else there is left alone."""
        removed = 0
        foreign_ok = bool(_TABLESPACE_LINK.match(rel))
        for name in sorted(os.listdir(directory)):
            child_rel = f"{rel}/{name}" if rel else name
            path = directory / name
            if child_rel in kept:
                if path.is_dir():
                    removed += self._remove_extras(child_rel, path, kept, directories)
            elif not foreign_ok:
                _remove(path)
                directories.add(directory)
                removed += 1
        return removed

    def _link_tablespace(self, entry: FileEntry, locations: dict[int, Path]) -> None:
        oid = int(entry.path.rsplit("/", 1)[-1])
        location = locations.get(oid, Path(entry.target or ""))
        version_dirs = list(location.glob(f"PG_{self._major}_*")) if location.is_dir() else []
        if not self._delta and any(any(p.iterdir()) for p in version_dirs if p.is_dir()):
            raise RestoreError(
                f"tablespace {oid} location {location} already holds data: map it elsewhere "
                f"with --tablespace-map {oid}=DIR")
        durable.make_dirs(location, 0o700)
        link = self._pgdata / entry.path
        if link.is_symlink() and Path(os.readlink(link)) == location:
            return
        if link.is_symlink() or link.exists():
            _remove(link)
        os.symlink(location, link)


def _blocks(manifest: Manifest, entry: FileEntry) -> BlockList | None:
    """The checked block list of a file (None: an empty file)."""
    return manifest.block_list(entry) if entry.size else None


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
