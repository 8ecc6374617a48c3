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

from engine.config.schema import Config
from engine.errors import LifeboatError
from engine.repository import clusterinfo, layout
from engine.repository.locks import cluster_lock
from engine.repository.manifest import BackupSummary, list_backup_ids, read_manifest, read_summary
from engine.repository.retention import ExpirePlan, plan
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
        now: float | None = None) -> ExpireReport:
    notices: list[str] = []
    with cluster_lock(storage, cluster, "expire", notices) as storage:
        report = run_locked(config, cluster, storage, dry_run, now)
    report.notices[:0] = notices
    return report


def run_locked(config: Config, cluster: str, storage: Storage, dry_run: bool = False,
               now: float | None = None) -> ExpireReport:
    """The same, for a caller that already holds the cluster's lock (backup)."""
    now = time.time() if now is None else now
    rules = config.retention_for(cluster)
    segment_size = clusterinfo.read(storage, cluster).wal_segment_size
    summaries: list[BackupSummary] = []
    unreadable: list[str] = []
    for backup_id in list_backup_ids(storage, cluster):
        try:
            summaries.append(read_summary(storage, cluster, backup_id))
        except LifeboatError:
            unreadable.append(backup_id)
    decided = plan(summaries, rules.rules(), rules.max_recovery_window, now, segment_size)
    report = ExpireReport(dry_run, decided)
    if not dry_run:
        for backup in decided.expire:
            storage.delete(layout.manifest_key(cluster, backup.id))
    if unreadable:
        report.notices.append(
            f"garbage collection skipped: the manifests of {', '.join(unreadable)} cannot be read, "
            "so what they reference is unknown (run verify)")
    else:
        _collect_packs(storage, cluster, decided.keep, rules.gc_grace, now, report)
        _collect_lists(storage, cluster, decided.keep, rules.gc_grace, now, report)
    if decided.wal_before_segno is not None:
        _remove_wal(storage, cluster, decided.wal_before_segno, segment_size, report)
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
            marked.update(e.list_id.hex() for e in manifest.entries() if e.list_id is not None)
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



