"""Block lists: each read and checked once, however many backups share it, on a pool of
threads; the frames they use are claimed for the pack check (:mod:`.packs`).

The first list to reach a frame claims it: its blocks in that frame are re-hashed when
the pack is read. A claim keeps a few numbers and two digests (the frame's SHA-256 the
list records, and one over the ids of the claimed blocks), never the blocks' ids, so
memory grows with frames, not with blocks.
"""

from __future__ import annotations

import hashlib
import threading
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import NamedTuple

from engine.errors import LifeboatError, NotFoundError
from engine.repository import layout
from engine.repository.blocklist import BlockList, read_stored
from engine.repository.layout import BLOCK_ID_BYTES
from engine.repository.manifest import FileEntry, Manifest
from engine.repository.storage import Storage
from engine.repository.verify.report import NOT_NEEDED, Problem, VerifyReport

_UNSEEN = object()
Checked = tuple[frozenset[str], "Problem | None"]  # the packs a list uses, or why it is unusable


class Claim(NamedTuple):
    """A frame a list uses, and which of its blocks to re-hash: ``runs`` of (first block,
    count, skip in the decompressed frame); ``ids`` is the SHA-256 of their ids, in order."""

    stored: int
    digest: bytes
    codec: int
    runs: tuple[tuple[int, int, int], ...]
    block_size: int
    size: int  # the file's: its last block may be short
    ids: bytes
    owner: int  # index in Claims.owners


def raw_size(claim: Claim, number: int) -> int:
    return min(claim.block_size, claim.size - number * claim.block_size)


class Claims:
    """The frames the lists use, per pack: offset -> claim. Thread-safe."""

    def __init__(self, skip_packs: set[str]) -> None:
        self.by_pack: dict[str, dict[int, Claim]] = {}
        self.owners: list[str] = []  # "backup X file F", one per list that claimed frames
        self._skip = skip_packs
        self._lock = threading.Lock()

    def add(self, owner: str, blocks: BlockList) -> None:
        runs: dict[tuple[str, int], list[tuple[int, int, int]]] = {}
        frames = {}
        for frame, first, count, skip in blocks.segments():
            if frame.pack in self._skip:
                continue
            where = (frame.pack, frame.offset)
            frames[where] = frame
            runs.setdefault(where, []).append((first, count, skip))
        if not runs:
            return
        with self._lock:
            todo = [w for w in runs if w[1] not in self.by_pack.get(w[0], ())]
        if not todo:
            return
        made = []
        for where in todo:
            frame, frame_runs = frames[where], runs[where]
            ids = hashlib.sha256()
            for first, count, _ in frame_runs:
                ids.update(blocks.ids[first * BLOCK_ID_BYTES:(first + count) * BLOCK_ID_BYTES])
            made.append((where, (frame.stored, frame.digest, frame.codec, tuple(frame_runs),
                                 blocks.block_size, blocks.size, ids.digest())))
        with self._lock:
            index = len(self.owners)
            self.owners.append(owner)
            for (pack, offset), values in made:
                self.by_pack.setdefault(pack, {}).setdefault(offset, Claim(*values, index))


@dataclass
class _Broken:
    """A list that cannot be read, and the backups whose files need it."""

    problem: Problem
    backups: dict[str, str] = field(default_factory=dict)  # backup -> a file of it


class ListChecker:
    """Checks the block lists of manifests' entries, each once, on a pool of threads."""

    def __init__(self, cluster: str, claims: Claims, proven_lists: set[str], report: VerifyReport,
                 jobs: int) -> None:
        self._cluster = cluster
        self._claims = claims
        self._proven_lists = proven_lists
        self._report = report
        self._limit = 4 * jobs
        self._seen: dict[bytes, frozenset[str] | _Broken | None] = {}  # None: being checked
        self._waiting: dict[bytes, dict[str, str]] = {}  # backups referring to a list being checked
        self._in_flight: deque[tuple[bytes, tuple[bytes, ...], Future[Checked]]] = deque()
        self._interned: dict[frozenset[str], frozenset[str]] = {}
        self._packs_of: tuple[str, frozenset[str]] = ("", frozenset())  # the last manifest's packs
        self.reached: set[str] = set()  # stored lists some manifest refers to (hex ids)
        self.proven: set[str] = set()  # stored lists found sound or skipped as proven
        self.broken_backups: set[str] = set()
        self.bad: set[str] = set()  # stored lists found damaged or missing (hex ids)
        self.sound: set[bytes] = set()  # lists (keys) read and found sound: they claimed frames

    def add(self, pool: ThreadPoolExecutor, manifest: Manifest, entry: FileEntry) -> None:
        key = entry.list_key
        if key is None:
            return
        backup = manifest.summary.id
        self.reached.update(i.hex() for i in entry.stored_lists)
        seen = self._seen.get(key, _UNSEEN)
        if seen is _UNSEEN:
            if entry.list_id is not None and all(i.hex() in self._proven_lists
                                                 for i in entry.stored_lists):
                self._seen[key] = frozenset()
                self._report.skipped_lists += 1
                self.proven.update(i.hex() for i in entry.stored_lists)
                return
            self._seen[key] = None
            self._waiting[key] = {backup: entry.path}
            self._in_flight.append((key, entry.stored_lists,
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
                self.broken_backups.add(backup)
                self._report.problems.append(Problem(
                    "manifest", backup,
                    f"file {entry.path}: its block list uses pack {stray[0]}, which the manifest "
                    "does not list for it", manifest.key, f"backup {backup} (its packs may be collected)"))

    def _allowed(self, manifest: Manifest, entry: FileEntry) -> frozenset[str]:
        """The packs the manifest lists for the entry's block list."""
        packs = manifest.summary.packs
        if entry.list_id is not None:
            return frozenset(packs[i] for i in entry.packs if i < len(packs))
        if self._packs_of[0] != manifest.summary.id:
            self._packs_of = (manifest.summary.id, frozenset(packs))
        return self._packs_of[1]

    def release_claims(self) -> None:
        """Forget the claims it made (once their packs are checked), so they can be freed."""
        self._claims = Claims(set())

    def finish(self) -> None:
        while self._in_flight:
            self._collect(*self._in_flight.popleft())
        for seen in self._seen.values():
            if isinstance(seen, _Broken):
                self.broken_backups.update(seen.backups)
                files = ", ".join(f"{b} ({f})" for b, f in sorted(seen.backups.items()))
                seen.problem.affects = f"backups it breaks: {files}"

    def _collect(self, key: bytes, stored: tuple[bytes, ...], future: Future[Checked]) -> None:
        """``stored``: the ids of the stored lists read (the list's and its base's, if any)."""
        packs, problem = future.result()
        waiting = self._waiting.pop(key)
        if stored:
            self._report.lists += 1
        if problem is not None:
            self._report.problems.append(problem)
            self._seen[key] = _Broken(problem, waiting)
            self.bad.update(i.hex() for i in stored)  # the base too: checked again next time
            return
        self._seen[key] = self._interned.setdefault(packs, packs)
        self.sound.add(key)
        self.proven.update(i.hex() for i in stored)

    def _check_list(self, manifest: Manifest, entry: FileEntry) -> Checked:
        """Read and check one list, and claim the frames of it no other list has claimed."""
        try:
            blocks = manifest.block_list(entry)
        except LifeboatError as exc:
            if entry.list_id is not None:
                key = layout.list_key(self._cluster, entry.list_id.hex())
                return frozenset(), Problem("list", key, str(exc), key)
            return frozenset(), Problem("list", f"backup {manifest.summary.id} file {entry.path} "
                                        "(inline list)", str(exc), manifest.key)
        self._claims.add(f"backup {manifest.summary.id} file {entry.path}", blocks)
        return frozenset(blocks.packs), None


def reclaim(manifests: Iterable[Manifest], claims: Claims, sound: set[bytes],
            packs: set[str]) -> None:
    """Claim again the frames in ``packs`` of each list in ``sound`` (found sound when it was
    checked), each list once: what a later group of packs is checked against."""
    done: set[bytes] = set()
    for manifest in manifests:
        names = manifest.summary.packs
        try:
            for entry in manifest.entries():
                key = entry.list_key
                if key is None or key in done or key not in sound:
                    continue
                if entry.list_id is not None and not any(
                        i < len(names) and names[i] in packs for i in entry.packs):
                    continue  # none of its frames is in this group: not read again
                done.add(key)
                try:
                    blocks = manifest.block_list(entry)
                except LifeboatError:
                    continue  # damaged since it was checked: its packs' check finds out
                claims.add(f"backup {manifest.summary.id} file {entry.path}", blocks)
        except LifeboatError:
            continue  # the manifest is damaged: reported when it was checked


def check_orphan(storage: Storage, key: str) -> Problem | None:
    """A stored list no manifest refers to: its bytes must still hash to its name (and
    authenticate, in an encrypted repository)."""
    try:
        read_stored(storage, key, bytes.fromhex(key.rsplit("/", 1)[-1]), key)
    except NotFoundError:
        return None  # collected meanwhile
    except LifeboatError as exc:
        return Problem("list", key, str(exc), key, NOT_NEEDED)
    return None


def users_of(manifests: Iterable[Manifest], damaged: dict[str, set[int]]) -> dict[tuple[str, int], list[str]]:
    """Who uses the damaged frames (pack -> offsets): (pack, offset) -> "backup X (file F
    blocks a..b)", for every backup among ``manifests``. Read only when damage was found."""
    found: dict[tuple[str, int], list[str]] = {}
    for manifest in manifests:
        packs = manifest.summary.packs
        try:
            for entry in manifest.entries():
                if entry.list_id is not None and not any(
                        i < len(packs) and packs[i] in damaged for i in entry.packs):
                    continue
                if entry.list_key is None:
                    continue
                try:
                    blocks = manifest.block_list(entry)
                except LifeboatError:
                    continue  # reported as a damaged list
                for frame, first, count, _ in blocks.segments():
                    if frame.offset in damaged.get(frame.pack, ()):
                        last = f"..{first + count - 1}" if count > 1 else ""
                        found.setdefault((frame.pack, frame.offset), []).append(
                            f"{manifest.summary.id} ({entry.path} block{'s' if count > 1 else ''} "
                            f"{first}{last})")
        except LifeboatError:
            continue  # a damaged manifest is reported as such
    return found
