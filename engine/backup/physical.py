"""Physical backups: pg_backup_start, a direct read of PGDATA into packs, pg_backup_stop,
the WAL up to the stop point confirmed in the archive, and only then the manifest.

A backup that fails or is killed before its manifest is written does not exist.
Types, as pgBackRest users expect: ``full`` stores every block anew; ``diff`` stores
only the blocks the newest full backup does not hold, ``incr`` only those the newest
backup of any type does not hold. Every backup lists all of its blocks, so each one
restores on its own: there is no chain to replay.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from engine.backup.blockcopy import MTIME_MARGIN, BaseFiles, BlockCopier, PackSet
from engine.config.schema import Config
from engine.errors import BackupError, PostgresError, path_error
from engine.postgres import connection as postgres
from engine.postgres import pgdata
from engine.postgres.cluster_setup import settings_problems, wait_for_segments
from engine.repository import clusterinfo, expire, layout
from engine.repository.codec import Codec
from engine.repository.expire import ExpireReport
from engine.repository.locks import cluster_lock
from engine.repository.manifest import (
    BackupSummary,
    ManifestWriter,
    list_backup_ids,
    read_manifest,
    read_summary,
)
from engine.repository.storage import Storage
from engine.version import VERSION
from engine.vocabulary import BACKUP_TYPE_LETTER, BACKUP_TYPES
from engine.wal.names import format_lsn, segment_before_lsn, segment_name, segment_of_lsn


@dataclass
class Progress:
    """What a long backup reports while it runs (bytes read of the data directory)."""

    total_bytes: int = 0
    done_bytes: int = 0
    phase: str = "starting"


ProgressCallback = Callable[[Progress], None]


@dataclass
class BackupRequest:
    backup_type: str = "full"
    jobs: int | None = None
    checksum: bool = False  # read and hash every file, trusting no size or mtime
    expire: bool = True  # apply retention afterwards, when the configuration has rules
    notices: list[str] = field(default_factory=list)
    expired: ExpireReport | None = None


def new_backup_id(storage: Storage, cluster: str, backup_type: str) -> str:
    """``YYYYMMDD-HHMMSS`` (UTC) and a type letter; ids sort in the order backups were taken."""
    newest = max((i[:15] for i in list_backup_ids(storage, cluster)), default="")
    while True:
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        if stamp > newest:
            return stamp + BACKUP_TYPE_LETTER[backup_type]
        time.sleep(0.2)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def choose_base(storage: Storage, cluster: str, request: BackupRequest,
                block_size: int) -> BackupSummary | None:
    """The backup an incr (newest of any type) or diff (newest full) builds on; None makes
    it a full backup, with a notice saying why."""
    if request.backup_type == "full":
        return None
    summaries = [read_summary(storage, cluster, i) for i in list_backup_ids(storage, cluster)]
    if request.backup_type == "diff":
        summaries = [s for s in summaries if s.type == "full"]
    if not summaries:
        request.notices.append(f"no earlier {'full ' if request.backup_type == 'diff' else ''}"
                               f"backup to build a {request.backup_type} backup on: taking a full one")
        request.backup_type = "full"
        return None
    base = max(summaries, key=lambda s: (s.stopped_at, s.id))
    if base.block_size != block_size:
        request.notices.append(f"block_size changed since backup {base.id}: taking a full backup")
        request.backup_type = "full"
        return None
    return base


def run(config: Config, cluster: str, storage: Storage, config_path: Path,
        request: BackupRequest | None = None,
        progress: ProgressCallback | None = None) -> BackupSummary:
    """Take one backup of ``cluster``; returns its summary once it is durable and complete."""
    request = request or BackupRequest()
    if request.backup_type not in BACKUP_TYPES:
        raise BackupError(f"backup type '{request.backup_type}' is not one of {', '.join(BACKUP_TYPES)}")
    with cluster_lock(storage, cluster, f"backup --type {request.backup_type}",
                      request.notices) as storage:  # its writes check the lock is still held
        try:
            summary = _run_locked(config, cluster, storage, config_path, request, progress)
        except OSError as exc:  # a file of the data directory that cannot be read
            raise path_error(exc, "back up", exc.filename or config.clusters[cluster].pgdata) from None
        retention = config.retention_for(cluster)
        if request.expire and retention.expire_after_backup and retention.configured:
            request.expired = expire.run_locked(config, cluster, storage)
        return summary


def _run_locked(config: Config, cluster: str, storage: Storage, config_path: Path,
                request: BackupRequest, progress: ProgressCallback | None) -> BackupSummary:
    settings = config.clusters[cluster]
    info = clusterinfo.read(storage, cluster)
    state = Progress()

    def report(phase: str | None = None, done: int = 0) -> None:
        if phase:
            state.phase = phase
        state.done_bytes += done
        if progress is not None:
            progress(state)

    base_summary = choose_base(storage, cluster, request, config.repository.block_size)
    with postgres.connect_cluster(settings, cluster) as conn:
        identity = postgres.identity(conn)
        _check_server(identity, info, settings.pgdata, cluster)
        problems = settings_problems(
            postgres.settings(conn, "wal_level", "archive_mode", "archive_command"),
            cluster, config, config_path)
        if problems:
            raise BackupError(f"cluster '{cluster}' is not archiving into Lifeboat:\n  - "
                              + "\n  - ".join(problems))
        tablespaces = postgres.tablespaces(conn)
        checksummed = postgres.settings(conn, "data_checksums").get("data_checksums") == "on"
        archiver_before = postgres.archiver_status(conn)
        backup_id = new_backup_id(storage, cluster, request.backup_type)
        started_at = datetime.now(UTC)
        report("checkpoint")
        start = postgres.backup_start(conn, f"lifeboat {backup_id}")
        packs = PackSet(storage, cluster, config.repository.pack_size)
        writer = ManifestWriter()
        try:
            base = None
            if base_summary is not None:
                base = BaseFiles(read_manifest(storage, cluster, base_summary.id),
                                 _epoch(base_summary.started_at) - MTIME_MARGIN,
                                 use_mtime=not request.checksum)
            entries = list(pgdata.walk(settings.pgdata, identity.version_num // 10000))
            state.total_bytes = sum(e.size for e in entries)
            report("copy")
            copier = BlockCopier(packs, Codec(config.compression.algorithm,
                                              config.compression.level),
                                 config.repository.block_size, config.repository.frame_size,
                                 request.jobs or config.jobs, base,
                                 start.lsn if checksummed else None,
                                 config.compression.time_budget)
            size_bytes = file_count = block_count = 0
            corrupt: dict[str, list[int]] = {}
            for entry in copier.copy(entries, lambda n: report(done=n)):
                writer.add(entry)
                if entry.corrupt_pages:
                    corrupt[entry.path] = entry.corrupt_pages
                if entry.kind == "file":
                    file_count += 1
                    size_bytes += entry.size
                    block_count += -(-entry.size // config.repository.block_size)
            pack_ids = packs.finish()
            report("stop")
            stop = postgres.backup_stop(conn)
            report("wal")
            needed = [
                segment_name(start.timeline, segno, info.wal_segment_size)
                for segno in range(segment_of_lsn(start.lsn, info.wal_segment_size),
                                   segment_before_lsn(stop.lsn, info.wal_segment_size) + 1)
            ]
            try:
                wait_for_segments(conn, storage, cluster, needed, settings.archive_timeout,
                                  archiver_before)
            except PostgresError as exc:
                raise BackupError(f"backup {backup_id} is incomplete and was not recorded: "
                                  f"{exc}") from None
        except BaseException:
            packs.discard()
            raise
    summary = BackupSummary(
        id=backup_id, cluster=cluster, type=request.backup_type,
        started_at=_iso(started_at), finished_at=_iso(datetime.now(UTC)),
        start_lsn=format_lsn(start.lsn), stop_lsn=format_lsn(stop.lsn),
        timeline=start.timeline, start_wal=needed[0], stop_wal=needed[-1],
        stopped_at=_iso(stop.stopped_at), stop_next_xid=stop.next_xid,
        system_identifier=identity.system_identifier, pg_version=identity.version_num,
        size_bytes=size_bytes, stored_bytes=packs.stored_bytes, file_count=file_count,
        block_count=block_count, block_size=config.repository.block_size,
        frame_size=config.repository.frame_size,
        compression=f"{config.compression.algorithm}:{config.compression.level}",
        backup_label=stop.backup_label, tablespace_map=stop.tablespace_map,
        tablespaces=[{"oid": t.oid, "name": t.name, "location": t.location} for t in tablespaces],
        packs=pack_ids, base=base_summary.id if base_summary else None,
        reused_bytes=copier.stats.reused_bytes, lists_written=packs.lists_written,
        list_bytes=packs.list_bytes, page_checksums=checksummed,
        corrupt_pages=sum(len(p) for p in corrupt.values()), corrupt_files=sorted(corrupt),
        ratios={kind: {"raw_bytes": raw, "stored_bytes": stored}
                for kind, (raw, stored) in sorted(copier.stats.kinds.items())},
        compression_changes=copier.stats.level_changes,
        lifeboat_version=VERSION,
    )
    report("manifest")
    if not storage.put_stream_if_absent(layout.manifest_key(cluster, backup_id),
                                        writer.finish(summary)):
        packs.discard()
        raise BackupError(f"backup {backup_id} already exists in the repository (another "
                          "backup ran at the same time); this one was not recorded")
    for problem in copier.stats.base_problems:
        request.notices.append(f"WARNING: base backup {base_summary.id if base_summary else ''}: "
                               f"{problem}; the file was stored anew (run verify)")
    for path, pages in sorted(corrupt.items()):
        shown = ", ".join(str(p) for p in pages[:10]) + (" ..." if len(pages) > 10 else "")
        request.notices.append(f"WARNING: {path}: {len(pages)} pages fail their PostgreSQL "
                               f"checksum (blocks {shown}); backup {backup_id} holds them as read")
    report("done")
    return summary


def _check_server(identity: postgres.Identity, info: clusterinfo.ClusterInfo, pgdata_path: Path,
                  cluster: str) -> None:
    if identity.system_identifier != info.system_identifier:
        raise BackupError(
            f"cluster '{cluster}': the server is database system {identity.system_identifier}, "
            f"but the repository holds system {info.system_identifier}")
    if Path(identity.data_directory).resolve() != Path(pgdata_path).resolve():
        raise BackupError(
            f"cluster '{cluster}': the server runs {identity.data_directory}, but the "
            f"configuration says pgdata = {pgdata_path}")
    if identity.in_recovery:
        raise BackupError(f"cluster '{cluster}': the server is a standby; backups are taken "
                          "from the primary")
