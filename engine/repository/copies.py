"""Copies of a cluster's repository content in another region (another repository).

:func:`copy_cluster` brings a target repository up to date with what the source holds
for one cluster; :func:`copy_lag` says how far behind the target is. The order of the
copy keeps the target's promise that a backup whose manifest it holds restores:

1. the repository marker and the cluster's identity (``cluster.json``), if absent; an
   identity that differs is a conflict (a different system identifier: the wrong target).
   An encrypted repository's objects are copied as they are stored (sealed), with its
   keys (``lifeboat.keys``, brought up to date after a rotation), so the copy opens with
   the same user key; a target whose keys are another repository's is a conflict;
2. timeline history files, then every other archived WAL file the target lacks, oldest
   name first (an interrupted copy leaves a prefix of the archive, not a gap);
3. for each backup the target lacks, oldest first, and only if the WAL from its start to
   its stop segment is now in the target: every pack it references, then every block
   list it refers to that the target lacks, then its manifest.

The backups to copy are listed *before* the WAL, so each one's WAL (archived before its
manifest was written) is in that WAL listing. An interrupted copy leaves at most orphan
packs and lists, never a manifest whose packs, lists or WAL are missing; the next copy
completes it.

Nothing is ever rewritten or deleted in the target by a copy. Retention of a copy is
``expire`` on the copy (:mod:`engine.repository.region`), under the copy's own cluster lock,
which a copy holds too while it writes. A copy given its retention policy does not copy what
that policy would expire at once: the backups it would not keep, and the WAL before the
oldest backup it keeps (so a copy never copies the same old objects round after round only
for its expire to remove them).

:func:`ship_wal` is the WAL alone, for the rounds between full copies that keep the copy
within ``max_delay`` of the archive: it lists only the newest WAL directories of both sides
and takes no lock (every write is put-if-absent of an immutable object, so it may run beside
a full copy or an expire of the copy; expire never removes WAL that recent).

The tiering job (:mod:`engine.repository.tiers.job`) moves a backup with the same pieces:
:func:`copy_identity`, :func:`copy_wal` for the WAL that backup needs, then
:func:`copy_backup`; one implementation of the safe order for both.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import BinaryIO

from engine.errors import ChecksumError, CopyConflictError, LifeboatError, NotFoundError, StorageError
from engine.repository import clusterinfo, layout
from engine.repository.blocklist import check_stored
from engine.repository.encryption import RepositoryKeys, attach, belongs, keys_of
from engine.repository.locks import cluster_lock
from engine.repository.manifest import BackupSummary, list_backup_ids, read_manifest, read_summary
from engine.repository.retention import Policy
from engine.repository.storage import Storage
from engine.wal import names as wal

CHUNK = 8 * 1024 * 1024  # bytes read from the source and written to the target at a time


@dataclass
class CopyReport:
    """What one :func:`copy_cluster` call wrote into the target."""

    cluster: str
    region: str
    wal_copied: int = 0  # WAL segments, partials, backup and timeline history files
    packs_copied: int = 0
    lists_copied: int = 0
    backups_copied: int = 0  # manifests copied
    bytes_copied: int = 0
    seconds: float = 0.0
    skipped: list[str] = field(default_factory=list)  # what was not copied this time, and why

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def copy_cluster(source: Storage, target: Storage, cluster: str, region: str,
                 policy: Policy | None = None, now: float | None = None) -> CopyReport:
    """Bring ``target`` up to date with what ``source`` holds for ``cluster``; with a
    ``policy`` (the copy's: see :func:`engine.repository.region.copy_policy`), only what
    the copy keeps.

    Contract:

    - Only what the target lacks is written, with put-if-absent semantics, streamed in
      chunks of :data:`CHUNK` bytes; each write is durable when the driver returns.
    - Each object copied is validated: the bytes streamed and the target's size equal the
      source's size, a manifest's body must match the SHA-256 its summary records
      (checked while streaming, so a damaged manifest never becomes visible), and a block
      list must match its id (its SHA-256); a mismatch raises :class:`StorageError` naming
      the key, or skips the backup when its manifest or a list is damaged.
    - An object already in the target with another size than the source's (a WAL file, a
      pack a new backup references) raises :class:`CopyConflictError` naming it; so does a
      ``cluster.json`` that differs. Nothing is written after a WAL conflict is found.
    - A WAL file that vanishes from the source meanwhile (expire ran) is skipped; a backup
      whose manifest or pack vanished (it was expired), whose manifest is unreadable, or
      whose WAL is not in the target is skipped. Each skip is named in ``report.skipped``;
      a backup skipped keeps :func:`copy_lag` growing until it is copied.
    - Nothing is deleted from the target.
    - With ``policy``: a backup the policy would expire now (planned over the backups of both
      sides) is not copied, nor WAL before the oldest backup it keeps; both are named in
      ``report.skipped`` once per call, counted, not listed.
    - The target's cluster lock is held while copying (LockBusyError if another copy to
      the same target runs).

    Cost: every call lists the cluster's whole WAL prefix and backups of both sides, and
    compares the sizes of the WAL files both hold (one stat each side per file: cheap on
    posix, one HEAD request each on an object store, where a listing with sizes would
    save them). Packs and block lists are looked at only for backups being copied (one
    existence check per list the copy has not met yet).
    """
    started = time.monotonic()
    report = CopyReport(cluster, region)
    attach(target, keys_of(source))  # a copy holds the source's objects as they are, sealed alike
    info = copy_identity(source, target, cluster, report)
    with cluster_lock(target, cluster, f"copy to region {region} from {source.describe()}") as target:
        held = set(list_backup_ids(target, cluster))
        backups = [b for b in list_backup_ids(source, cluster) if b not in held]  # before the WAL
        floor = None
        if policy is not None and policy.configured:
            backups, floor = _wanted(source, target, cluster, backups, held, policy,
                                     info.wal_segment_size, now, report)
        wal_held = copy_wal(source, target, cluster, report, floor=floor,
                            segment_size=info.wal_segment_size)
        held_objects: tuple[set[str], set[str]] = (set(), set())  # packs, lists
        for backup_id in backups:
            copy_backup(source, target, cluster, backup_id, wal_held, held_objects,
                        info.wal_segment_size, report)
        _copy_restore_points(source, target, cluster, report)
    report.seconds = round(time.monotonic() - started, 3)
    return report


def copy_lag(source: Storage, target: Storage, cluster: str, now: float | None = None) -> float:
    """Seconds the target is behind: now minus the write time (Storage.mtime in source) of the
    oldest backup manifest or archived WAL file of the source that the target lacks; 0 when the
    target holds everything the source does. See :func:`copy_lags`."""
    return copy_lags(source, target, cluster, now)[0]


def copy_lags(source: Storage, target: Storage, cluster: str,
              now: float | None = None) -> tuple[float, float]:
    """How far the target is behind: (the age of the oldest backup manifest or archived WAL
    file of the source it lacks, the age of the oldest archived WAL file it lacks: the WAL
    shipping delay); 0 when it lacks nothing. What is older than the oldest backup the target
    holds does not count: a copy's retention may have expired it (see :func:`target_floor`).

    Lists the WAL and backups of both sides (the cost of :func:`copy_cluster`'s listing) and
    reads the mtime of each object the target lacks. An object that vanishes from the source
    while looked at (expired) does not count.
    """
    now = time.time() if now is None else now
    held = set(list_backup_ids(target, cluster))
    first_id, floor = target_floor(target, cluster)
    manifests = [layout.manifest_key(cluster, b) for b in list_backup_ids(source, cluster)
                 if b not in held and (first_id is None or b > first_id)]
    held_wal = wal_names(target, cluster)
    wal_keys = [layout.wal_key(cluster, n) for n in sorted(wal_names(source, cluster) - held_wal)
                if _at_or_after(n, floor)]
    oldest_wal = _oldest(source, wal_keys)
    oldest = _oldest(source, manifests)
    if oldest_wal is not None:
        oldest = oldest_wal if oldest is None else min(oldest, oldest_wal)
    return (0.0 if oldest is None else max(0.0, now - oldest),
            0.0 if oldest_wal is None else max(0.0, now - oldest_wal))


_FLOORS: dict[tuple[str, str, str], tuple[int, int] | None] = {}  # manifests are immutable


def target_floor(target: Storage, cluster: str) -> tuple[str | None, tuple[int, int] | None]:
    """The oldest backup the target holds and (segment size, the segment number its WAL
    starts at): what is older in the source is no copy lag and is not shipped (a copy's
    retention may have expired it). (None, None) when the target holds no readable backup.
    What each backup starts at is read once per process (a manifest never changes)."""
    for backup_id in list_backup_ids(target, cluster):
        key = (target.describe(), cluster, backup_id)
        if key not in _FLOORS:
            try:
                size = clusterinfo.read(target, cluster).wal_segment_size
                start = read_summary(target, cluster, backup_id).start_wal
                _FLOORS[key] = (size, wal.parse_segment(start, size).segno)
            except StorageError:
                continue  # cannot be read now (gone, unreachable): not remembered
            except LifeboatError:
                _FLOORS[key] = None  # damaged: the next backup starts the copy
        found = _FLOORS[key]
        if found is not None:
            return backup_id, found
    return None, None


def _at_or_after(name: str, floor: tuple[int, int] | None) -> bool:
    """Whether WAL file ``name`` is at or after ``floor`` (timeline history files always are)."""
    if floor is None:
        return True
    segno = _segno(name, floor[0])
    return segno is None or segno >= floor[1]


def _oldest(source: Storage, keys: list[str]) -> float | None:
    """The oldest write time of ``keys`` in ``source`` (those gone meanwhile do not count)."""
    oldest: float | None = None
    for key in keys:
        try:
            written = source.mtime(key)
        except NotFoundError:
            continue
        oldest = written if oldest is None else min(oldest, written)
    return oldest


@dataclass
class ShipReport:
    """What one :func:`ship_wal` round did, and the shipping delay it found before it."""

    cluster: str
    region: str
    wal_copied: int = 0
    bytes_copied: int = 0
    delay: float = 0.0  # age of the oldest WAL file of the recent directories the target lacked
    seconds: float = 0.0
    skipped: list[str] = field(default_factory=list)


#: How many of the newest WAL directories (256 segments each) a shipping round looks at.
RECENT_WAL_DIRECTORIES = 2
_IDENTIFIED: set[tuple[str, str, str]] = set()  # (source, target, cluster) whose identity matched


def ship_wal(source: Storage, target: Storage, cluster: str, region: str,
             now: float | None = None) -> ShipReport:
    """Copy the newest archived WAL the target lacks (timeline history files, then the
    segments of the :data:`RECENT_WAL_DIRECTORIES` newest WAL directories, oldest first),
    none before the oldest backup the target holds (:func:`target_floor`).

    Contract: the identity is copied or checked first as by :func:`copy_cluster`, once per
    process and target (a differing one raises CopyConflictError and nothing is written);
    only files the target lacks are written, put-if-absent, so a file of another size
    already there is never overwritten (one that appears meanwhile raises
    CopyConflictError); a file gone from the source meanwhile is skipped; nothing is deleted
    and no lock is taken (see the module's docstring). ``delay`` is measured before anything
    is copied: what an alert on ``max_delay`` compares.
    Cost: the listings of the WAL root and the newest directories of each side and of the
    target's backups, and one stat per file lacking; older WAL is the full copy round's.
    """
    started = time.monotonic()
    now = time.time() if now is None else now
    report = ShipReport(cluster, region)
    checked = (source.describe(), target.describe(), cluster)
    if checked not in _IDENTIFIED:  # once per process: the full rounds check it every time
        copy_identity(source, target, cluster, CopyReport(cluster, region))
        _IDENTIFIED.add(checked)
    root = layout.wal_prefix(cluster)
    directories = [d for d in source.list(root, recursive=False) if d.endswith("/")]
    history = [d for d in directories if d.rstrip("/").endswith("/history")]
    recent = history + [d for d in directories if d not in history][-RECENT_WAL_DIRECTORIES:]
    ours: set[str] = set()
    theirs: set[str] = set()
    for directory in recent:
        ours |= _names_in(source, directory)
        theirs |= _names_in(target, directory)
    _first, floor = target_floor(target, cluster)
    lacking = sorted(n for n in ours - theirs if _at_or_after(n, floor))
    oldest = _oldest(source, [layout.wal_key(cluster, n) for n in lacking])
    report.delay = 0.0 if oldest is None else max(0.0, now - oldest)
    for name in sorted(lacking, key=lambda n: (wal.wal_file_kind(n) != "history", n)):
        try:
            written = copy_object(source, target, layout.wal_key(cluster, name))
        except NotFoundError:
            report.skipped.append(f"WAL {name}: removed from the source while copying")
            continue
        if written:
            report.wal_copied += 1
            report.bytes_copied += written
    report.seconds = round(time.monotonic() - started, 3)
    return report


def _names_in(storage: Storage, directory: str) -> set[str]:
    names = (k.rsplit("/", 1)[-1] for k in storage.list(directory.rstrip("/")))
    return {n for n in names if wal.wal_file_kind(n) is not None}


# what a copy with a policy of its own keeps ------------------------------------------------

def _wanted(source: Storage, target: Storage, cluster: str, backups: list[str], held: set[str],
            policy: Policy, segment_size: int, now: float | None,
            report: CopyReport) -> tuple[list[str], int | None]:
    """The backups of ``backups`` the copy's ``policy`` keeps (planned over the summaries of
    both sides), and the first WAL segment number the kept backups need."""
    summaries: dict[str, BackupSummary] = {}
    for storage, ids in ((target, sorted(held)), (source, backups)):
        for backup_id in ids:
            try:
                summaries[backup_id] = read_summary(storage, cluster, backup_id)
            except LifeboatError:
                continue  # unreadable: copied (or not) as without a policy
    decided = policy.plan(list(summaries.values()), time.time() if now is None else now, segment_size)
    dropped = {b.id for b in decided.expire}
    kept = [b for b in backups if b not in dropped]
    if len(kept) < len(backups):
        report.skipped.append(f"{len(backups) - len(kept)} backups: not kept by the copy's retention")
    return kept, decided.wal_before_segno


def _segno(name: str, segment_size: int) -> int | None:
    """The segment number a WAL file name starts with (None: a timeline history file)."""
    if wal.wal_file_kind(name) in (None, "history"):
        return None
    return wal.parse_segment(name[:24], segment_size).segno


# identity ---------------------------------------------------------------------------------

def copy_identity(source: Storage, target: Storage, cluster: str,
                  report: CopyReport) -> clusterinfo.ClusterInfo:
    """The repository marker, its keys and ``cluster.json``; a differing identity is a
    conflict, and either side in another format is refused (FormatError)."""
    clusterinfo.check_marker(target)  # a target of another format is refused before any write
    keys = keys_of(source)
    if keys is not None:
        _copy_keys(source, target, keys, report)
    if clusterinfo.check_marker(source):
        marker = source.get(layout.REPO_MARKER)
        if target.put_if_absent(layout.REPO_MARKER, marker):
            report.bytes_copied += len(marker)
    ours = clusterinfo.read(source, cluster)  # ClusterSetupError when not initialised
    key = layout.cluster_info_key(cluster)
    raw = source.get(key)
    if target.put_if_absent(key, raw):
        report.bytes_copied += len(raw)
        return ours
    theirs = clusterinfo.read(target, cluster)
    if theirs.system_identifier != ours.system_identifier:
        raise CopyConflictError(
            f"{target.describe()}: {key} belongs to database system {theirs.system_identifier}, "
            f"but the source's cluster '{cluster}' is system {ours.system_identifier}: this is "
            "the wrong target (another cluster's copy); nothing was copied")
    if theirs != ours:
        changed = ", ".join(f"{name} {getattr(theirs, name)!r} (source {getattr(ours, name)!r})"
                            for name in ours._fields if getattr(theirs, name) != getattr(ours, name))
        raise CopyConflictError(f"{target.describe()}: {key} differs from the source's: {changed}; "
                                "nothing was copied")
    return ours


def _copy_keys(source: Storage, target: Storage, keys: RepositoryKeys, report: CopyReport) -> None:
    """The source's ``lifeboat.keys`` into the target unless it holds the same bytes (a
    rotation rewrites it); a target with another repository's keys is a conflict."""
    raw = source.get(layout.REPO_KEYS)
    try:
        theirs = target.get(layout.REPO_KEYS)
    except NotFoundError:
        theirs = None
    if theirs == raw:
        return
    if theirs is not None and not belongs(theirs, keys, f"{target.describe()}: {layout.REPO_KEYS}"):
        raise CopyConflictError(f"{target.describe()}: {layout.REPO_KEYS} is another encrypted "
                                "repository's: this is the wrong target; nothing was copied")
    target.put(layout.REPO_KEYS, raw)
    report.bytes_copied += len(raw)


# WAL --------------------------------------------------------------------------------------

def wal_names(storage: Storage, cluster: str) -> set[str]:
    names = (k.rsplit("/", 1)[-1] for k in storage.list(layout.wal_prefix(cluster)))
    return {n for n in names if wal.wal_file_kind(n) is not None}


def copy_wal(source: Storage, target: Storage, cluster: str, report: CopyReport,
             only: set[str] | None = None, floor: int | None = None, segment_size: int = 0) -> set[str]:
    """Copy the WAL files the target lacks (history files first), or of them only those in
    ``only``, none before segment number ``floor``; the names it now holds."""
    theirs = wal_names(target, cluster)
    ours = wal_names(source, cluster)
    if only is not None:
        ours &= only
    if floor is not None:
        before = {n for n in ours - theirs
                  if (segno := _segno(n, segment_size)) is not None and segno < floor}
        if before:
            report.skipped.append(f"{len(before)} WAL files: older than the oldest backup the copy's "
                                  "retention keeps")
            ours -= before
    for name in sorted(ours & theirs):  # a conflict stops the copy before anything is written
        key = layout.wal_key(cluster, name)
        try:
            size = source.size(key)
        except NotFoundError:
            continue
        theirs_size = target.size(key)
        if theirs_size != size:
            raise CopyConflictError(
                f"{target.describe()}: {key} is {theirs_size} bytes but the source's is {size}: "
                "the target's archive is not a copy of this source's (refusing to overwrite it)")
    missing = sorted(ours - theirs, key=lambda n: (wal.wal_file_kind(n) != "history", n))
    for name in missing:
        key = layout.wal_key(cluster, name)
        try:
            written = copy_object(source, target, key)
        except NotFoundError:
            report.skipped.append(f"WAL {name}: removed from the source while copying")
            continue
        theirs.add(name)
        if written:
            report.wal_copied += 1
            report.bytes_copied += written
    return theirs


# backups ----------------------------------------------------------------------------------

def copy_backup(source: Storage, target: Storage, cluster: str, backup_id: str, wal_held: set[str],
                held: tuple[set[str], set[str]], segment_size: int, report: CopyReport) -> bool:
    """Its packs, then its block lists, then its manifest, once the WAL from its start to its
    stop is in ``wal_held`` (the target's); a backup that cannot be copied yet is skipped,
    named in ``report.skipped``. Whether the target now holds its manifest."""
    packs_held, lists_held = held
    try:
        summary = read_summary(source, cluster, backup_id)
    except NotFoundError:
        report.skipped.append(f"backup {backup_id}: expired from the source while copying")
        return False
    except LifeboatError as exc:
        report.skipped.append(f"backup {backup_id}: its manifest in the source is unreadable ({exc})")
        return False
    lacking = [n for n in own_wal(summary, segment_size) if n not in wal_held]
    if lacking:
        report.skipped.append(f"backup {backup_id}: its WAL {lacking[0]} is not in the target yet")
        return False
    for pack_id in summary.packs:
        if pack_id in packs_held:
            continue
        key = layout.pack_key(cluster, pack_id)
        try:
            written = _copy_pack(source, target, key)
        except NotFoundError:
            report.skipped.append(f"backup {backup_id}: expired from the source while copying "
                                  f"(pack {pack_id} is gone)")
            return False
        packs_held.add(pack_id)
        if written:
            report.packs_copied += 1
            report.bytes_copied += written
    try:
        _copy_lists(source, target, cluster, backup_id, lists_held, report)
    except NotFoundError:
        report.skipped.append(f"backup {backup_id}: expired from the source while copying")
        return False
    except ChecksumError as exc:
        report.skipped.append(f"backup {backup_id}: {exc}")
        return False
    key = layout.manifest_key(cluster, backup_id)
    try:
        written = copy_object(source, target, key, summary)
    except NotFoundError:
        report.skipped.append(f"backup {backup_id}: expired from the source while copying")
        return False
    except ChecksumError as exc:
        report.skipped.append(f"backup {backup_id}: {exc}")
        return False
    if written:
        report.backups_copied += 1
        report.bytes_copied += written
    return True


def _copy_lists(source: Storage, target: Storage, cluster: str, backup_id: str, held: set[str],
                report: CopyReport) -> None:
    """Copy the block lists the backup refers to that the target lacks, each checked against
    its id before it is written. NotFoundError when the backup or a list is gone from the
    source, ChecksumError when the manifest or a list is damaged there."""
    manifest = read_manifest(source, cluster, backup_id)
    for ident in (i for entry in manifest.entries() for i in reversed(entry.stored_lists)):
        hex_id = ident.hex()  # a list's base first: a list is never there without it
        if hex_id in held:
            continue
        key = layout.list_key(cluster, hex_id)
        if not target.exists(key):
            data = source.get(key)  # as stored: sealed, in an encrypted repository
            try:
                check_stored(data, key, ident, keys_of(source), key)
            except ChecksumError:
                raise ChecksumError(f"{key}: the source's block list fails its checksum (damaged); "
                                    "the backup was not copied") from None
            if target.put_if_absent(key, data):
                report.lists_copied += 1
                report.bytes_copied += len(data)
        held.add(hex_id)


def own_wal(summary: BackupSummary, segment_size: int) -> list[str]:
    """The segments from the backup's start to its stop: without them it cannot be restored."""
    first = wal.parse_segment(summary.start_wal, segment_size).segno
    last = wal.parse_segment(summary.stop_wal, segment_size).segno
    return [wal.segment_name(summary.timeline, segno, segment_size) for segno in range(first, last + 1)]


def _copy_pack(source: Storage, target: Storage, key: str) -> int:
    """Copy a pack unless the target holds it with the same size; bytes written."""
    try:
        theirs = target.size(key)
    except NotFoundError:
        return copy_object(source, target, key)
    size = source.size(key)
    if theirs != size:
        raise CopyConflictError(f"{target.describe()}: {key} is {theirs} bytes but the source's is "
                                f"{size}: refusing to copy a backup that references it")
    return 0


# objects ----------------------------------------------------------------------------------

def _copy_restore_points(source: Storage, target: Storage, cluster: str, report: CopyReport) -> None:
    """Named restore points (small records), so ``restore --target-name`` works from the copy."""
    prefix = layout.restore_points_prefix(cluster)
    for key in sorted(set(source.list(prefix)) - set(target.list(prefix))):
        try:
            report.bytes_copied += copy_object(source, target, key)
        except NotFoundError:
            continue


def copy_object(source: Storage, target: Storage, key: str,
                 manifest: BackupSummary | None = None) -> int:
    """Stream ``key`` into the target unless present; bytes written (0: it was there already,
    with the same size). NotFoundError when the source no longer holds it."""
    size = source.size(key)
    with source.open_stream(key) as stream:
        written = target.put_stream_if_absent(key, _chunks(stream, key, size, manifest))
    theirs = target.size(key)
    if theirs != size:
        if not written:
            raise CopyConflictError(f"{target.describe()}: {key} is {theirs} bytes but the "
                                    f"source's is {size} (refusing to overwrite it)")
        raise StorageError(f"{target.describe()}: {key} was copied but holds {theirs} bytes "
                           f"instead of the source's {size}")
    return size if written else 0


def _chunks(stream: BinaryIO, key: str, size: int, manifest: BackupSummary | None) -> Iterator[bytes]:
    """The object's bytes. At the end of the stream, before the target's put can commit, it
    raises (so the put fails and nothing becomes visible) when they were not ``size`` bytes or
    a manifest's body fails the SHA-256 its summary records."""
    body_start = size - manifest.body_bytes if manifest is not None else size
    digest = hashlib.sha256()
    offset = 0
    while chunk := stream.read(CHUNK):
        if offset + len(chunk) > body_start:
            digest.update(memoryview(chunk)[max(0, body_start - offset):])
        offset += len(chunk)
        if offset > size:
            break
        yield chunk
    if offset != size:
        raise StorageError(f"{key}: read {offset} bytes from the source, expected {size} "
                           "(it changed while being copied)")
    if manifest is not None and digest.hexdigest() != manifest.body_sha256:
        raise ChecksumError(f"{key}: the source's manifest body fails its checksum (damaged); "
                            "it was not copied")
