"""Every metric Lifeboat exports, defined once.

The exporter renders these definitions and the Grafana dashboard is generated from them,
so a name or a unit changes in one place. Alert thresholds are not here: they are the
alert rules of the configuration (``[alerts.rules]``, :mod:`engine.config.alerting`), which
the rules file and the dashboard's thresholds both read. Names follow Prometheus
conventions: the ``lifeboat_`` prefix, base units (seconds, bytes, ratios 0-1), counters end
in ``_total``, events are exported as timestamps (queries compute ages), and identifiers
such as backup ids live only on ``_info`` series.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from engine.catalog.store import FINAL_STATES

Kind = Literal["gauge", "counter", "histogram"]
#: Rows of the dashboard, in order.
GROUPS = ("backups", "wal", "replication", "objectives", "drills", "tiers", "alerts", "host", "exporter")

JOB_RESULTS = FINAL_STATES
RECOVERY_TYPES = ("full", "pitr", "drill_full", "drill_partial")
#: Data size classes of a recovery, by the restored backup's size: (label, upper bound).
SIZE_CLASSES = (("small", 10 * 2**30), ("medium", 100 * 2**30), ("large", 2**40),
                ("xlarge", float("inf")))
#: The seed's recovery_time buckets (30s, 1m, 5m, 15m, 30m, 1h) with a boundary at every
#: recovery class's RTO objective (1h, 4h, 24h), so "within objective" is a bucket.
#: (The seed's recovery SLA, 15m, is the default threshold of the recovery_delays rule.)
RECOVERY_BUCKETS = (30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 4 * 3600.0, 86400.0)
#: The states of an open alert whose condition holds (pending ones do not fire yet).
FIRING_STATES = ("firing", "acknowledged", "silenced")
#: What sending a notice to a channel came to (alerts.channels.base.Outcome), and what an
#: auto-remediation action came to (alerts.remediation.runner): their counters start at 0.
NOTIFICATION_OUTCOMES = ("ok", "retryable", "failed", "skipped")
REMEDIATION_RESULTS = ("ok", "failed", "timeout", "skipped")


@dataclass(frozen=True)
class Metric:
    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...]
    unit: str  # Grafana's unit id: s, bytes, percentunit, dateTimeAsIso, short, Bps, none
    group: str
    buckets: tuple[float, ...] = ()


def _m(name: str, kind: Kind, unit: str, group: str, labels: tuple[str, ...], help: str,
       **extra: object) -> Metric:
    return Metric(name, kind, help, labels, unit, group, **extra)  # type: ignore[arg-type]


C = ("cluster",)
CT = ("cluster", "type")
CK = ("cluster", "kind")
CC = ("cluster", "class")
CR = ("cluster", "region")
REPLICA = ("cluster", "replica", "datacenter")

METRICS: tuple[Metric, ...] = (
    # backups ------------------------------------------------------------------------------
    _m("lifeboat_up", "gauge", "none", "backups", C,
       "1 when the cluster's PostgreSQL server answered the exporter's last refresh, else 0."),
    _m("lifeboat_backups_total", "counter", "short", "backups", (*CT, "result"),
       "Backups attempted, by type and result (from the catalog: agent jobs and CLI runs)."),
    _m("lifeboat_backup_success_ratio", "gauge", "percentunit", "backups", CT,
       "Share of backups that succeeded over the configured window (NaN: none attempted)."),
    _m("lifeboat_backup_last_success_timestamp_seconds", "gauge", "dateTimeAsIso", "backups", CT,
       "When the newest backup of this type in the repository finished (0: none)."),
    _m("lifeboat_backup_last_failure_timestamp_seconds", "gauge", "dateTimeAsIso", "backups", CT,
       "When the newest failed backup of this type ended (0: none in the catalog)."),
    _m("lifeboat_backup_last_duration_seconds", "gauge", "s", "backups", CT,
       "How long the newest backup of this type in the repository took."),
    _m("lifeboat_backup_last_size_bytes", "gauge", "bytes", "backups", CT,
       "Size of the cluster's files in the newest backup of this type."),
    _m("lifeboat_backup_info", "gauge", "none", "backups", (*CT, "backup_id", "timeline"),
       "The newest backup of each type, with its id (always 1)."),
    _m("lifeboat_schedule_attempts_total", "counter", "short", "backups",
       ("cluster", "schedule", "result"),
       "Jobs started by each schedule, by result (queued, running, succeeded, failed, ...)."),
    _m("lifeboat_jobs_running", "gauge", "short", "backups", CK,
       "Jobs running now, by kind."),
    _m("lifeboat_job_progress_bytes", "gauge", "bytes", "backups", CK,
       "Bytes done by running backup and restore jobs."),
    _m("lifeboat_job_size_bytes", "gauge", "bytes", "backups", CK,
       "Bytes to do in all by running backup and restore jobs."),
    # WAL archive --------------------------------------------------------------------------
    _m("lifeboat_wal_archive_lag_segments", "gauge", "short", "wal", C,
       "Completed WAL segments the server wrote that the repository does not hold yet."),
    _m("lifeboat_wal_archive_lag_seconds", "gauge", "s", "wal", C,
       "Age of the oldest completed WAL segment still waiting to be archived (0: none)."),
    _m("lifeboat_wal_unsafe_bytes", "gauge", "bytes", "wal", C,
       "WAL the server wrote beyond the end of what the repository holds (or the receiver "
       "flushed), from the agent's newest objectives measurement."),
    _m("lifeboat_wal_archive_failures_total", "counter", "short", "wal", C,
       "Failed archive_command runs (pg_stat_archiver.failed_count)."),
    _m("lifeboat_wal_archived_total", "counter", "short", "wal", C,
       "WAL files archived (pg_stat_archiver.archived_count)."),
    _m("lifeboat_wal_last_archived_timestamp_seconds", "gauge", "dateTimeAsIso", "wal", C,
       "When archive_command last succeeded (0: never)."),
    _m("lifeboat_wal_ready_files", "gauge", "short", "wal", C,
       "Files in pg_wal/archive_status waiting for archive_command (.ready)."),
    _m("lifeboat_wal_directory_bytes", "gauge", "bytes", "wal", C,
       "Size of pg_wal."),
    _m("lifeboat_recovery_window_start_timestamp_seconds", "gauge", "dateTimeAsIso", "wal", C,
       "The earliest point a restore can reach: when the oldest backup finished (0: none)."),
    # replication --------------------------------------------------------------------------
    _m("lifeboat_replication_lag_seconds", "gauge", "s", "replication", REPLICA,
       "How far each replica or WAL receiver is behind the primary, in time."),
    _m("lifeboat_replication_lag_bytes", "gauge", "bytes", "replication", REPLICA,
       "How far each replica or WAL receiver is behind the primary, in WAL bytes."),
    _m("lifeboat_replica_info", "gauge", "none", "replication",
       (*REPLICA, "state", "sync_state"),
       "Each connected replica or WAL receiver (always 1)."),
    _m("lifeboat_streaming_receiver_up", "gauge", "none", "replication", C,
       "1 when the agent's streaming WAL receiver of a cluster with [streaming] enabled is "
       "connected and streaming, 0 when the server answers without it (absent otherwise)."),
    # recovery objectives ------------------------------------------------------------------
    _m("lifeboat_rpo_exposure_seconds", "gauge", "s", "objectives", CC,
       "Age of the oldest written work not yet safe in the repository (measured RPO)."),
    _m("lifeboat_rpo_objective_seconds", "gauge", "s", "objectives", CC,
       "The cluster's RPO objective."),
    _m("lifeboat_rto_expected_seconds", "gauge", "s", "objectives", CC,
       "How long a restore to the latest point would take now (expected RTO)."),
    _m("lifeboat_rto_objective_seconds", "gauge", "s", "objectives", CC,
       "The cluster's RTO objective."),
    _m("lifeboat_recovery_duration_seconds", "histogram", "s", "objectives",
       ("cluster", "type", "size_class", "class"),
       "Time restores and drills took to give back a usable cluster.",
       buckets=RECOVERY_BUCKETS),
    _m("lifeboat_restore_target_gap_seconds", "gauge", "s", "objectives", C,
       "The newest restore to a time target: the time asked minus the last commit replayed."),
    _m("lifeboat_restore_target_gap_bytes", "gauge", "bytes", "objectives", C,
       "The newest restore to an LSN or restore-point target: its LSN minus the LSN reached."),
    _m("lifeboat_data_loss_events_total", "counter", "short", "objectives",
       ("cluster", "cause", "severity", "service"),
       "Events where data was or would have been lost, by cause."),
    # drills -------------------------------------------------------------------------------
    _m("lifeboat_drill_last_success_timestamp_seconds", "gauge", "dateTimeAsIso", "drills", CK,
       "When the newest passed drill of this kind finished (0: never)."),
    _m("lifeboat_drill_last_passed", "gauge", "none", "drills", CK,
       "1 when the newest drill of this kind passed, 0 when it failed."),
    _m("lifeboat_drill_last_duration_seconds", "gauge", "s", "drills", CK,
       "How long the newest drill of this kind took."),
    _m("lifeboat_drill_last_failed_checks", "gauge", "short", "drills", CK,
       "Checks the newest drill of this kind failed."),
    _m("lifeboat_drills_total", "counter", "short", "drills", (*CK, "result"),
       "Drills run, by kind and result (passed, failed)."),
    _m("lifeboat_drill_period_seconds", "gauge", "s", "drills", CK,
       "Longest gap between two scheduled drills of this kind (0: not scheduled)."),
    # repository tiers ---------------------------------------------------------------------
    _m("lifeboat_repository_bytes", "gauge", "bytes", "tiers", ("cluster", "tier", "region"),
       "Bytes the cluster's blocks, manifests and WAL take in each tier (all its storages: "
       "replicas count) and in each region's copy of the repository."),
    _m("lifeboat_tier_backups", "gauge", "short", "tiers", ("cluster", "tier"),
       "Backups in each tier (a backup being moved counts in the hotter tier)."),
    _m("lifeboat_backup_copies", "gauge", "short", "tiers", ("cluster", "tier"),
       "The fewest independent copies any backup of the tier has (its storages holding it)."),
    _m("lifeboat_backups_below_replication", "gauge", "short", "tiers", ("cluster", "tier"),
       "Backups of the tier held by fewer of its storages than its replication count (the "
       "agent's tiering job repairs them)."),
    _m("lifeboat_copy_lag_seconds", "gauge", "s", "tiers", ("cluster", "region"),
       "How far each region's copy of the repository is behind: the age of the oldest backup "
       "or WAL file the copy lacks (0: in sync)."),
    _m("lifeboat_copy_validation_ok", "gauge", "none", "tiers", CR,
       "1 when the newest validation of the region's copy passed (manifests as the primary's, every "
       "pack, list and WAL file present, a sample re-hashed), 0 when it failed; NaN: never validated."),
    _m("lifeboat_copy_validation_last_timestamp_seconds", "gauge", "dateTimeAsIso", "tiers", CR,
       "When the region's copy was last validated (0: never)."),
    _m("lifeboat_copy_validation_problems", "gauge", "short", "tiers", CR,
       "Problems the newest validation of the region's copy found (missing, differing or damaged "
       "objects)."),
    _m("lifeboat_copy_bytes_total", "counter", "bytes", "tiers", CR,
       "Bytes the agent wrote into the region's copy (backups and WAL shipping)."),
    _m("lifeboat_copy_throughput_bytes_per_second", "gauge", "Bps", "tiers", CR,
       "The rate the newest copy round of at least 1 MiB achieved into the region's copy (waiting "
       "for the bandwidth limit included)."),
    _m("lifeboat_copy_bandwidth_limit_bytes_per_second", "gauge", "Bps", "tiers", CR,
       "The region's bandwidth_limit for copies and WAL shipping (0: unlimited)."),
    _m("lifeboat_wal_shipping_delay_seconds", "gauge", "s", "tiers", CR,
       "Age of the oldest archived WAL file the region's copy lacks, measured by the agent before "
       "each shipping round (NaN: not measured lately)."),
    _m("lifeboat_wal_shipping_max_delay_seconds", "gauge", "s", "tiers", CR,
       "The region's max_delay: how old archived WAL the copy lacks may get."),
    _m("lifeboat_repository_backups", "gauge", "short", "tiers", CT,
       "Backups of each type in the repository."),
    _m("lifeboat_compression_ratio", "gauge", "none", "tiers", C,
       "Bytes read over bytes stored for the new data of the newest backup."),
    # alerts (from the catalog: the agent's lifecycle, notifications and remediation) ------
    _m("lifeboat_alerts_firing", "gauge", "short", "alerts", ("cluster", "rule", "severity", "state"),
       "Open alerts whose condition holds, by rule and state (firing, acknowledged, silenced); "
       "cluster is empty for an alert about no one cluster."),
    _m("lifeboat_alert_notifications_total", "counter", "short", "alerts", ("channel", "outcome"),
       "Alert notices sent to each channel, by outcome (ok; retryable; failed after the retries; "
       "skipped)."),
    _m("lifeboat_remediation_attempts_total", "counter", "short", "alerts", ("action", "result"),
       "Auto-remediation actions run, by action and result (ok, failed, timeout, skipped)."),
    # host, while jobs run -----------------------------------------------------------------
    _m("lifeboat_host_load1", "gauge", "short", "host", (),
       "The host's 1-minute load average."),
    _m("lifeboat_host_io_utilization_ratio", "gauge", "percentunit", "host", ("device",),
       "Share of time each block device was busy since the previous refresh."),
    _m("lifeboat_host_network_bytes_per_second", "gauge", "Bps", "host", ("direction",),
       "Bytes per second through the host's network interfaces (not loopback)."),
    # the exporter itself ------------------------------------------------------------------
    _m("lifeboat_exporter_last_refresh_timestamp_seconds", "gauge", "dateTimeAsIso", "exporter", (),
       "When the exporter last refreshed its cached state."),
    _m("lifeboat_exporter_refresh_duration_seconds", "gauge", "s", "exporter", (),
       "How long the last refresh took."),
    _m("lifeboat_exporter_refresh_errors_total", "counter", "short", "exporter", ("part",),
       "Refreshes of a part (catalog, repository, postgres, host) that failed."),
    _m("lifeboat_catalog_up", "gauge", "none", "exporter", (),
       "1 when the catalog answered the last refresh."),
    _m("lifeboat_repository_up", "gauge", "none", "exporter", (),
       "1 when the repository answered the last refresh."),
    _m("lifeboat_build_info", "gauge", "none", "exporter", ("version",),
       "The running Lifeboat's version (always 1)."),
)

BY_NAME: dict[str, Metric] = {m.name: m for m in METRICS}


def metric(name: str) -> Metric:
    return BY_NAME[name]


def size_class(size_bytes: float) -> str:
    for label, bound in SIZE_CLASSES:
        if size_bytes < bound:
            return label
    return SIZE_CLASSES[-1][0]
