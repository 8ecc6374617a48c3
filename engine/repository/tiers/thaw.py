"""Reading a backup back from an archive class (GLACIER, DEEP_ARCHIVE): find which of the
objects a restore needs are held only in archived storages, ask S3 to restore them (a
temporary readable copy for ``restore_days``), and wait until they all are readable.

A restore's plan states the count and the expected wait before anything starts
(:func:`plan`); the restore itself calls :func:`thaw` before it writes any file. Objects a
hotter tier also holds are read from there and never requested.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

from engine.errors import LifeboatError, RestoreError, StorageError
from engine.repository import layout
from engine.repository.copies import own_wal
from engine.repository.manifest import BackupSummary, Manifest, read_manifest
from engine.repository.storage import Storage
from engine.repository.storage.tiered import TieredView
from engine.repository.tiers import Tier, TierSet
from engine.wal import names as wal

#: ``report(done, total, phase)``: objects readable of those needed, and what is awaited.
Report = Callable[[float, float, str], None]


def backup_keys(storage: Storage, cluster: str, summary: BackupSummary, segment_size: int,
                manifest: Manifest | None = None) -> list[str]:
    """Every data object restoring the backup reads: its packs, its stored block lists and the
    WAL from its start to its stop."""
    manifest = manifest or read_manifest(storage, cluster, summary.id)
    lists = sorted({i.hex() for e in manifest.entries() for i in e.stored_lists})
    return ([layout.pack_key(cluster, p) for p in summary.packs]
            + [layout.list_key(cluster, i) for i in lists]
            + [layout.wal_key(cluster, n) for n in own_wal(summary, segment_size)])


def wal_keys_after(view: TieredView, cluster: str, summary: BackupSummary, segment_size: int,
                   last_segno: int | None) -> list[str]:
    """The archived WAL after the backup's stop that recovery may read: every segment (any
    timeline) from its stop up to ``last_segno`` (None: the end of the archive)."""
    stop = wal.parse_segment(summary.stop_wal, segment_size).segno
    keys = []
    for key in view.list(layout.wal_prefix(cluster)):
        name = key.rsplit("/", 1)[-1]
        if wal.wal_file_kind(name) not in ("segment", "partial"):
            continue
        segno = wal.parse_segment(name[:24], segment_size).segno
        if segno > stop and (last_segno is None or segno <= last_segno):
            keys.append(key)
    return keys


def archived_only(tiers: TierSet, view: TieredView, cluster: str, keys: Iterable[str]
                  ) -> dict[str, tuple[Tier, int]]:
    """Of ``keys``, those whose hottest holder is a storage of an archive-class tier, with it:
    one listing of each storage's packs, lists and WAL, no request per object."""
    held: list[set[str]] = []
    for index in range(len(view)):
        names: set[str] = set()
        for prefix in (layout.packs_prefix(cluster), layout.lists_prefix(cluster),
                       layout.wal_prefix(cluster)):
            try:
                names.update(view.storage(index).list(prefix))
            except StorageError:
                continue
        held.append(names)
    found = {}
    for key in keys:
        index = next((i for i, names in enumerate(held) if key in names), None)
        if index is None:
            continue  # missing everywhere: the restore (or its plan) says so
        tier, position = tiers.at(index)
        if tier.archive_class is not None:
            found[key] = (tier, position)
    return found


@dataclass
class ThawPlan:
    """What a restore from an archive class waits for."""

    tier: str | None = None
    storage_class: str | None = None
    retrieval: str | None = None
    objects: int = 0  # archived objects the restore needs (some may be restored already)
    bytes: int = 0
    wait_seconds: float = 0.0

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    def describe(self) -> str:
        from engine.config.units import format_duration, format_size

        return (f"{self.objects} objects ({format_size(self.bytes)}) are in the {self.tier} tier's "
                f"{self.storage_class} class and must be restored before anything is written: "
                f"expected wait up to {format_duration(self.wait_seconds)} ({self.retrieval} retrieval)")


def plan(tiers: TierSet, view: TieredView, cluster: str, keys: Iterable[str]) -> ThawPlan:
    archived = archived_only(tiers, view, cluster, keys)
    if not archived:
        return ThawPlan()
    tier = max((t for t, _i in archived.values()), key=lambda t: t.wait_seconds)
    size = 0
    for key, (t, position) in archived.items():
        try:
            size += t.storages[position].size(key)
        except StorageError:
            continue
    return ThawPlan(tier.name, tier.archive_class, tier.retrieval, len(archived), size, tier.wait_seconds)


def request(storage: Storage, keys: Iterable[str], days: int, retrieval: str) -> int:
    """Ask for a restore of each of ``keys`` that is archived in ``storage``; how many are not
    readable yet (asked now, or already being restored)."""
    pending = 0
    for key in keys:
        state = storage.archive_state(key)  # type: ignore[attr-defined]
        if state == "archived":
            storage.request_restore(key, days, retrieval)  # type: ignore[attr-defined]
        if state != "readable":
            pending += 1
    return pending


def thaw(tiers: TierSet, view: TieredView, cluster: str, keys: Iterable[str], report: Report,
         sleep: Callable[[float], None] = time.sleep) -> int:
    """Request a restore of every archived object among ``keys`` that no hotter tier holds and
    wait until all are readable, reporting progress; how many were archived. RestoreError when
    they are not readable after twice the expected wait (at least an hour)."""
    archived = archived_only(tiers, view, cluster, keys)
    if not archived:
        return 0
    tier = max((t for t, _i in archived.values()), key=lambda t: t.wait_seconds)
    total = len(archived)
    phase = (f"waiting for {total} archived objects of the {tier.name} tier to be restored "
             f"({tier.retrieval} retrieval)")
    pending: dict[str, tuple[Tier, int]] = {}
    for key, (t, position) in archived.items():
        if request(t.storages[position], [key], t.restore_days, t.retrieval):
            pending[key] = (t, position)
    report(total - len(pending), total, phase)
    limit = time.monotonic() + max(2 * tier.wait_seconds, 3600.0)
    while pending:
        if time.monotonic() > limit:
            raise RestoreError(f"{len(pending)} archived objects of the {tier.name} tier are still not "
                               f"restored (e.g. {next(iter(pending))}); try again later, the requests "
                               "stay in force")
        sleep(min(t.restore_poll for t, _i in pending.values()))
        for key, (t, position) in list(pending.items()):
            try:
                if t.storages[position].archive_state(key) == "readable":  # type: ignore[attr-defined]
                    del pending[key]
            except LifeboatError:
                continue
        report(total - len(pending), total, phase)
    return total


def restore_keys(view: TieredView, cluster: str, backup: BackupSummary, manifest: Manifest,
                 target: object) -> list[str]:
    """The data objects a restore of ``backup`` to ``target`` (a RecoveryTarget) reads: the
    backup's, and the WAL after its stop up to the segment after the target's when that is
    known (an LSN, a recorded restore point, 'immediate': the server reads the record after
    the point, which can be in the next segment), else to the end of the archive."""
    from engine.repository import clusterinfo
    from engine.restore.physical import target_lsn

    size = clusterinfo.read(view, cluster).wal_segment_size
    keys = backup_keys(view, cluster, backup, size, manifest)
    if getattr(target, "kind", "latest") == "immediate":
        last: int | None = wal.parse_segment(backup.stop_wal, size).segno + 1
    else:
        lsn = target_lsn(view, cluster, target)  # type: ignore[arg-type]
        last = None if lsn is None else wal.segment_of_lsn(lsn, size) + 1
    return keys + wal_keys_after(view, cluster, backup, size, last)
