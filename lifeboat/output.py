"""Text renderings for the terminal."""

from __future__ import annotations

from engine.info import ClusterReport
from engine.units import format_size


def info_text(repository: str, reports: list[ClusterReport]) -> str:
    lines = [f"repository {repository}"]
    for report in reports:
        if report.info is None:
            lines.append(f"cluster {report.name}: {report.status}")
            continue
        version = f"{report.info.pg_version // 10000}.{report.info.pg_version % 10000}"
        lines.append(f"cluster {report.name}: PostgreSQL {version}, "
                     f"system {report.info.system_identifier}")
        if not report.archive:
            lines.append("  wal archive: empty")
        for rng in report.archive:
            lines.append(f"  wal archive timeline {rng.timeline}: {rng.first} .. {rng.last} "
                         f"({rng.count} segments)")
        if not report.backups and not report.damaged:
            lines.append("  backups: none")
        for b in report.backups:
            lines.append(f"  backup {b.id} {b.type}: {b.started_at} .. {b.finished_at}, "
                         f"LSN {b.start_lsn} .. {b.stop_lsn} (timeline {b.timeline}), "
                         f"{format_size(b.size_bytes)}, {format_size(b.stored_bytes)} stored")
        for backup_id, error in report.damaged:
            lines.append(f"  backup {backup_id}: DAMAGED: {error}")
    return "\n".join(lines)
