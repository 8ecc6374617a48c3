"""Verification: every manifest, every block list and block the manifests reference, and
the WAL each backup needs to reach the end of the archive; each missing or damaged item
is named, with the backups it breaks.

Backups are read oldest first. Each block list is read and checked once, however many
backups share it; each stored frame is read once, however many lists refer to it,
checked against its SHA-256, decompressed, and the blocks of the list that first
reached it re-hashed. WAL segments are decoded (SHA-256 and decompression).
``since_last`` skips packs, stored lists and segments a previous verify already proved:
all are immutable once written, so what changed since is what is new.

Memory holds what has been checked (a few bytes per frame and per list), never every
block: lists are checked by worker threads, a bounded number at a time.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

from engine.errors import ChecksumError, LifeboatError, NotFoundError, UsageError
from engine.repository import clusterinfo, formats, layout
from engine.repository.blocklist import BlockList, Frame
from engine.repository.codec import decompress
from engine.repository.manifest import FileEntry, Manifest, list_backup_ids, read_manifest
from engine.repository.storage import Storage
from engine.wal import archive, timelines
from engine.wal.names import history_name, parse_lsn, segment_before_lsn, segment_name, segment_of_lsn

READ_BYTES = 4 * 1024 * 1024  # neighbouring frames read at once: one such buffer per thread
_UNSEEN = object()


@dataclass
class Problem:
    kind: str  # manifest, list, pack, block, wal or history
    item: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.item}: {self.detail}"


@dataclass
class VerifyReport:
    cluster: str
    mode: str
    backups: int = 0
    lists: int = 0
    frames: int = 0
    blocks: int = 0
    bytes: int = 0
    wal_segments: int = 0
    skipped_packs: int = 0
    skipped_lists: int = 0
    skipped_wal: int = 0
    seconds: float = 0.0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, object]:
        return asdict(self) | {"ok": self.ok}


@dataclass
class _ListResult:
    packs: frozenset[str] = frozenset()
    problems: list[Problem] = field(default_factory=list)
    frames: int = 0
    blocks: int = 0
    bytes: int = 0
    bad_packs: set[str] = field(default_factory=set)


@dataclass
class _Broken:
    """A list that cannot be read, and the backups whose files need it."""

    problem: Problem
    backups: dict[str, str] = field(default_factory=dict)  # backup -> a file of it


class _Checker:
    """Checks block lists and their frames, each once, on a pool of threads."""

    def __init__(self, storage: Storage, cluster: str, proven_packs: set[str],
                 proven_lists: set[str], frame_limit: int, report: VerifyReport,
                 progress: Callable[[int], None] | None, jobs: int) -> None:
        self._storage = storage
        self._cluster = cluster
        self._proven_packs = proven_packs
        self._proven_lists = proven_lists
        self._frame_limit = frame_limit
        self._report = report
        self._progress = progress
        self._limit = 4 * jobs
        self._lock = threading.Lock()
        self._checked: set[tuple[str, int]] = set()  # frames read by some list
        self._missing: set[str] = set()  # packs found missing
        self._seen: dict[bytes, frozenset[str] | _Broken | None] = {}  # None: being checked
        self._waiting: dict[bytes, dict[str, str]] = {}  # backups referring to a list being checked
        self._in_flight: deque[tuple[bytes, bool, Future[_ListResult]]] = deque()
        self._interned: dict[frozenset[str], frozenset[str]] = {}
        self._packs_of: tuple[str, frozenset[str]] = ("", frozenset())  # the last manifest's packs
        self.proven: set[str] = set()  # stored lists found sound
        self.bad_packs: set[str] = set()

    def add(self, pool: ThreadPoolExecutor, manifest: Manifest, entry: FileEntry) -> None:
        key = entry.list_key
        if key is None:
            return
        backup = manifest.summary.id
        seen = self._seen.get(key, _UNSEEN)
        if seen is _UNSEEN:
            if entry.list_id is not None and key.hex() in self._proven_lists:
                self._seen[key] = frozenset()
                self._report.skipped_lists += 1
                self.proven.add(key.hex())
                return
            self._seen[key] = None
            self._waiting[key] = {backup: entry.path}
            self._in_flight.append((key, entry.list_id is not None,
                                    pool.submit(self._check_list, manifest, entry)))
            while len(self._in_flight) > self._limit:
                self._collect(*self._in_flight.popleft())
        elif seen is None:
            self._waiting[key].setdefault(backup, entry.path)
        elif isinstance(seen, _Broken):
            seen.backups.setdefault(backup, entry.path)
        elif seen:
            stray = sorted(seen - self._allowed(manifest, entry))
            if stray:
                self._report.problems.append(Problem(
                    "manifest", f"backup {backup} file {entry.path}",
                    f"its block list uses pack {stray[0]}, which the manifest does not list for it"))

    def _allowed(self, manifest: Manifest, entry: FileEntry) -> frozenset[str]:
        """The packs the manifest lists for the entry's block list."""
        packs = manifest.summary.packs
        if entry.list_id is not None:
            return frozenset(packs[i] for i in entry.packs if i < len(packs))
        if self._packs_of[0] != manifest.summary.id:
            self._packs_of = (manifest.summary.id, frozenset(packs))
        return self._packs_of[1]

    def finish(self) -> None:
        while self._in_flight:
            self._collect(*self._in_flight.popleft())
        for seen in self._seen.values():
            if isinstance(seen, _Broken):
                files = ", ".join(f"{b} ({f})" for b, f in sorted(seen.backups.items()))
                seen.problem.detail += f"; backups it breaks: {files}"

    def _collect(self, key: bytes, stored: bool, future: Future[_ListResult]) -> None:
        result = future.result()
        report = self._report
        report.frames += result.frames
        report.blocks += result.blocks
        report.bytes += result.bytes
        self.bad_packs |= result.bad_packs
        if self._progress is not None:
            self._progress(result.bytes)
        waiting = self._waiting.pop(key)
        list_problems = [p for p in result.problems if p.kind == "list"]
        report.problems.extend(result.problems)
        if list_problems:
            self._seen[key] = _Broken(list_problems[0], waiting)
            return
        self._seen[key] = self._interned.setdefault(result.packs, result.packs)
        if stored:
            report.lists += 1
            if not result.problems:
                self.proven.add(key.hex())

    def _check_list(self, manifest: Manifest, entry: FileEntry) -> _ListResult:
        """Read and check one list, then the frames of it no other list has claimed."""
        where = f"backup {manifest.summary.id} file {entry.path}"
        try:
            blocks = manifest.block_list(entry)
        except LifeboatError as exc:
            item = (layout.list_key(self._cluster, entry.list_id.hex()) if entry.list_id is not None
                    else f"{where} (inline list)")
            return _ListResult(problems=[Problem("list", item, str(exc))])
        result = _ListResult(packs=frozenset(blocks.packs))
        with self._lock:
            todo = {f for f in blocks.frames if (f.pack, f.offset) not in self._checked
                    and f.pack not in self._proven_packs}
            self._checked.update((f.pack, f.offset) for f in todo)
        if not todo:
            return result
        claims: dict[Frame, list[tuple[int, int, int]]] = {}
        for frame, first, count, skip in blocks.segments():
            if frame in todo:
                claims.setdefault(frame, []).append((first, count, skip))
        by_pack: dict[str, list[Frame]] = {}
        for frame in todo:
            by_pack.setdefault(frame.pack, []).append(frame)
        for pack, frames in sorted(by_pack.items()):
            frames.sort(key=lambda f: f.offset)
            self._check_frames(pack, frames, blocks, claims, where, result)
        return result

    def _check_frames(self, pack: str, frames: list[Frame], blocks: BlockList,
                      claims: dict[Frame, list[tuple[int, int, int]]], where: str,
                      result: _ListResult) -> None:
        key = layout.pack_key(self._cluster, pack)
        i = 0
        while i < len(frames):
            j = i + 1
            while j < len(frames) and frames[j].offset == frames[j - 1].offset + frames[j - 1].stored \
                    and frames[j].offset + frames[j].stored - frames[i].offset <= READ_BYTES:
                j += 1
            start = frames[i].offset
            try:
                data = memoryview(self._storage.read_range(
                    key, start, frames[j - 1].offset + frames[j - 1].stored - start))
            except NotFoundError:
                result.bad_packs.add(pack)
                with self._lock:
                    first_report = pack not in self._missing
                    self._missing.add(pack)
                if first_report:
                    result.problems.append(Problem("pack", pack, f"missing from the repository "
                                                   f"({where} is in it)"))
                return
            except LifeboatError as exc:
                result.bad_packs.add(pack)
                result.problems.append(Problem("pack", pack, str(exc)))
                i = j
                continue
            for frame in frames[i:j]:
                self._check_frame(frame, data[frame.offset - start:frame.offset - start + frame.stored],
                                  blocks, claims[frame], where, result)
            del data  # before the next read: one range in memory per thread
            i = j

    def _check_frame(self, frame: Frame, stored: memoryview, blocks: BlockList,
                     claims: list[tuple[int, int, int]], where: str, result: _ListResult) -> None:
        result.frames += 1
        first = claims[0][0]
        what = f"{where} block {first}"
        if layout.frame_checksum(stored) != frame.digest:
            result.bad_packs.add(frame.pack)
            result.problems.append(Problem("block", what, f"pack {frame.pack} offset {frame.offset}: "
                                           "checksum mismatch, the stored data is damaged"))
            return
        try:
            content = memoryview(decompress(frame.codec, stored, None, what, limit=self._frame_limit))
        except ChecksumError as exc:
            result.bad_packs.add(frame.pack)
            result.problems.append(Problem("block", what, str(exc)))
            return
        size = blocks.block_size
        for number, count, skip in claims:
            for k in range(number, number + count):
                raw = blocks.raw(k)
                result.blocks += 1
                result.bytes += raw
                if layout.block_id(content[skip:skip + raw]) != blocks.block_id(k):
                    result.bad_packs.add(frame.pack)
                    result.problems.append(Problem(
                        "block", f"{where} block {k}",
                        f"pack {frame.pack} offset {frame.offset}: the block at {skip} fails its SHA-256"))
                skip += size


def _check_segment(storage: Storage, cluster: str, name: str) -> Problem | None:
    try:
        archive.check(storage, cluster, name)
    except NotFoundError:
        return Problem("wal", name, "missing from the archive")
    except LifeboatError as exc:
        return Problem("wal", name, str(exc))
    return None


def _wal_needed(storage: Storage, cluster: str, manifests: list[Manifest], segment_size: int,
                report: VerifyReport) -> dict[str, str]:
    """Segment name -> the backup that needs it, for every backup's path to the archive's end."""
    archived = archive.segments_by_timeline(storage, cluster, segment_size)
    histories = set(archive.archived_histories(storage, cluster))
    for timeline in archived:
        if timeline > 1 and timeline not in histories:
            report.problems.append(Problem(
                "history", history_name(timeline),
                f"missing from the archive, but segments of timeline {timeline} are archived"))
    needed: dict[str, str] = {}
    for manifest in manifests:
        summary = manifest.summary
        start, stop = parse_lsn(summary.start_lsn), parse_lsn(summary.stop_lsn)
        spans = timelines.recovery_path(storage, cluster, summary.timeline, start, stop, segment_size)
        own = [(summary.timeline, s) for s in range(segment_of_lsn(start, segment_size),
                                                    segment_before_lsn(stop, segment_size) + 1)]
        for timeline, segno in own + timelines.required_segments(spans, archived):
            needed.setdefault(segment_name(timeline, segno, segment_size), summary.id)
    return needed


def run(storage: Storage, cluster: str, backup_id: str | None = None, since_last: bool = False,
        jobs: int = 2, progress: Callable[[int], None] | None = None) -> VerifyReport:
    started = time.monotonic()
    report = VerifyReport(cluster, "since-last" if since_last else "full")
    info = clusterinfo.read(storage, cluster)
    ids = list_backup_ids(storage, cluster)
    if backup_id is not None:
        if backup_id not in ids:
            raise UsageError(f"backup '{backup_id}' of cluster '{cluster}' does not exist "
                             "('lifeboat info' lists the backups)")
        ids = [backup_id]
    manifests: list[Manifest] = []
    for each in ids:
        try:
            manifests.append(read_manifest(storage, cluster, each))
        except LifeboatError as exc:
            report.problems.append(Problem("manifest", each, str(exc)))
    report.backups = len(ids)
    state = _read_state(storage, cluster) if since_last else {"packs": [], "lists": [], "wal": []}
    proven_packs, proven_wal = set(state["packs"]), set(state["wal"])
    referenced = {p for m in manifests for p in m.summary.packs}
    report.skipped_packs = len(referenced & proven_packs)
    frame_limit = max((max(m.summary.frame_size, m.summary.block_size) for m in manifests),
                      default=1 << 20)
    needed = _wal_needed(storage, cluster, manifests, info.wal_segment_size, report)
    wal_todo = [n for n in sorted(needed) if n not in proven_wal]
    report.skipped_wal = len(needed) - len(wal_todo)
    checker = _Checker(storage, cluster, proven_packs, set(state["lists"]), frame_limit, report,
                       progress, jobs)
    with ThreadPoolExecutor(jobs, thread_name_prefix="lifeboat-verify") as pool:
        wal_results = {n: pool.submit(_check_segment, storage, cluster, n) for n in wal_todo}
        for manifest in manifests:
            try:
                for entry in manifest.entries():
                    checker.add(pool, manifest, entry)
            except LifeboatError as exc:
                report.problems.append(Problem("manifest", manifest.summary.id, str(exc)))
        checker.finish()
        for name, future in wal_results.items():
            problem = future.result()
            report.wal_segments += 1
            if problem is not None:
                problem.detail += f" (backup {needed[name]} needs it to reach the end of the archive)"
                report.problems.append(problem)
    bad_wal = {p.item for p in report.problems if p.kind == "wal"}
    _write_state(storage, cluster, {
        "packs": sorted(proven_packs | (referenced - checker.bad_packs)),
        "lists": sorted(checker.proven),
        "wal": sorted(proven_wal | (set(wal_todo) - bad_wal)),
    })
    report.seconds = round(time.monotonic() - started, 3)
    return report


def _read_state(storage: Storage, cluster: str) -> dict[str, list[str]]:
    """What earlier verifications proved; written by another format: refused."""
    key = layout.verify_state_key(cluster)
    try:
        state = json.loads(storage.get(key))
    except (NotFoundError, ValueError):
        return {"packs": [], "lists": [], "wal": []}
    formats.check(key, state.get("format") if isinstance(state, dict) else None, formats.VERIFY_STATE)
    return {name: list(state.get(name, [])) for name in ("packs", "lists", "wal")}


def _write_state(storage: Storage, cluster: str, state: dict[str, list[str]]) -> None:
    data = json.dumps({"format": formats.VERIFY_STATE} | state).encode()
    storage.put(layout.verify_state_key(cluster), data)
