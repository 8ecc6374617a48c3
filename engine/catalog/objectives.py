"""Recovery objectives: the RPO exposure and the expected RTO of a cluster, now.

RPO exposure is the age of the oldest committed work that is not yet safe in the
repository. The agent samples the server's WAL insert position over time; the
repository's safe end is the end of the newest archived segment on the server's
timeline, or further when a streaming receiver has flushed further. If every sampled
position up to time t is at or before the safe end, nothing written by t can be lost,
so the exposure is ``now - t`` for the latest such t (0 when the server has written
nothing beyond it). It is exact to the sampling interval.

Expected RTO is what a restore to the latest point would take now: the newest backup's
size at the measured restore rate (from restore jobs and drills, newest first), plus the
WAL written since that backup started at the measured replay rate, plus the measured
start-up overhead. Until something was measured, assumed rates are used and said so.
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from engine.catalog.store import SUCCEEDED, Catalog, ObjectivesRecord
from engine.config.schema import Config
from engine.repository.storage.base import Storage

ASSUMED_RESTORE_RATE = 100 * 1024 * 1024  # bytes/s, until a restore was measured
ASSUMED_REPLAY_RATE = 64 * 1024 * 1024  # bytes/s of WAL, until a drill measured it
ASSUMED_STARTUP = 10.0  # seconds to start the restored server and end recovery
REPLAY_SAMPLE_BYTES = 64 * 1024 * 1024  # a drill that replayed less measures start-up only


class PositionHistory:
    """(time, WAL insert position) samples of one server, oldest first."""

    def __init__(self, keep_seconds: float = 7 * 86400, max_samples: int = 100_000) -> None:
        self.samples: deque[tuple[float, int]] = deque(maxlen=max_samples)
        self.keep = keep_seconds

    def add(self, at: float, lsn: int) -> None:
        self.samples.append((at, lsn))
        while self.samples and self.samples[0][0] < at - self.keep:
            self.samples.popleft()

    def exposure(self, now: float, safe_lsn: int) -> float | None:
        """Seconds of written work at risk; None without a sample."""
        if not self.samples:
            return None
        if self.samples[-1][1] <= safe_lsn:
            return 0.0
        covered = None
        for at, lsn in self.samples:
            if lsn > safe_lsn:
                break
            covered = at
        if covered is None:  # nothing sampled is safe yet: at least as old as the first sample
            return now - self.samples[0][0]
        return now - covered


@dataclass(frozen=True)
class Rates:
    restore_bytes_per_second: float
    replay_bytes_per_second: float
    startup_seconds: float
    basis: str


def measured_rates(catalog: Catalog, cluster: str) -> Rates:
    """Restore and replay speeds from the newest restore jobs and drills of the cluster."""
    restore: list[float] = []
    replay: list[float] = []
    startup: list[float] = []
    for job in catalog.jobs(cluster=cluster, states=(SUCCEEDED,), limit=200):
        if job.kind == "restore" and job.result and job.result.get("seconds"):
            restore.append(job.result["bytes"] / max(job.result["seconds"], 1e-3))
    for drill in catalog.drills(cluster, limit=20):
        timing = drill.result.get("timing") or {}
        if timing.get("restore_bytes") and timing.get("restore_seconds"):
            restore.append(timing["restore_bytes"] / max(timing["restore_seconds"], 1e-3))
        if timing.get("replay_seconds") is not None:
            if timing.get("wal_bytes", 0) >= REPLAY_SAMPLE_BYTES:
                replay.append(timing["wal_bytes"] / max(timing["replay_seconds"], 1e-3))
            else:  # too little WAL to time replay: the time is the server's start-up
                startup.append(timing["replay_seconds"])
    parts = []
    if restore:
        parts.append(f"restore rate measured by {len(restore[:5])} restore(s)")
    else:
        parts.append("restore rate assumed (nothing restored yet)")
    parts.append("replay rate measured" if replay else "replay rate assumed")
    if startup:
        parts.append("start-up measured by drills")
    return Rates(statistics.median(restore[:5]) if restore else ASSUMED_RESTORE_RATE,
                 statistics.median(replay[:5]) if replay else ASSUMED_REPLAY_RATE,
                 statistics.median(startup[:5]) if startup else ASSUMED_STARTUP,
                 "; ".join(parts))


def expected_rto(backup_bytes: int, wal_bytes: int, rates: Rates) -> float:
    return (backup_bytes / rates.restore_bytes_per_second
            + wal_bytes / rates.replay_bytes_per_second + rates.startup_seconds)


@dataclass
class ServerPosition:
    lsn: int
    timeline: int
    streamed_flush_lsn: int | None


def server_position(config: Config, cluster: str) -> ServerPosition | None:
    """The server's WAL insert position and timeline; None when it cannot be reached."""
    from engine.postgres import connection as postgres

    settings = config.clusters[cluster]
    try:
        with postgres.connect(postgres.endpoint_of(settings), cluster,
                              timeout=3.0) as conn:
            lsn, timeline = postgres.row(
                conn, "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn, timeline_id "
                "FROM pg_control_checkpoint()")
            flushed = None
            if settings.streaming.enabled:
                flushed = postgres.value(
                    conn, "SELECT max(flush_lsn - '0/0'::pg_lsn) FROM pg_stat_replication "
                    "WHERE application_name = %s", (settings.streaming.application_name,))
            return ServerPosition(int(lsn), int(timeline), None if flushed is None else int(flushed))
    except Exception:
        return None


def archive_safe_end(storage: Storage, cluster: str, timeline: int) -> int | None:
    """End LSN of the newest archived segment on ``timeline`` (None: nothing archived)."""
    from engine.repository import clusterinfo
    from engine.wal import archive

    segment_size = clusterinfo.read(storage, cluster).wal_segment_size
    segnos = archive.segments_by_timeline(storage, cluster, segment_size).get(timeline)
    if not segnos:
        return None
    return (segnos[-1] + 1) * segment_size


class ObjectivesMonitor:
    """Measures and records each cluster's objectives; one per agent."""

    def __init__(self, config: Config, catalog: Catalog, storage: Storage) -> None:
        self.config, self.catalog, self.storage = config, catalog, storage
        self.history: dict[str, PositionHistory] = {c: PositionHistory() for c in config.clusters}

    def measure(self, cluster: str, now: float | None = None) -> ObjectivesRecord:
        now = time.time() if now is None else now
        settings = self.config.clusters[cluster]
        details: dict[str, Any] = {"class": settings.recovery_class}
        position = server_position(self.config, cluster)
        exposure = None
        history = self.history[cluster]
        if position is None:
            details["server"] = "unreachable"
            last_safe = self._last_safe_time(cluster)
            exposure = None if last_safe is None else now - last_safe
        else:
            history.add(now, position.lsn)
            safe = archive_safe_end(self.storage, cluster, position.timeline) or 0
            details["archived_end_lsn"] = _lsn(safe)
            if position.streamed_flush_lsn is not None:
                details["streamed_flush_lsn"] = _lsn(position.streamed_flush_lsn)
                safe = max(safe, position.streamed_flush_lsn)
            details["server_lsn"] = _lsn(position.lsn)
            details["unsafe_bytes"] = max(0, position.lsn - safe)
            exposure = history.exposure(now, safe)
        rto = None
        backups = _newest_backup(self.storage, cluster)
        if backups is not None:
            size, start_lsn = backups
            rates = measured_rates(self.catalog, cluster)
            wal_bytes = max(0, (position.lsn if position else start_lsn) - start_lsn)
            rto = expected_rto(size, wal_bytes, rates)
            details.update(backup_bytes=size, wal_to_replay_bytes=wal_bytes,
                           restore_bytes_per_second=round(rates.restore_bytes_per_second),
                           replay_bytes_per_second=round(rates.replay_bytes_per_second),
                           rto_basis=rates.basis)
        else:
            details["rto_basis"] = "no backup: nothing to restore from"
        record = ObjectivesRecord(now, cluster, exposure, settings.rpo_objective, rto,
                                  settings.rto_objective, details)
        self.catalog.record_objectives(record)
        return record

    def _last_safe_time(self, cluster: str) -> float | None:
        record = self.catalog.latest_objectives(cluster)
        if record is None or record.rpo_exposure is None:
            return None
        return record.at - record.rpo_exposure


def _newest_backup(storage: Storage, cluster: str) -> tuple[int, int] | None:
    from engine.repository.manifest import list_backup_ids, read_summary
    from engine.wal.names import parse_lsn

    ids = list_backup_ids(storage, cluster)
    if not ids:
        return None
    summary = read_summary(storage, cluster, ids[-1])
    return summary.size_bytes, parse_lsn(summary.start_lsn)


def _lsn(value: int) -> str:
    from engine.wal.names import format_lsn

    return format_lsn(value)


def recorded(config: Config, clusters: list[str]) -> dict[str, dict[str, Any]]:
    """Each cluster's class, objectives and the agent's latest measurement (for ``info``)."""
    from engine.errors import CatalogError

    found: dict[str, dict[str, Any]] = {}
    latest: dict[str, ObjectivesRecord | None] = dict.fromkeys(clusters)
    note = None
    if config.catalog.dsn is None and not config.catalog.path.exists():
        note = "not measured: no catalog yet (the agent measures objectives)"
    else:
        try:
            with Catalog.open(config) as catalog:
                latest = {c: catalog.latest_objectives(c) for c in clusters}
        except CatalogError as exc:
            note = f"not measured: {exc}"
    for cluster in clusters:
        settings = config.clusters[cluster]
        record = latest[cluster]
        if record is None:
            found[cluster] = {"class": settings.recovery_class,
                              "rpo_objective_seconds": settings.rpo_objective,
                              "rto_objective_seconds": settings.rto_objective,
                              "measured_at": None, "rpo_exposure_seconds": None,
                              "rto_expected_seconds": None, "rpo_met": None, "rto_met": None,
                              "note": note or "not measured yet: the agent has not run"}
        else:
            found[cluster] = {"class": settings.recovery_class} | record.to_json()
    return found
