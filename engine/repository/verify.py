"""Verification: every manifest, every block the manifests reference, and the WAL each
backup needs to reach the end of the archive; each missing or damaged item is named.

Every stored frame is read once, however many backups refer to it, checked against its
SHA-256, decompressed, and each of its blocks re-hashed. WAL segments are decoded
(SHA-256 and decompression). ``since_last`` skips packs and segments a previous verify
already proved: both are immutable once written, so what changed since is what is new.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

from engine.errors import ChecksumError, LifeboatError, NotFoundError, UsageError
from engine.repository import clusterinfo, layout
from engine.repository.codec import decompress
from engine.repository.manifest import Manifest, list_backup_ids, read_manifest
from engine.repository.storage import Storage
from engine.wal import archive, timelines
from engine.wal.names import history_name, parse_lsn, segment_before_lsn, segment_name, segment_of_lsn

READ_BYTES = 8 * 1024 * 1024


@dataclass
class Problem:
    kind: str  # manifest, pack, block, wal or history
    item: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.item}: {self.detail}"


@dataclass
class VerifyReport:
    cluster: str
    mode: str
    backups: int = 0
    frames: int = 0
    blocks: int = 0
    bytes: int = 0
    wal_segments: int = 0
    skipped_packs: int = 0
    skipped_wal: int = 0
    seconds: float = 0.0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, object]:
        return asdict(self) | {"ok": self.ok}


@dataclass
class _Frame:
    stored: int
    digest: bytes
    codec: int
    where: str  # the first reference, to name it
    blocks: dict[tuple[int, int], bytes] = field(default_factory=dict)  # (skip, raw) -> digest


def _collect(manifests: list[Manifest], report: VerifyReport) -> dict[str, dict[int, _Frame]]:
    """Every frame the manifests reference, per pack, each once."""
    packs: dict[str, dict[int, _Frame]] = {}
    for manifest in manifests:
        for entry in manifest.entries():
            for number, ref in enumerate(entry.blocks):
                pack_id = manifest.summary.packs[ref.pack]
                frames = packs.setdefault(pack_id, {})
                frame = frames.get(ref.offset)
                if frame is None:
                    where = f"backup {manifest.summary.id} file {entry.path} block {number}"
                    frame = frames[ref.offset] = _Frame(ref.stored, ref.frame_digest, ref.codec, where)
                elif (frame.stored, frame.digest) != (ref.stored, ref.frame_digest):
                    report.problems.append(Problem(
                        "manifest", f"backup {manifest.summary.id} file {entry.path}",
                        f"block {number} disagrees with {frame.where} about pack {pack_id} "
                        f"offset {ref.offset}"))
                frame.blocks[(ref.skip, ref.raw)] = ref.digest
    return packs


def _check_pack(storage: Storage, cluster: str, pack_id: str, frames: dict[int, _Frame],
                frame_limit: int) -> tuple[list[Problem], int, int]:
    """Problems found in one pack, blocks checked, bytes checked."""
    key = layout.pack_key(cluster, pack_id)
    problems: list[Problem] = []
    blocks = checked = 0
    offsets = sorted(frames)
    i = 0
    while i < len(offsets):
        j = i + 1
        while j < len(offsets) and offsets[j] == offsets[j - 1] + frames[offsets[j - 1]].stored \
                and offsets[j] + frames[offsets[j]].stored - offsets[i] <= READ_BYTES:
            j += 1
        start = offsets[i]
        try:
            data = memoryview(storage.read_range(
                key, start, offsets[j - 1] + frames[offsets[j - 1]].stored - start))
        except NotFoundError:
            first = frames[offsets[i]]
            return [Problem("pack", pack_id, f"missing from the repository ({first.where} and "
                            f"{sum(len(f.blocks) for f in frames.values()) - 1} more blocks "
                            "are in it)")], 0, 0
        except LifeboatError as exc:
            problems.append(Problem("pack", pack_id, str(exc)))
            i = j
            continue
        for offset in offsets[i:j]:
            frame = frames[offset]
            stored = data[offset - start:offset - start + frame.stored]
            if layout.frame_checksum(stored) != frame.digest:
                problems.append(Problem("block", frame.where, f"pack {pack_id} offset {offset}: "
                                        "checksum mismatch, the stored data is damaged"))
                continue
            try:
                content = memoryview(decompress(frame.codec, stored, None, frame.where,
                                                limit=frame_limit))
            except ChecksumError as exc:
                problems.append(Problem("block", frame.where, str(exc)))
                continue
            for (skip, raw), digest in frame.blocks.items():
                blocks += 1
                checked += raw
                if layout.block_id(content[skip:skip + raw]) != digest:
                    problems.append(Problem("block", frame.where, f"pack {pack_id} offset "
                                            f"{offset}: a block at {skip} fails its SHA-256"))
        i = j
    return problems, blocks, checked


def _check_segment(storage: Storage, cluster: str, name: str) -> Problem | None:
    try:
        archive.decode(storage.get(layout.wal_key(cluster, name)), name)
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
    state = _read_state(storage, cluster) if since_last else {"packs": [], "wal": []}
    proven_packs, proven_wal = set(state["packs"]), set(state["wal"])
    packs = _collect(manifests, report)
    frame_limit = max((max(m.summary.frame_size, m.summary.block_size) for m in manifests),
                      default=1 << 20)
    todo = {p: f for p, f in packs.items() if p not in proven_packs}
    report.skipped_packs = len(packs) - len(todo)
    needed = _wal_needed(storage, cluster, manifests, info.wal_segment_size, report)
    wal_todo = [n for n in sorted(needed) if n not in proven_wal]
    report.skipped_wal = len(needed) - len(wal_todo)
    bad_packs: set[str] = set()
    with ThreadPoolExecutor(jobs, thread_name_prefix="lifeboat-verify") as pool:
        pack_results = {p: pool.submit(_check_pack, storage, cluster, p, f, frame_limit)
                        for p, f in todo.items()}
        wal_results = {n: pool.submit(_check_segment, storage, cluster, n) for n in wal_todo}
        for pack_id, future in pack_results.items():
            problems, blocks, checked = future.result()
            report.frames += len(todo[pack_id])
            report.blocks += blocks
            report.bytes += checked
            if progress is not None:
                progress(checked)
            if problems:
                bad_packs.add(pack_id)
                report.problems.extend(problems)
        for name, future in wal_results.items():
            problem = future.result()
            report.wal_segments += 1
            if problem is not None:
                problem.detail += f" (backup {needed[name]} needs it to reach the end of the archive)"
                report.problems.append(problem)
    bad_wal = {p.item for p in report.problems if p.kind == "wal"}
    _write_state(storage, cluster, {
        "packs": sorted(proven_packs | (set(todo) - bad_packs)),
        "wal": sorted(proven_wal | (set(wal_todo) - bad_wal)),
    })
    report.seconds = round(time.monotonic() - started, 3)
    return report


def _read_state(storage: Storage, cluster: str) -> dict[str, list[str]]:
    try:
        state = json.loads(storage.get(layout.verify_state_key(cluster)))
    except (NotFoundError, ValueError):
        return {"packs": [], "wal": []}
    return {"packs": list(state.get("packs", [])), "wal": list(state.get("wal", []))}


def _write_state(storage: Storage, cluster: str, state: dict[str, list[str]]) -> None:
    storage.put(layout.verify_state_key(cluster), json.dumps(state).encode())
