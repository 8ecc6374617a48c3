"""``expire``: apply retention, then collect garbage.

Order matters for crash safety: expired manifests are removed first (a backup is gone
the moment its manifest is), then packs and block lists that no remaining manifest
references (mark and sweep, sparing objects younger than the grace period), then WAL
that no kept backup needs. A crash at any point leaves orphans for the next run, never
a manifest that references something missing.

Packs are marked from the kept backups' summaries (each lists every pack its blocks are
in); block lists from the kept manifests' entries, streamed: memory holds the ids of
the lists kept, not the manifests.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from engine.config.schema import Config
from engine.errors import LifeboatError
from engine.repository import clusterinfo, layout
from engine.repository.locks import cluster_lock
from engine.repository.manifest import BackupSummary, list_backup_ids, read_manifest, read_summary
from engine.repository.retention import ExpirePlan, Policy
from engine.repository.storage import Storage
from engine.wal import names as wal


@dataclass
class ExpireReport:
    dry_run: bool
    plan: ExpirePlan
    packs_removed: list[str] = field(default_factory=list)
    pack_bytes: int = 0
    lists_removed: int = 0
    list_bytes: int = 0
    abandoned_removed: int = 0
    wal_removed: list[str] = field(default_factory=list)
    wal_bytes: int = 0
    notices: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "dry_run": self.dry_run,
            "expired": [{"id": b.id, "type": b.type, "reason": self.plan.reasons[b.id]}
                        for b in self.plan.expire],
            "kept": [{"id": b.id, "type": b.type, "reason": self.plan.reasons.get(b.id, "")}
                     for b in self.plan.keep],
            "packs_removed": len(self.packs_removed), "pack_bytes": self.pack_bytes,
            "lists_removed": self.lists_removed, "list_bytes": self.list_bytes,
            "abandoned_removed": self.abandoned_removed,
            "wal_removed": len(self.wal_removed), "wal_bytes": self.wal_bytes,
            "notices": self.notices,
        }


def run(config: Config, cluster: str, storage: Storage, dry_run: bool = False,
        now: float | None = None, policy: Policy | None = None, command: str = "expire") -> ExpireReport:
    """Expire ``cluster`` in ``storage`` as ``policy`` says (default: the cluster's retention
    settings, over the repository and its tiers), holding the cluster's lock in that repository.
    A ``policy`` is a copy's (:func:`engine.repository.region.expire_copy`): the copy is judged
    as the plain repository it is, without the primary's tiers."""
    notices: list[str] = []
    with cluster_lock(storage, cluster, command, notices) as storage:
        report = run_locked(config, cluster, storage, dry_run, now, policy)
    report.notices[:0] = notices
    return report


def run_locked(config: Config, cluster: str, storage: Storage, dry_run: bool = False,
               now: float | None = None, policy: Policy | None = None) -> ExpireReport:
    """The same, for a caller that already holds the cluster's lock (backup)."""
    now = time.time() if now is None else now
    rules = policy or Policy.of(config.retention_for(cluster))
    segment_size = clusterinfo.read(storage, cluster).wal_segment_size
    summaries: list[BackupSummary] = []
    unreadable: list[str] = []
    placed, notice = _placements(config, cluster, storage) if policy is None else (None, "")
    if placed is not None:
        summaries = [p.summary for p in placed.backups]
        unreadable = [backup_id for backup_id, _why in placed.damaged]
    else:
        for backup_id in list_backup_ids(storage, cluster):
            try:
                summaries.append(read_summary(storage, cluster, backup_id))
            except LifeboatError:
                unreadable.append(backup_id)
    decided = rules.plan(summaries, now, segment_size)
    report = ExpireReport(dry_run, decided)
    if notice:
        report.notices.append(notice)
    here = decided.keep
    if placed is None:
        if not dry_run:
            for backup in decided.expire:
                storage.delete(layout.manifest_key(cluster, backup.id))
    else:
        here = _expire_in_tiers(placed, cluster, storage, decided, dry_run)
    if unreadable:
        report.notices.append(
            f"garbage collection skipped: the manifests of {', '.join(unreadable)} cannot be read, "
            "so what they reference is unknown (run verify)")
    else:
        _collect_packs(storage, cluster, here, rules.gc_grace, now, report)
        _collect_lists(storage, cluster, here, rules.gc_grace, now, report)
    before = decided.wal_before_segno
    if placed is not None:  # the repository's WAL serves its own backups; the tiers hold theirs
        starts = [wal.segment_of_lsn(wal.parse_lsn(b.start_lsn), segment_size) for b in here]
        before = min(starts) if starts else None
    if before is not None:
        if policy is None and config.repository.tiers.enabled:  # the primary's tiers, not a copy's
            from engine.repository.tiers.guard import wal_floor

            floor, why = wal_floor(config, storage, cluster, segment_size)
            if floor is not None and floor < before:
                before = floor
                report.notices.append(why)
        _remove_wal(storage, cluster, before, segment_size, report)
    return report


def _placements(config: Config, cluster: str, storage: Storage) -> tuple[Any, str]:
    """With tiers, every backup of every tier and where it is (retention judges them all);
    None when there are no tiers, or when one cannot be listed (then the repository's backups
    alone are judged, as without tiers, and a notice says so)."""
    if not config.repository.tiers.enabled:
        return None, ""
    from engine.repository.tiers import census, open_tiers

    tiers = open_tiers(config, storage)
    if not tiers.enabled:
        return None, ""
    found = census(tiers, cluster)
    if found.unreachable:
        return None, (f"retention judged the repository's backups only: {'; '.join(found.unreachable)}")
    found.tiers = tiers  # type: ignore[attr-defined]
    return found, ""


def _expire_in_tiers(placed: Any, cluster: str, storage: Storage, decided: ExpirePlan,
                     dry_run: bool) -> list[BackupSummary]:
    """Delete each expired backup's manifest from every storage of every tier holding it (their
    packs and WAL are collected by the tiering job's pass over each tier storage); the kept
    backups the repository itself holds."""
    tiers = placed.tiers
    where = placed.by_id()
    for backup in decided.expire:
        placement = where[backup.id]
        tier = placement.hottest(tiers)
        if tier is not tiers.tiers[0]:
            decided.reasons[backup.id] += f" (in the {tier.name} tier)"
        if dry_run:
            continue
        for name, indices in placement.held.items():
            for index in indices:
                tiers.tier(name).storages[index].delete(layout.manifest_key(cluster, backup.id))
    hot = tiers.tiers[0]
    return [b for b in decided.keep if 0 in where[b.id].held.get(hot.name, [])]


def collect_garbage(storage: Storage, cluster: str, grace: float, segment_size: int,
                    now: float | None = None, dry_run: bool = False) -> ExpireReport:
    """Garbage collection alone, for a storage whose backups retention does not decide here (a
    tier's, after backups moved out): packs and block lists no manifest in it references (past
    ``grace``), and WAL below the start of the oldest backup it holds (all but timeline
    histories when it holds none). The caller holds what serialises writers of ``storage``."""
    now = time.time() if now is None else now
    keep: list[BackupSummary] = []
    report = ExpireReport(dry_run, ExpirePlan())
    for backup_id in list_backup_ids(storage, cluster):
        try:
            keep.append(read_summary(storage, cluster, backup_id))
        except LifeboatError:
            report.notices.append(f"garbage collection of {storage.describe()} skipped: the manifest "
                                  f"of {backup_id} cannot be read (run verify)")
            return report
    report.plan.keep = keep
    _collect_packs(storage, cluster, keep, grace, now, report)
    _collect_lists(storage, cluster, keep, grace, now, report)
    starts = [wal.segment_of_lsn(wal.parse_lsn(b.start_lsn), segment_size) for b in keep]
    _remove_wal(storage, cluster, min(starts) if starts else 1 << 62, segment_size, report)
    return report


def _collect_packs(storage: Storage, cluster: str, keep: list[BackupSummary], grace: float,
                   now: float, report: ExpireReport) -> None:
    """Mark every pack a kept manifest references; sweep the others past the grace period."""
    marked = {pack for backup in keep for pack in backup.packs}
    for key in storage.list(layout.packs_prefix(cluster)):
        pack_id = key.rsplit("/", 1)[-1]
        if pack_id in marked or now - storage.mtime(key) < grace:
            continue
        report.packs_removed.append(pack_id)
        report.pack_bytes += storage.size(key)
        if not report.dry_run:
            storage.delete(key)
    if not report.dry_run:
        report.abandoned_removed = storage.remove_abandoned(layout.packs_prefix(cluster), grace)


def _collect_lists(storage: Storage, cluster: str, keep: list[BackupSummary], grace: float,
                   now: float, report: ExpireReport) -> None:
    """Mark every block list a kept manifest refers to; sweep the others past the grace period."""
    marked: set[str] = set()
    for backup in keep:
        try:
            manifest = read_manifest(storage, cluster, backup.id)
            marked.update(i.hex() for e in manifest.entries() for i in e.stored_lists)
        except LifeboatError as exc:
            report.notices.append(f"block lists not collected: the manifest of {backup.id} cannot be "
                                  f"read ({exc}), so the lists it needs are unknown (run verify)")
            return
    for key in storage.list(layout.lists_prefix(cluster)):
        if key.rsplit("/", 1)[-1] in marked or now - storage.mtime(key) < grace:
            continue
        report.lists_removed += 1
        report.list_bytes += storage.size(key)
        if not report.dry_run:
            storage.delete(key)
    if not report.dry_run:
        report.abandoned_removed += storage.remove_abandoned(layout.lists_prefix(cluster), grace)


def _remove_wal(storage: Storage, cluster: str, before_segno: int, segment_size: int,
                report: ExpireReport) -> None:
    """Segments (and their .partial and .backup files) below the oldest kept backup's start;
    timeline history files are always kept."""
    for key in storage.list(layout.wal_prefix(cluster)):
        name = key.rsplit("/", 1)[-1]
        if wal.wal_file_kind(name) in (None, "history"):
            continue
        if wal.parse_segment(name[:24], segment_size).segno >= before_segno:
            continue
        report.wal_removed.append(name)
        report.wal_bytes += storage.size(key)
        if not report.dry_run:
            storage.delete(key)



