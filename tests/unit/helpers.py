"""Builders shared by unit tests."""

from __future__ import annotations

from engine.repository.manifest import BackupSummary


def summary(backup_id: str = "20261125-010000F", **changes: object) -> BackupSummary:
    values: dict[str, object] = dict(
        id=backup_id, cluster="main", type="full", started_at="2026-11-25T01:00:00.000Z",
        finished_at="2026-11-25T01:00:05.000Z", start_lsn="0/2000028", stop_lsn="0/2000100",
        timeline=1, start_wal="000000010000000000000002", stop_wal="000000010000000000000002",
        stopped_at="2026-11-25T01:00:04.000Z", stop_next_xid=1000, system_identifier=1,
        pg_version=150020, size_bytes=0, stored_bytes=0, file_count=0, block_count=0,
        block_size=65536, frame_size=524288, compression="zstd:3",
        backup_label="START WAL LOCATION: 0/2000028\n",
        tablespace_map="", tablespaces=[], packs=[],
    )
    values.update(changes)
    return BackupSummary(**values)  # type: ignore[arg-type]
