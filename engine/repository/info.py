"""What the repository holds for each cluster: backups and the WAL archive's range."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.errors import ClusterSetupError, FormatError, LifeboatError
from engine.repository import clusterinfo
from engine.repository.manifest import BackupSummary, list_backup_ids, read_summary
from engine.repository.storage import Storage
from engine.wal import archive

TYPE_CHECKING = False
if TYPE_CHECKING:
    from engine.repository.tiers import TierSet

BACKUP_FIELDS = (
    "id", "type", "started_at", "finished_at", "start_lsn", "stop_lsn", "timeline",
    "start_wal", "stop_wal", "size_bytes", "stored_bytes", "file_count", "block_count",
    "compression", "block_size", "pg_version", "system_identifier", "base", "reused_bytes",
    "lists_written", "list_bytes",
    "page_checksums", "corrupt_pages", "corrupt_files", "ratios", "compression_changes",
)


@dataclass
class ClusterReport:
    name: str
    status: str = "ok"
    info: clusterinfo.ClusterInfo | None = None
    backups: list[BackupSummary] = field(default_factory=list)
    damaged: list[tuple[str, str]] = field(default_factory=list)
    archive: list[archive.TimelineRange] = field(default_factory=list)
    objectives: dict[str, Any] | None = None  # class, objectives and the latest measurement
    placements: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> tier and copies

    @property
    def failed(self) -> bool:
        """The repository could not be read for this cluster (not: not initialised yet)."""
        return self.status.startswith("error")

    def to_json(self) -> dict[str, Any]:
        backups: list[dict[str, Any]] = [
            {name: getattr(b, name) for name in BACKUP_FIELDS} | {"status": "ok"}
            | self.placements.get(b.id, {})
            for b in self.backups
        ]
        backups += [{"id": i, "status": "error", "error": e} for i, e in self.damaged]
        return {
            "name": self.name,
            "status": self.status,
            "system_identifier": self.info.system_identifier if self.info else None,
            "pg_version": self.info.pg_version if self.info else None,
            "backups": sorted(backups, key=lambda b: b["id"]),
            "archive": [
                {"timeline": r.timeline, "first": r.first, "last": r.last, "segments": r.count}
                for r in self.archive
            ],
            "objectives": self.objectives,
        }


def cluster_report(storage: Storage, cluster: str, with_archive: bool = True,
                   tiers: TierSet | None = None) -> ClusterReport:
    """The cluster's backups and, ``with_archive``, its archive's ranges (a walk of the
    whole WAL prefix). With ``tiers`` (more than the repository alone), the backups of every
    tier, each with its tier and copies there, and the archive of all tiers together."""
    if tiers is not None and tiers.enabled:
        return _tiered_report(tiers, cluster, with_archive)
    report = ClusterReport(cluster)
    try:
        report.info = clusterinfo.read(storage, cluster)
    except FormatError:
        raise  # another Lifeboat's repository: refused, not shown as uninitialised
    except ClusterSetupError as exc:
        report.status = f"not initialised ({exc})"
        return report
    except LifeboatError as exc:
        report.status = f"error: {exc}"
        return report
    for backup_id in list_backup_ids(storage, cluster):
        try:
            report.backups.append(read_summary(storage, cluster, backup_id))
        except LifeboatError as exc:
            report.damaged.append((backup_id, str(exc)))
    if with_archive:
        report.archive = archive.archive_ranges(storage, cluster, report.info.wal_segment_size)
    return report


def _tiered_report(tiers: TierSet, cluster: str, with_archive: bool) -> ClusterReport:
    from engine.repository.tiers import census

    view = tiers.view()
    report = cluster_report(tiers.repository, cluster, with_archive=False)
    if report.info is None:
        return report
    found = census(tiers, cluster)
    report.backups = [p.summary for p in sorted(found.backups, key=lambda p: p.id)]
    report.damaged = found.damaged
    report.placements = {p.id: p.to_json(tiers) for p in found.backups}
    if found.unreachable:
        report.status = f"error: {'; '.join(found.unreachable)}"
    if with_archive:
        report.archive = archive.archive_ranges(view, cluster, report.info.wal_segment_size)
    return report
