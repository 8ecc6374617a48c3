"""Restore: write a backup's files, backup_label, tablespace links and recovery settings.

Blocks are fetched, decompressed and checked against their SHA-256 in parallel; a
block that fails is named with its file and the restore stops. ``global/pg_control``
is written last, after every other file is durable, so a directory whose restore
was interrupted cannot be started by mistake.
"""

from __future__ import annotations

import os
import shutil
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from engine import durable, layout
from engine.codec import decompress
from engine.errors import ChecksumError, RestoreError, StorageError
from engine.manifest import BackupSummary, BlockRef, FileEntry, Manifest

CONTROL_FILE = "global/pg_control"
BATCH_BYTES = 8 * 1024 * 1024
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


class FileWriter:
    """Writes a manifest's files under a data directory, verifying every block."""

    def __init__(self, storage, cluster: str, summary: BackupSummary, pgdata: Path,
                 jobs: int, progress: Progress | None = None) -> None:
        self._storage = storage
        self._pack_keys = [layout.pack_key(cluster, p) for p in summary.packs]
        self._pgdata = pgdata
        self._jobs = jobs
        self._progress = progress
        self._block_size = summary.block_size
        self._frame_limit = max(summary.frame_size, summary.block_size)
        self._major = summary.pg_version // 10000

    def _write_batch(self, entry: FileEntry, first_index: int, refs: list[BlockRef]) -> int:
        """Write blocks ``first_index``.. of ``entry``: contiguous frames are read with one
        request, each frame is decompressed once, each block checked against its SHA-256."""
        fd = os.open(self._pgdata / entry.path, os.O_WRONLY | os.O_CLOEXEC)
        written = 0
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
                frame_at, frame = -1, b""
                for index in range(start, end):
                    ref = refs[index]
                    block_no = first_index + index
                    what = f"{entry.path} block {block_no} (pack {key.rsplit('/', 1)[-1]})"
                    if ref.offset != frame_at:
                        local = ref.offset - base
                        frame = decompress(ref.codec, data[local:local + ref.stored], None, what,
                                           limit=self._frame_limit)
                        frame_at = ref.offset
                    block = frame[ref.skip:ref.skip + ref.raw]
                    if len(block) != ref.raw or layout.block_id(block) != ref.digest:
                        raise ChecksumError(f"{what}: checksum mismatch, the stored block is "
                                            "damaged; refusing to restore it")
                    os.pwrite(fd, block, block_no * self._block_size)
                    written += len(block)
                start = end
        finally:
            os.close(fd)
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

    def _batches(self, entry: FileEntry) -> list[tuple[FileEntry, int, list[BlockRef]]]:
        per_batch = max(1, BATCH_BYTES // self._frame_limit) * (self._frame_limit // self._block_size)
        return [(entry, i, entry.blocks[i:i + per_batch])
                for i in range(0, len(entry.blocks), per_batch)]

    def write(self, manifest: Manifest, locations: dict[int, Path]) -> WriteResult:
        result = WriteResult(tablespaces=dict(locations))
        control: FileEntry | None = None
        futures: deque[Future[int]] = deque()
        limit = self._jobs * 8
        with ThreadPoolExecutor(self._jobs, thread_name_prefix="lifeboat-restore") as pool:
            try:
                for entry in manifest.entries():
                    target = self._pgdata / entry.path
                    if entry.kind == "dir":
                        target.mkdir(mode=entry.mode, exist_ok=True)
                    elif entry.kind == "link":
                        self._link_tablespace(entry, locations)
                    elif entry.path == CONTROL_FILE:
                        control = entry
                    else:
                        self._create(entry)
                        futures.extend(pool.submit(self._write_batch, *batch)
                                       for batch in self._batches(entry))
                        result.files += 1
                    while len(futures) > limit:
                        result.bytes += futures.popleft().result()
                for future in futures:
                    result.bytes += future.result()
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
        if control is None:
            raise RestoreError(f"backup {manifest.summary.id} has no {CONTROL_FILE}: damaged")
        self._sync(locations)
        self._create(control)
        for batch in self._batches(control):
            result.bytes += self._write_batch(*batch)
        _fsync_file(self._pgdata / CONTROL_FILE)
        result.files += 1
        durable.fsync_dir(self._pgdata / "global")
        return result

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

    def _sync(self, locations: dict[int, Path]) -> None:
        for path in {self._pgdata, *locations.values()}:
            durable.syncfs(path)
