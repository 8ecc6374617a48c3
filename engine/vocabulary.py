"""The words Lifeboat's commands, jobs, configuration and metrics share: each defined once.

Every place that accepts or lists one of these (argparse choices, pydantic fields, metric
label values, the console's pickers) imports it from here, so a new backup type or tier is
added in one line. A ``Literal`` type and its values as a tuple go together.
"""

from __future__ import annotations

from typing import Literal, get_args

BackupType = Literal["full", "diff", "incr"]
BACKUP_TYPES: tuple[BackupType, ...] = get_args(BackupType)
#: The letter a backup id ends with (``20261203-101500F``), as pgBackRest users know it.
BACKUP_TYPE_LETTER: dict[str, str] = {"full": "F", "diff": "D", "incr": "I"}

TargetKind = Literal["latest", "immediate", "time", "xid", "lsn", "name"]
TARGET_KINDS: tuple[TargetKind, ...] = get_args(TargetKind)
#: Target kinds that need no value (the end of the archive, or consistency).
TARGETS_WITHOUT_VALUE: tuple[TargetKind, ...] = ("latest", "immediate")
#: Target kinds given a value on the command line (``--target-time`` ...).
TARGETS_WITH_VALUE: tuple[TargetKind, ...] = ("time", "xid", "lsn", "name")

TargetAction = Literal["promote", "pause", "shutdown"]
TARGET_ACTIONS: tuple[TargetAction, ...] = get_args(TargetAction)

ArchiveMode = Literal["preserve", "off"]  # what a restored server does with archive_mode
ARCHIVE_MODES: tuple[ArchiveMode, ...] = get_args(ArchiveMode)

#: ``preview``: restore to a point into a scratch cluster and read a table there (the console's
#: look before a restore), then remove the scratch cluster.
JobKind = Literal["backup", "restore", "verify", "drill", "expire", "preview"]
JOB_KINDS: tuple[JobKind, ...] = get_args(JobKind)
#: Job kinds that restore into a scratch cluster (its directory belongs to the running job).
SCRATCH_JOB_KINDS: tuple[JobKind, ...] = ("drill", "preview")
#: What a schedule may run (a restore is only ever asked for).
ScheduleKind = Literal["backup", "verify", "expire", "drill"]
SCHEDULE_KINDS: tuple[ScheduleKind, ...] = get_args(ScheduleKind)

DrillKind = Literal["full", "partial"]
DRILL_KINDS: tuple[DrillKind, ...] = get_args(DrillKind)

Tier = Literal["hot", "warm", "cold"]
TIERS: tuple[Tier, ...] = get_args(Tier)
#: Where a backup is until tiering moves it (every backup, until tiers are configured).
FIRST_TIER: Tier = "hot"

Severity = Literal["critical", "warning", "info"]
SEVERITIES: tuple[Severity, ...] = get_args(Severity)

#: Where an alert can be sent (a section ``[alerts.<name>]`` configures each).
ChannelName = Literal["pagerduty", "slack", "grafana", "email", "webhook"]
CHANNEL_NAMES: tuple[ChannelName, ...] = get_args(ChannelName)

#: An alert's life in the catalog (Prometheus's pending and firing, then ours).
AlertState = Literal["pending", "firing", "resolved", "acknowledged", "silenced"]
ALERT_STATES: tuple[AlertState, ...] = get_args(AlertState)

#: What a rule's ``threshold`` is measured in (how the file writes it, how rules show it).
ThresholdUnit = Literal["seconds", "ratio", "count", "factor", "none"]
#: The conditions an alert rule can watch, with the unit of its threshold and whether it
#: counts events over a ``window``. The PromQL of each is in :mod:`alerts.signals`.
ALERT_SIGNALS: dict[str, tuple[ThresholdUnit, bool]] = {
    "backup_failures": ("count", True),
    "backup_success_rate": ("ratio", False),
    "backup_age": ("seconds", False),
    "wal_archive_lag": ("seconds", False),
    "wal_archive_failures": ("count", True),
    "replication_lag": ("seconds", False),
    "data_loss_events": ("count", True),
    "recovery_over_sla": ("seconds", True),
    "rpo_breach": ("factor", False),
    "rto_at_risk": ("factor", False),
    "copy_lag": ("seconds", False),
    "copy_validation_failed": ("none", False),
    "wal_shipping_delay": ("factor", False),
    "below_replication": ("count", False),
    "postgres_down": ("none", False),
    "metrics_absent": ("none", False),
    "cluster_metrics_absent": ("none", False),
    "drill_overdue": ("seconds", False),
    "drill_failed": ("none", False),
    "drill_failed_checks": ("count", False),
    "drill_slower_than_rto": ("factor", False),
    "streaming_receiver_down": ("none", False),
}
#: The metric each signal watches (the rules file builds its PromQL on it, the Grafana
#: dashboard draws the rules' levels on the panels of it) and whether the signal fires when
#: the value falls below the threshold. A signal is in :data:`THRESHOLD_METRICS` when a panel
#: of that metric shows the very value the threshold is compared with (for
#: ``recovery_over_sla``: a recovery's duration, and the SLA bucket of the histogram).
SIGNAL_METRICS: dict[str, str] = {
    "backup_failures": "lifeboat_backups_total",
    "backup_success_rate": "lifeboat_backup_success_ratio",
    "backup_age": "lifeboat_backup_last_success_timestamp_seconds",
    "wal_archive_lag": "lifeboat_wal_archive_lag_seconds",
    "wal_archive_failures": "lifeboat_wal_archive_failures_total",
    "replication_lag": "lifeboat_replication_lag_seconds",
    "streaming_receiver_down": "lifeboat_streaming_receiver_up",
    "data_loss_events": "lifeboat_data_loss_events_total",
    "recovery_over_sla": "lifeboat_recovery_duration_seconds",
    "rpo_breach": "lifeboat_rpo_exposure_seconds",
    "rto_at_risk": "lifeboat_rto_expected_seconds",
    "copy_lag": "lifeboat_copy_lag_seconds",
    "copy_validation_failed": "lifeboat_copy_validation_ok",
    "wal_shipping_delay": "lifeboat_wal_shipping_delay_seconds",
    "below_replication": "lifeboat_backups_below_replication",
    "postgres_down": "lifeboat_up",
    "metrics_absent": "lifeboat_up",
    "cluster_metrics_absent": "lifeboat_up",
    "drill_overdue": "lifeboat_drill_last_success_timestamp_seconds",
    "drill_failed": "lifeboat_drill_last_passed",
    "drill_failed_checks": "lifeboat_drill_last_failed_checks",
    "drill_slower_than_rto": "lifeboat_drill_last_duration_seconds",
}
#: Signals whose threshold is a level of their metric's value as a panel shows it
#: (``backup_age``: the age ``time() - timestamp``), with True when they fire below it.
THRESHOLD_METRICS: dict[str, bool] = {
    "backup_success_rate": True,
    "backup_age": False,
    "wal_archive_lag": False,
    "replication_lag": False,
    "recovery_over_sla": False,
    "copy_lag": False,
}

#: The seed's auto-remediation actions (each does what its name says: :mod:`alerts.remediation`).
RemediationAction = Literal[
    "check_network_connectivity", "verify_network_connectivity", "check_disk_space",
    "restart_replication", "restart_replication_slot", "verify_backup_dependencies",
    "cleanup_staging_area", "retry_backup_operation", "escalate_to_dba"]
REMEDIATION_ACTIONS: tuple[RemediationAction, ...] = get_args(RemediationAction)

#: Who may do what in the ops console: viewers read, operators start work, admins also
#: restore a cluster in place.
Role = Literal["viewer", "operator", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)
