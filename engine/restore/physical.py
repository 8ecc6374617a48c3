"""Restore orchestration: choose the backup, write it, set up recovery, optionally start
the server and check that recovery reached what was asked."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from engine import durable
from engine.config.schema import Config
from engine.directories import check_writable
from engine.errors import NotFoundError, RecoveryShortfallError, RestoreError, path_error
from engine.postgres import server
from engine.postgres.commands import restore_command
from engine.repository import clusterinfo
from engine.repository.manifest import BackupSummary, Manifest, list_backup_ids, read_manifest, read_summary
from engine.repository.storage import Storage
from engine.restore import points as restore_points
from engine.restore.files import FileWriter, prepare_directory, tablespace_locations
from engine.restore.recovery import RecoveryTarget, choose_backup, settings_for, write_settings
from engine.wal import archive, timelines
from engine.wal.names import parse_lsn, parse_segment, segment_name, segment_of_lsn


@dataclass
class RestoreOptions:
    pgdata: Path
    target: RecoveryTarget = field(default_factory=RecoveryTarget)
    backup_id: str | None = None
    force: bool = False
    delta: bool = False
    checksum: bool = False  # with delta: hash every file, trusting no restore's record
    tablespace_map: dict[int, Path] = field(default_factory=dict)
    archive_mode: str = "preserve"  # or "off"
    port: int | None = None
    standby: bool = False
    start: bool = False
    jobs: int | None = None
    timeout: float | None = None
    region: str | None = None  # the storage given is the copy in this region: WAL comes from it too


@dataclass
class RestoreResult:
    backup: BackupSummary
    pgdata: Path
    target: RecoveryTarget
    files: int
    bytes: int
    written_bytes: int
    removed: int
    unread_bytes: int = 0  # delta: in files unchanged since the last restore wrote them
    log_file: Path | None = None
    reached: server.ReachedPoint | None = None
    archive_end: str | None = None
    seconds: float = 0.0  # from the start of the restore to its end (recovery included)
    target_lsn: int | None = None  # the LSN an LSN or restore-point target names, when known

    def target_gap_seconds(self) -> float | None:
        """For a time target: the requested time minus the last transaction recovered
        (positive: recovery stopped before the time asked). None when either is unknown."""
        if self.target.kind != "time" or self.reached is None or not self.reached.time:
            return None
        try:
            asked, reached = (_timestamp(self.target.value or ""), _timestamp(self.reached.time))
        except ValueError:
            return None
        return round(asked - reached, 3)

    def target_gap_bytes(self) -> int | None:
        """For an LSN or restore-point target: the target's LSN minus the LSN replay reached
        (positive: recovery stopped before it). None when either is unknown."""
        if self.target_lsn is None or self.reached is None or not self.reached.lsn:
            return None
        return self.target_lsn - parse_lsn(self.reached.lsn)

    def to_json(self) -> dict[str, object]:
        """What a restore job records (and the restore-time metrics read)."""
        out: dict[str, object] = {
            "backup": self.backup.id, "backup_bytes": self.backup.size_bytes,
            "pgdata": str(self.pgdata), "bytes": self.bytes, "files": self.files,
            "target": self.target.kind, "target_value": self.target.value, "seconds": self.seconds}
        if self.reached is not None:
            out["reached"] = {"lsn": self.reached.lsn, "time": self.reached.time,
                              "timeline": self.reached.timeline, "state": self.reached.state,
                              "stop_message": self.reached.stop_message}
            out["target_gap_seconds"] = self.target_gap_seconds()
            out["target_gap_bytes"] = self.target_gap_bytes()
        return out


def start_log(config: Config, cluster: str) -> Path:
    """Where a restored server started by ``--start`` logs: Lifeboat's own state directory,
    never a path inside the data directory, which holds the user's files (a data directory
    can well hold a file named ``log``)."""
    from datetime import UTC, datetime

    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return config.agent.state_dir / "restores" / f"{cluster}-{stamp}-{time.monotonic_ns() % 10**6}.log"


def _timestamp(text: str) -> float:
    from datetime import UTC, datetime

    moment = datetime.fromisoformat(text.strip())
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def list_backups(storage: Storage, cluster: str) -> list[BackupSummary]:
    return [read_summary(storage, cluster, i) for i in list_backup_ids(storage, cluster)]


def choose(storage: Storage, cluster: str, options: RestoreOptions) -> BackupSummary:
    """The backup a restore with ``options`` would use (runs nothing)."""
    return _choose(storage, cluster, options, target_lsn(storage, cluster, options.target))


def _choose(storage: Storage, cluster: str, options: RestoreOptions,
            named_lsn: int | None) -> BackupSummary:
    if options.backup_id:
        try:
            return read_summary(storage, cluster, options.backup_id)
        except NotFoundError:
            raise RestoreError(f"backup '{options.backup_id}' of cluster '{cluster}' does not "
                               "exist ('lifeboat info' lists the backups)") from None
    return choose_backup(list_backups(storage, cluster), options.target, named_lsn)


def target_lsn(storage: Storage, cluster: str, target: RecoveryTarget) -> int | None:
    """The LSN a target names: an LSN target's own, or the LSN of a restore point that
    ``lifeboat restore-point`` recorded; None for other targets."""
    if target.kind == "lsn" and target.value:
        return parse_lsn(str(target.value))
    if target.kind == "name":
        return restore_points.lookup_lsn(storage, cluster, str(target.value))
    return None


#: The phases a restore reports (``phase(name)``), in order; the last two only with ``start``.
PHASE_FILES, PHASE_START, PHASE_REPLAY = "writing files", "starting the server", "replaying WAL"


def run(config: Config, cluster: str, storage: Storage, config_path: Path,
        options: RestoreOptions, progress: Callable[[int, int], None] | None = None,
        phase: Callable[[str], None] | None = None,
        prepare: Callable[[BackupSummary, Manifest], None] | None = None) -> RestoreResult:
    """Restore as ``options`` say; the result says what was restored, how long it took and,
    when the server was started, the point recovery reached. ``progress(done, total)`` hears
    of the bytes written, ``phase(name)`` of each phase (:data:`PHASE_FILES` ...).
    ``prepare(backup, manifest)`` runs once the backup is chosen, before anything is written
    (a restore from an archive class waits there for its objects to be readable)."""
    started = time.monotonic()
    try:
        result = _run(config, cluster, storage, config_path, options, progress,
                      phase or (lambda _name: None), prepare)
    except OSError as exc:  # a destination that cannot be written: named, with what to do
        raise path_error(exc, "restore into", exc.filename or options.pgdata) from None
    result.seconds = round(time.monotonic() - started, 3)
    return result


def _run(config: Config, cluster: str, storage: Storage, config_path: Path,
         options: RestoreOptions, progress: Callable[[int, int], None] | None,
         phase: Callable[[str], None],
         prepare: Callable[[BackupSummary, Manifest], None] | None = None) -> RestoreResult:
    named_lsn = target_lsn(storage, cluster, options.target)
    backup = _choose(storage, cluster, options, named_lsn)
    manifest = read_manifest(storage, cluster, backup.id)
    if prepare is not None:
        prepare(backup, manifest)
    locations = tablespace_locations(backup, options.tablespace_map)
    pgdata = options.pgdata
    log_file = start_log(config, cluster) if options.start else None
    if log_file is not None:
        check_writable(log_file.parent, "the restored server's start-up log")
    prepare_directory(pgdata, options.force, options.delta)
    phase(PHASE_FILES)
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, backup.size_bytes)

    # Direct writes keep a thread waiting on the device about half the time: two threads
    # per configured job keep the cores busy meanwhile.
    writer = FileWriter(storage, cluster, backup, pgdata, options.jobs or 2 * config.jobs,
                        advance, delta=options.delta, checksum=options.checksum)
    written = writer.write(manifest, locations)
    durable.write_atomic(pgdata / "backup_label", backup.backup_label.encode(), 0o600)
    if backup.tablespaces:
        lines = [f"{oid} {path}" for oid, path in sorted(locations.items())]
        durable.write_atomic(pgdata / "tablespace_map", ("\n".join(lines) + "\n").encode(), 0o600)
    settings = settings_for(options.target, restore_command(config_path, cluster, options.region))
    if options.standby:
        for name in [n for n in settings if n.startswith("recovery_target") and
                     n != "recovery_target_timeline"]:
            del settings[name]
    if options.archive_mode == "off":
        settings["archive_mode"] = "'off'"
    if options.port is not None:
        settings["port"] = str(options.port)
    write_settings(pgdata, settings, backup.id,
                   "standby.signal" if options.standby else "recovery.signal")
    result = RestoreResult(backup, pgdata, options.target, written.files, written.bytes,
                           written.written_bytes, written.removed, written.unread_bytes,
                           target_lsn=named_lsn)
    if not options.start:
        return result
    streaming = config.clusters[cluster].streaming.enabled and options.region is None
    end = expected_end(storage, cluster, backup, options.target,
                       str(config.streaming_directory(cluster)) if streaming else None)
    result.archive_end = end
    info = clusterinfo.read(storage, cluster)
    bin_dir = server.bin_dir_for(backup.pg_version, config.clusters[cluster].bin_dir)
    assert log_file is not None
    result.log_file = log_file
    phase(PHASE_START)
    server.start(pgdata, bin_dir, log_file, options.port)
    if options.standby:
        return result
    phase(PHASE_REPLAY)
    reached = server.wait_for_recovery(pgdata, result.log_file, options.target.action,
                                       options.timeout)
    result.reached = reached
    if options.target.kind == "latest" and end is not None and reached.lsn is not None:
        reached_segno = segment_of_lsn(parse_lsn(reached.lsn), info.wal_segment_size)
        if reached_segno < parse_segment(end, info.wal_segment_size).segno:
            raise RecoveryShortfallError(
                f"recovery stopped at {reached.lsn}, but the archive holds WAL up to {end}: "
                "transactions after that point were not recovered (server log: "
                f"{result.log_file})")
    return result


def expected_end(storage: Storage, cluster: str, backup: BackupSummary,
                 target: RecoveryTarget, stream_dir: str | None = None) -> str | None:
    """The last archived segment that recovery to ``target`` should replay (for 'latest').

    Complete segments streamed into ``stream_dir`` but not archived yet count; a
    ``.partial`` does not (how far its valid WAL goes is known only by replaying it).
    """
    if target.kind != "latest":
        return None
    size = clusterinfo.read(storage, cluster).wal_segment_size
    spans = timelines.recovery_path(storage, cluster, backup.timeline, parse_lsn(backup.start_lsn),
                                    parse_lsn(backup.stop_lsn), size, target.timeline)
    archived = archive.segments_by_timeline(storage, cluster, size)
    if stream_dir is not None:
        for tl, segnos in archive.streamed_segments(stream_dir, size).items():
            archived[tl] = sorted(set(archived.get(tl, [])) | set(segnos))
    held = {(tl, segno) for tl, segnos in archived.items() for segno in segnos}
    present = [item for item in timelines.required_segments(spans, archived) if item in held]
    return segment_name(*present[-1], size) if present else None
