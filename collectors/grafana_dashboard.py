"""The Grafana dashboard, generated from the metric definitions (:mod:`collectors.metrics`)
and the alert rules of the configuration (``[alerts.rules]``).

Panels are declared by :func:`panel_specs`, one tuple per dashboard row (``metrics.GROUPS``
order). A panel shows one metric's unit and thresholds unless it declares a derived value:
an age (``time() - <timestamp>``, seconds), a count of events, a headroom. The thresholds
are the levels of the enabled alert rules watching the metric (:func:`levels_of`: the
warning and the critical threshold of the rules whose signal compares that metric's value,
:data:`engine.vocabulary.THRESHOLD_METRICS`), so a threshold changed in the configuration
shows on the dashboard as in the rules file. :func:`build_dashboard` turns them into Grafana's JSON model with
grafana-foundation-sdk, ready for Grafana's import (``__inputs``/``__requires``, every
query on the ``DS_PROMETHEUS`` data source, filtered by the ``cluster`` variable).

Queries need no Grafana-only variables beyond ``$cluster`` and ``$__range`` (windows are
fixed, ``[1h]``, or the dashboard's range) and answer at any instant Prometheus has the
exporter's series: histogram quantiles read the cumulative buckets, so one recorded
recovery gives a value. :func:`panel_queries` and :func:`resolve` give plain PromQL.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from collectors import metrics
from engine.config.alerting import DEFAULT_RULES, AlertsSettings
from engine.config.units import parse_duration
from engine.vocabulary import SIGNAL_METRICS, THRESHOLD_METRICS

UID = "lifeboat-overview"
TITLE = "Lifeboat"
TAGS = ["lifeboat", "postgresql", "backup", "disaster-recovery"]
GRAFANA_VERSION = "11.6.0"  # the Grafana release grafana-foundation-sdk 11.6 models
DATASOURCE_INPUT = "DS_PROMETHEUS"
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${" + DATASOURCE_INPUT + "}")
ROW_TITLES = {"backups": "Backups", "wal": "WAL archive", "replication": "Replication",
              "objectives": "Recovery objectives", "drills": "Drills",
              "tiers": "Repository tiers", "alerts": "Alerts", "host": "Host", "exporter": "Exporter"}
COLLAPSED = frozenset({"host", "exporter"})
GREEN, ORANGE, RED = "green", "orange", "red"

Viz = Literal["stat", "timeseries", "table"]
Steps = tuple[tuple[float | None, str], ...]


@dataclass(frozen=True)
class Levels:
    """The alerting levels of a metric; ``below``: it alerts when the value falls under them."""

    warning: float | None
    critical: float | None
    below: bool = False


def levels_of(alerts: AlertsSettings | None = None) -> dict[str, Levels]:
    """The warning and critical levels of each metric, from the enabled rules whose signal
    compares its value with a threshold (the first level reached when several rules of a
    severity watch one metric: the lowest, or the highest for a metric that alerts below)."""
    alerts = alerts if alerts is not None else AlertsSettings()
    found: dict[str, dict[str, list[float]]] = {}
    below: dict[str, bool] = {}
    for rule in alerts.rules.values():
        if not rule.enabled or rule.signal not in THRESHOLD_METRICS or rule.severity == "info":
            continue
        name = SIGNAL_METRICS[rule.signal]
        below[name] = THRESHOLD_METRICS[rule.signal]
        found.setdefault(name, {}).setdefault(rule.severity, []).append(float(rule.threshold or 0))
    pick = {True: max, False: min}
    return {name: Levels(*(pick[below[name]](levels[s]) if s in levels else None
                           for s in ("warning", "critical")), below=below[name])
            for name, levels in found.items()}


def recovery_sla(alerts: AlertsSettings | None = None) -> float:
    """The recovery SLA the dashboard counts slow recoveries against: the lowest threshold
    of the enabled recovery_over_sla rules (the default rule's without one)."""
    alerts = alerts if alerts is not None else AlertsSettings()
    thresholds = [float(rule.threshold or 0) for rule in alerts.rules.values()
                  if rule.enabled and rule.signal == "recovery_over_sla"]
    return min(thresholds) if thresholds else parse_duration(DEFAULT_RULES["recovery_delays"]["threshold"])


def threshold_steps(threshold: Levels | None) -> Steps:
    """Grafana threshold steps for a metric's alerting levels (base step first).

    Above: green, orange from ``warning``, red from ``critical``. Below (it alerts when the
    value falls): red at the bottom, orange from ``critical``, green from ``warning``.
    """
    if threshold is None:
        return ((None, GREEN),)
    warning, critical = threshold.warning, threshold.critical
    if not threshold.below:
        return ((None, GREEN), *(((warning, ORANGE),) if warning is not None else ()),
                *(((critical, RED),) if critical is not None else ()))
    if critical is None:
        return ((None, ORANGE), (warning, GREEN)) if warning is not None else ((None, GREEN),)
    if warning is None:
        return ((None, RED), (critical, GREEN))
    return ((None, RED), (critical, ORANGE), (warning, GREEN))


@dataclass(frozen=True)
class Target:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class PanelSpec:
    """A panel: ``metric`` gives its unit, thresholds and description unless ``unit`` and
    ``steps`` declare a derived value (an age, a count, a headroom)."""

    title: str
    viz: Viz
    metric: str
    targets: tuple[Target, ...]
    width: int = 6
    height: int = 8
    unit: str | None = None
    steps: Steps | None = None
    mappings: tuple[model.ValueMap | model.RangeMap | model.SpecialValueMap, ...] = ()
    description: str | None = None
    decimals: int | None = None


def sel(name: str, extra: str = "") -> str:
    """``name{cluster=~"$cluster", <extra>}``: a selector of a defined metric (or histogram
    series of one), filtered by the dashboard's cluster variable when it has the label."""
    family = re.sub(r"_(bucket|count|sum)$", "", name) if name not in metrics.BY_NAME else name
    matchers = ['cluster=~"$cluster"'] if "cluster" in metrics.metric(family).labels else []
    matchers += [extra] if extra else []
    return name + ("{" + ", ".join(matchers) + "}" if matchers else "")


def age(name: str) -> str:
    return f"time() - {sel(name)}"


def _le(value: float) -> str:
    """A matcher for a bucket bound as the Python client (900.0) or Prometheus 3 (900) write it."""
    spellings = sorted({f"{value:g}", repr(float(value))})
    return 'le=~"' + "|".join(re.escape(s).replace("\\", "\\\\") for s in spellings) + '"'


def _value_map(*entries: tuple[str, str, str | None]) -> model.ValueMap:
    return model.ValueMap({value: model.ValueMappingResult(text=text, color=color, index=i)
                           for i, (value, text, color) in enumerate(entries)})


UP = _value_map(("0", "down", RED), ("1", "up", GREEN))
PASSED = _value_map(("0", "failed", RED), ("1", "passed", GREEN))
#: ``time() - 0``: a timestamp metric's "never" (ages past ~31 years).
NEVER = model.RangeMap(model.DashboardRangeMapOptions(1e9, 1e12, model.ValueMappingResult(text="never")))
NO_BACKUPS = model.RangeMap(model.DashboardRangeMapOptions(1e9, 1e12, model.ValueMappingResult(text="none")))
NOT_ATTEMPTED = model.SpecialValueMap(model.DashboardSpecialValueMapOptions(
    model.SpecialValueMatch.NA_N, model.ValueMappingResult(text="none attempted")))
NOT_SCHEDULED = _value_map(("0", "not scheduled", None))
UNLIMITED = _value_map(("0", "unlimited", None))
FAILED_CHECKS = _value_map(("0", "none", GREEN))
ANY_FAILED = model.RangeMap(model.DashboardRangeMapOptions(1, 1e12, model.ValueMappingResult(color=RED)))

AGE = "s"
#: Steps of derived values, matching alerts/rules.py: an objective missed (RPO: critical,
#: RTO: warning) and events counted by increase(), which extrapolates (1 can read 0.98).
RPO_HEADROOM: Steps = ((None, RED), (0, GREEN))
RTO_HEADROOM: Steps = ((None, ORANGE), (0, GREEN))
DATA_LOSS: Steps = ((None, GREEN), (0.5, RED))
SLOW_RECOVERIES: Steps = ((None, GREEN), (0.5, ORANGE))
REFRESH_ERRORS: Steps = ((None, GREEN), (0.5, ORANGE))
ALERTS_FIRING: Steps = ((None, GREEN), (0.5, RED))
_HISTOGRAM = metrics.metric("lifeboat_recovery_duration_seconds")
CT, CK, CC = "{{cluster}} {{type}}", "{{cluster}} {{kind}}", "{{cluster}} ({{class}})"
CR = "{{cluster}} {{region}}"


def _sum(by: str, inner: str) -> str:
    return f"sum by ({by}) ({inner})"


def _increase(name: str, by: str, window: str) -> str:
    return _sum(by, f"increase({sel(name)}[{window}])")


def _or_zero(expr: str) -> str:
    """A count of events that reads 0, not "no data", when no series exists yet."""
    return f"{expr} or on() vector(0)"


def _recovery_p95(by: str) -> str:
    return f"histogram_quantile(0.95, {_sum(by, sel(_HISTOGRAM.name + '_bucket'))})"


def _slow_recoveries(sla: float) -> str:
    if sla not in _HISTOGRAM.buckets:  # the rules file refuses such a threshold too, naming the rule
        raise ValueError(f"{_HISTOGRAM.name}: the recovery SLA {sla:g}s is not a bucket bound")
    count, bucket = _HISTOGRAM.name + "_count", _HISTOGRAM.name + "_bucket"
    return f"{_sum('cluster', sel(count))} - {_sum('cluster', sel(bucket, _le(sla)))}"


def _stat(title: str, metric: str, expr: str, legend: str, **options: Any) -> PanelSpec:
    return PanelSpec(title, "stat", metric, (Target(expr, legend),), **options)


def _series(title: str, metric: str, *targets: Target, **options: Any) -> PanelSpec:
    return PanelSpec(title, "timeseries", metric, targets, **options)


def _table(title: str, metric: str) -> PanelSpec:
    return PanelSpec(title, "table", metric, (Target(sel(metric)),), width=24, height=6)


def panel_specs(alerts: AlertsSettings | None = None) -> dict[str, tuple[PanelSpec, ...]]:
    """The panels of each row (``metrics.GROUPS`` order); the recovery SLA panel counts against
    the SLA of the configuration's recovery_over_sla rules."""
    return {group: _objective_panels(recovery_sla(alerts)) if group == "objectives" else _PANELS[group]
            for group in metrics.GROUPS}


def _sla_panel(sla: float) -> PanelSpec:
    return PanelSpec(f"Recoveries over SLA ({sla / 60:g}m)", "stat", _HISTOGRAM.name,
                     (Target(_slow_recoveries(sla), "over SLA {{cluster}}"),
                      Target(_sum("cluster", sel(_HISTOGRAM.name + "_count")), "all {{cluster}}")),
                     unit="short", steps=SLOW_RECOVERIES, decimals=0,
                     description="Restores and drills that took longer than the recovery SLA (the "
                                 "threshold of the recovery_over_sla rules), and all recorded.")


def _objective_panels(sla: float) -> tuple[PanelSpec, ...]:
    """The recovery objectives row; its SLA panel counts recoveries slower than ``sla``."""
    return (
        _stat("RPO exposure", "lifeboat_rpo_exposure_seconds", sel("lifeboat_rpo_exposure_seconds"), CC,
              height=4),
        _stat("RPO headroom", "lifeboat_rpo_objective_seconds",
              f"{sel('lifeboat_rpo_objective_seconds')} - {sel('lifeboat_rpo_exposure_seconds')}", CC,
              height=4, unit="s", steps=RPO_HEADROOM,
              description="RPO objective minus measured exposure: red when the objective is missed."),
        _stat("Expected RTO", "lifeboat_rto_expected_seconds", sel("lifeboat_rto_expected_seconds"), CC,
              height=4),
        _stat("RTO headroom", "lifeboat_rto_objective_seconds",
              f"{sel('lifeboat_rto_objective_seconds')} - {sel('lifeboat_rto_expected_seconds')}", CC,
              height=4, unit="s", steps=RTO_HEADROOM,
              description="RTO objective minus expected RTO: orange when a restore would take longer."),
        _series("RPO: exposure and objective", "lifeboat_rpo_exposure_seconds",
                Target(sel("lifeboat_rpo_exposure_seconds"), "exposure " + CC),
                Target(sel("lifeboat_rpo_objective_seconds"), "objective " + CC), width=12),
        _series("RTO: expected and objective", "lifeboat_rto_expected_seconds",
                Target(sel("lifeboat_rto_expected_seconds"), "expected " + CC),
                Target(sel("lifeboat_rto_objective_seconds"), "objective " + CC), width=12),
        _stat("Recovery time p95", _HISTOGRAM.name, _recovery_p95("cluster, le"), "{{cluster}}",
              description="95th percentile of the time restores and drills took (all recorded)."),
        _series("Recovery time p95 by type", _HISTOGRAM.name,
                Target(_recovery_p95("cluster, type, le"), CT),
                description="95th percentile of the time restores and drills took, by recovery type "
                            "(all recorded)."),
        _sla_panel(sla),
        _stat("Restore target gap (time)", "lifeboat_restore_target_gap_seconds",
              sel("lifeboat_restore_target_gap_seconds"), "{{cluster}}", width=3,
              description="Newest restore to a time target: the time asked minus the last "
                          "commit replayed."),
        _stat("Restore target gap (LSN)", "lifeboat_restore_target_gap_bytes",
              sel("lifeboat_restore_target_gap_bytes"), "{{cluster}}", width=3,
              description="Newest restore to an LSN or restore-point target: its LSN minus the "
                          "LSN replay reached."),
        _stat("Data loss events in time range", "lifeboat_data_loss_events_total",
              _or_zero(_increase("lifeboat_data_loss_events_total", "cluster", "$__range")),
              "{{cluster}}", width=3, steps=DATA_LOSS, decimals=0,
              description="Events where data was or would have been lost (0 when none was recorded)."),
    )

_PANELS: dict[str, tuple[PanelSpec, ...]] = {  # objectives: _objective_panels
    "backups": (
        _stat("PostgreSQL up", "lifeboat_up", sel("lifeboat_up"), "{{cluster}}", width=4, height=4,
              mappings=(UP,)),
        _stat("Backup success ratio", "lifeboat_backup_success_ratio", sel("lifeboat_backup_success_ratio"),
              CT, width=4, height=4, mappings=(NOT_ATTEMPTED,)),
        _stat("Last successful backup age", "lifeboat_backup_last_success_timestamp_seconds",
              age("lifeboat_backup_last_success_timestamp_seconds"), CT, width=5, height=4, unit=AGE,
              mappings=(NEVER,), description="Time since the newest backup of each type finished."),
        _stat("Last failed backup age", "lifeboat_backup_last_failure_timestamp_seconds",
              age("lifeboat_backup_last_failure_timestamp_seconds"), CT, width=5, height=4, unit=AGE,
              mappings=(NEVER,), description="Time since the newest failed backup of each type ended; "
              "a later success clears the backup failure alert."),
        _stat("Jobs running", "lifeboat_jobs_running", _sum("cluster, kind", sel("lifeboat_jobs_running")),
              CK, height=4),
        _series("Backups by result (1h window)", "lifeboat_backups_total",
                Target(_increase("lifeboat_backups_total", "cluster, type, result", "1h"),
                       "{{cluster}} {{type}} {{result}}"), width=12),
        _stat("Backups in time range", "lifeboat_backups_total",
              _increase("lifeboat_backups_total", "result", "$__range"), "{{result}}", decimals=0),
        _stat("Schedule attempts in time range", "lifeboat_schedule_attempts_total",
              _or_zero(_increase("lifeboat_schedule_attempts_total", "schedule, result", "$__range")),
              "{{schedule}} {{result}}", decimals=0,
              description="Jobs started by each schedule, by result (0 when no schedule is configured)."),
        _series("Last backup duration", "lifeboat_backup_last_duration_seconds",
                Target(sel("lifeboat_backup_last_duration_seconds"), CT), width=8),
        _series("Last backup size", "lifeboat_backup_last_size_bytes",
                Target(sel("lifeboat_backup_last_size_bytes"), CT), width=8),
        _series("Running job progress", "lifeboat_job_progress_bytes",
                Target(_sum("cluster, kind", sel("lifeboat_job_progress_bytes")), "done " + CK),
                Target(_sum("cluster, kind", sel("lifeboat_job_size_bytes")), "in all " + CK),
                width=8, description="Bytes done and bytes to do in all by running backup and restore jobs."),
        _table("Newest backups", "lifeboat_backup_info"),
    ),
    "wal": (
        _stat("WAL archive lag", "lifeboat_wal_archive_lag_seconds", sel("lifeboat_wal_archive_lag_seconds"),
              "{{cluster}}", height=4),
        _stat("Segments not archived", "lifeboat_wal_archive_lag_segments",
              sel("lifeboat_wal_archive_lag_segments"), "{{cluster}}", height=4),
        _stat("Last archived WAL age", "lifeboat_wal_last_archived_timestamp_seconds",
              age("lifeboat_wal_last_archived_timestamp_seconds"), "{{cluster}}", height=4, unit=AGE,
              mappings=(NEVER,), description="Time since archive_command last succeeded."),
        _stat("Recovery window", "lifeboat_recovery_window_start_timestamp_seconds",
              age("lifeboat_recovery_window_start_timestamp_seconds"), "{{cluster}}", height=4, unit=AGE,
              mappings=(NO_BACKUPS,),
              description="How far back a restore can reach: time since the oldest backup finished."),
        _series("WAL archive lag over time", "lifeboat_wal_archive_lag_seconds",
                Target(sel("lifeboat_wal_archive_lag_seconds"), "{{cluster}}"), width=12),
        _series("WAL archived and failed (1h window)", "lifeboat_wal_archived_total",
                Target(_increase("lifeboat_wal_archived_total", "cluster", "1h"), "archived {{cluster}}"),
                Target(_increase("lifeboat_wal_archive_failures_total", "cluster", "1h"),
                       "failed {{cluster}}"),
                width=12, description="WAL files archived and failed archive_command runs, per hour."),
        _series("WAL waiting to be archived", "lifeboat_wal_ready_files",
                Target(sel("lifeboat_wal_ready_files"), ".ready files {{cluster}}"),
                Target(sel("lifeboat_wal_archive_lag_segments"), "segments not in repository {{cluster}}"),
                width=12, description="Files waiting for archive_command, and completed segments the "
                                      "repository does not hold yet."),
        _series("pg_wal size", "lifeboat_wal_directory_bytes",
                Target(sel("lifeboat_wal_directory_bytes"), "{{cluster}}"), width=12),
        _series("WAL not yet safe in the repository", "lifeboat_wal_unsafe_bytes",
                Target(sel("lifeboat_wal_unsafe_bytes"), "{{cluster}}"), width=12,
                description="WAL the server wrote beyond what the repository holds or the receiver "
                            "flushed: what a loss of the server would lose now."),
    ),
    "replication": (
        _stat("Streaming receiver", "lifeboat_streaming_receiver_up", sel("lifeboat_streaming_receiver_up"),
              "{{cluster}}", width=3, mappings=(UP,),
              description="The agent's WAL receiver of each cluster with streaming enabled."),
        _stat("Replication lag", "lifeboat_replication_lag_seconds", sel("lifeboat_replication_lag_seconds"),
              "{{cluster}} {{replica}}", width=3),
        _series("Replication lag over time", "lifeboat_replication_lag_seconds",
                Target(sel("lifeboat_replication_lag_seconds"), "{{cluster}} {{replica}}"), width=9),
        _series("Replication lag in bytes", "lifeboat_replication_lag_bytes",
                Target(sel("lifeboat_replication_lag_bytes"), "{{cluster}} {{replica}}"), width=9),
        _table("Replicas", "lifeboat_replica_info"),
    ),
    "drills": (
        _stat("Newest drill", "lifeboat_drill_last_passed", sel("lifeboat_drill_last_passed"), CK, height=4,
              mappings=(PASSED,)),
        _stat("Last passed drill age", "lifeboat_drill_last_success_timestamp_seconds",
              age("lifeboat_drill_last_success_timestamp_seconds"), CK, height=4, unit=AGE,
              mappings=(NEVER,), description="Time since the newest passed drill of each kind finished."),
        _stat("Failed checks in newest drill", "lifeboat_drill_last_failed_checks",
              sel("lifeboat_drill_last_failed_checks"), CK, height=4, mappings=(FAILED_CHECKS, ANY_FAILED)),
        _stat("Drill period", "lifeboat_drill_period_seconds", sel("lifeboat_drill_period_seconds"), CK,
              height=4, mappings=(NOT_SCHEDULED,)),
        _series("Drill duration", "lifeboat_drill_last_duration_seconds",
                Target(sel("lifeboat_drill_last_duration_seconds"), CK), width=12),
        _stat("Drills in time range", "lifeboat_drills_total",
              _increase("lifeboat_drills_total", "cluster, kind, result", "$__range"),
              "{{cluster}} {{kind}} {{result}}", width=12, decimals=0),
    ),
    "tiers": (
        _series("Repository size by tier", "lifeboat_repository_bytes",
                Target(_sum("cluster, tier, region", sel("lifeboat_repository_bytes")),
                       "{{cluster}} {{tier}} {{region}}"), width=12),
        _series("Backups per tier", "lifeboat_tier_backups",
                Target(sel("lifeboat_tier_backups"), "{{cluster}} {{tier}}"), width=12),
        _stat("Fewest copies of a backup", "lifeboat_backup_copies", sel("lifeboat_backup_copies"),
              "{{cluster}} {{tier}}", width=6, decimals=0,
              description="The fewest independent storages of its tier holding any one backup."),
        _stat("Backups below replication", "lifeboat_backups_below_replication",
              sel("lifeboat_backups_below_replication"), "{{cluster}} {{tier}}", width=6, decimals=0,
              description="Backups held by fewer of their tier's storages than its replication count."),
        _series("Copy lag by region", "lifeboat_copy_lag_seconds",
                Target(sel("lifeboat_copy_lag_seconds"), "{{cluster}} {{region}}"), width=12,
                description="How far each region's copy of the repository is behind (0: in sync)."),
        _stat("Copy validation", "lifeboat_copy_validation_ok", sel("lifeboat_copy_validation_ok"), CR,
              height=4, mappings=(PASSED,),
              description="The newest validation of each region's copy: manifests as the primary's, every "
                          "pack, list and WAL file a backup needs present, a sample re-hashed."),
        _stat("Copy validation age", "lifeboat_copy_validation_last_timestamp_seconds",
              age("lifeboat_copy_validation_last_timestamp_seconds"), CR, height=4, unit=AGE,
              mappings=(NEVER,), description="Time since each region's copy was last validated."),
        _stat("Copy validation problems", "lifeboat_copy_validation_problems",
              sel("lifeboat_copy_validation_problems"), CR, height=4, mappings=(FAILED_CHECKS, ANY_FAILED),
              description="Missing, differing or damaged objects the newest validation found "
                          "('lifeboat copy --validate' names them)."),
        _stat("Copy bandwidth limit", "lifeboat_copy_bandwidth_limit_bytes_per_second",
              sel("lifeboat_copy_bandwidth_limit_bytes_per_second"), CR, height=4, mappings=(UNLIMITED,)),
        _series("WAL shipping delay", "lifeboat_wal_shipping_delay_seconds",
                Target(sel("lifeboat_wal_shipping_delay_seconds"), CR),
                Target(sel("lifeboat_wal_shipping_max_delay_seconds"), "max_delay " + CR), width=12,
                description="Age of the oldest archived WAL each region's copy lacks, against its "
                            "max_delay (the wal_shipping_delayed rule fires above it)."),
        _series("Copy throughput", "lifeboat_copy_throughput_bytes_per_second",
                Target(sel("lifeboat_copy_throughput_bytes_per_second"), "round " + CR),
                Target(f"rate({sel('lifeboat_copy_bytes_total')}[5m])", "5m average " + CR),
                Target(sel("lifeboat_copy_bandwidth_limit_bytes_per_second"), "limit (0: none) " + CR),
                width=12, description="Bytes per second into each region's copy: the newest round's, the "
                                      "average of the last 5 minutes, and the bandwidth limit."),
        _stat("Backups in repository", "lifeboat_repository_backups", sel("lifeboat_repository_backups"), CT),
        _stat("Compression ratio", "lifeboat_compression_ratio", sel("lifeboat_compression_ratio"),
              "{{cluster}}", decimals=2),
    ),
    "alerts": (
        _stat("Alerts firing", "lifeboat_alerts_firing",
              _or_zero(_sum("severity", sel("lifeboat_alerts_firing", 'state="firing"'))), "{{severity}}",
              height=4, steps=ALERTS_FIRING, decimals=0,
              description="Open alerts whose condition holds and nobody acknowledged or silenced, by "
                          "severity (0 when none)."),
        _stat("Notifications in time range", "lifeboat_alert_notifications_total",
              _or_zero(_increase("lifeboat_alert_notifications_total", "channel, outcome", "$__range")),
              "{{channel}} {{outcome}}", width=9, height=4, decimals=0,
              description="Alert notices sent to each channel, by outcome (0 when none was sent)."),
        _stat("Remediation attempts in time range", "lifeboat_remediation_attempts_total",
              _or_zero(_increase("lifeboat_remediation_attempts_total", "action, result", "$__range")),
              "{{action}} {{result}}", width=9, height=4, decimals=0,
              description="Auto-remediation actions run, by action and result (0 when none ran)."),
        _series("Open alerts by rule", "lifeboat_alerts_firing",
                Target(_or_zero(_sum("cluster, rule, severity, state", sel("lifeboat_alerts_firing"))),
                       "{{cluster}} {{rule}} ({{severity}}, {{state}})"), width=8,
                description="Open alerts whose condition holds, by rule and state (0 when none)."),
        _series("Notifications (1h window)", "lifeboat_alert_notifications_total",
                Target(_or_zero(_increase("lifeboat_alert_notifications_total", "channel, outcome", "1h")),
                       "{{channel}} {{outcome}}"), width=8,
                description="Alert notices sent per hour, by channel and outcome (0 when none)."),
        _series("Remediation attempts (1h window)", "lifeboat_remediation_attempts_total",
                Target(_or_zero(_increase("lifeboat_remediation_attempts_total", "action, result", "1h")),
                       "{{action}} {{result}}"), width=8,
                description="Auto-remediation actions run per hour, by action and result (0 when none)."),
    ),
    "host": (
        _series("Load (1m)", "lifeboat_host_load1", Target(sel("lifeboat_host_load1"), "{{instance}}"),
                width=8),
        _series("Disk utilization", "lifeboat_host_io_utilization_ratio",
                Target(sel("lifeboat_host_io_utilization_ratio"), "{{instance}} {{device}}"), width=8),
        _series("Network", "lifeboat_host_network_bytes_per_second",
                Target(sel("lifeboat_host_network_bytes_per_second"), "{{instance}} {{direction}}"), width=8),
    ),
    "exporter": (
        _stat("Last refresh age", "lifeboat_exporter_last_refresh_timestamp_seconds",
              age("lifeboat_exporter_last_refresh_timestamp_seconds"), "{{instance}}", height=4, unit=AGE,
              mappings=(NEVER,), description="Time since the exporter last refreshed its cached state."),
        _stat("Catalog up", "lifeboat_catalog_up", sel("lifeboat_catalog_up"), "{{instance}}", width=4,
              height=4, mappings=(UP,)),
        _stat("Repository up", "lifeboat_repository_up", sel("lifeboat_repository_up"), "{{instance}}",
              width=4, height=4, mappings=(UP,)),
        _stat("Refresh errors in time range", "lifeboat_exporter_refresh_errors_total",
              _or_zero(_increase("lifeboat_exporter_refresh_errors_total", "part", "$__range")),
              "{{part}}", width=5, height=4, steps=REFRESH_ERRORS, decimals=0,
              description="Failed refreshes by part (0 when none was recorded)."),
        _stat("Version", "lifeboat_build_info", sel("lifeboat_build_info"), "{{version}}", width=5, height=4),
        _series("Refresh duration", "lifeboat_exporter_refresh_duration_seconds",
                Target(sel("lifeboat_exporter_refresh_duration_seconds"), "{{instance}}"), width=24),
    ),
}


def _thresholds(steps: Steps) -> dash.ThresholdsConfig:
    return dash.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE).steps(
        [model.Threshold(value=value, color=color) for value, color in steps])


def _panel(spec: PanelSpec, panel_id: int, levels: dict[str, Levels]) -> Any:
    metric = metrics.metric(spec.metric)
    instant = spec.viz != "timeseries"
    steps = spec.steps if spec.steps is not None else threshold_steps(levels.get(metric.name))
    builder: Any = {"stat": stat.Panel, "timeseries": timeseries.Panel, "table": table.Panel}[spec.viz]()
    builder = (builder.id(panel_id).title(spec.title).description(spec.description or metric.help)
               .datasource(DATASOURCE).span(spec.width).height(spec.height)
               .unit(spec.unit or metric.unit).thresholds(_thresholds(steps)))
    for index, target in enumerate(spec.targets):
        query = prometheus.Dataquery().ref_id(chr(ord("A") + index)).expr(target.expr).datasource(DATASOURCE)
        query = query.instant() if instant else query.range()
        if spec.viz == "table":
            query = query.format(PromQueryFormat.TABLE)
        builder = builder.with_target(query.legend_format(target.legend) if target.legend else query)
    if spec.mappings:
        builder = builder.mappings(list(spec.mappings))
    if spec.decimals is not None:
        builder = builder.decimals(spec.decimals)
    if spec.viz == "stat":
        names_only = metric.name.endswith("_build_info")  # the version is the label
        text = common.BigValueTextMode.NAME if names_only else common.BigValueTextMode.AUTO
        builder = (builder.graph_mode(common.BigValueGraphMode.NONE)
                   .color_mode(common.BigValueColorMode.VALUE).text_mode(text)
                   .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"])))
    elif spec.viz == "timeseries":
        legend = common_builders.VizLegendOptions().show_legend(True).display_mode(
            common.LegendDisplayMode.LIST).placement(common.LegendPlacement.BOTTOM)
        builder = builder.legend(legend).fill_opacity(10).line_width(1)
        if len(steps) > 1:
            builder = builder.thresholds_style(common_builders.GraphThresholdsStyleConfig().mode(
                common.GraphThresholdsStyleMode.DASHED))
    else:
        hidden = {"Time": True, "Value": True, "__name__": True, "job": True}
        builder = builder.with_transformation(model.DataTransformerConfig(
            id_val="organize", options={"excludeByName": hidden}))
    return builder


def _requires(panel_types: list[str]) -> list[dict[str, str]]:
    names = {"stat": "Stat", "table": "Table", "timeseries": "Time series"}
    return [{"type": "grafana", "id": "grafana", "name": "Grafana", "version": GRAFANA_VERSION},
            {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
            *({"type": "panel", "id": kind, "name": names[kind], "version": ""} for kind in panel_types)]


def build_dashboard(alerts: AlertsSettings | None = None) -> dict[str, Any]:
    """The dashboard as Grafana's JSON model (a plain dict), ready for import, with the
    thresholds of the alert rules of ``alerts`` (default: the seed's defaults)."""
    levels, specs = levels_of(alerts), panel_specs(alerts)
    cluster = (dash.QueryVariable("cluster").label("Cluster").datasource(DATASOURCE)
               .query("label_values(lifeboat_up, cluster)")
               .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
               .sort(model.VariableSort.ALPHABETICAL_ASC).multi(True).include_all(True)
               .current(model.VariableOption(selected=True, text=["All"], value=["$__all"])))
    annotations = (dash.AnnotationQuery().name("Annotations & Alerts").built_in(1).enable(True).hide(True)
                   .icon_color("rgba(0, 211, 255, 1)").type("dashboard")
                   .datasource(model.DataSourceRef(type_val="grafana", uid="-- Grafana --")))
    board = (dash.Dashboard(TITLE).uid(UID).tags(TAGS).editable().time("now-24h", "now").refresh("30s")
             .tooltip(model.DashboardCursorSync.CROSSHAIR).with_variable(cluster).annotation(annotations)
             .description("PostgreSQL backups and disaster recovery: backups, WAL archive, replication, "
                          "recovery objectives, drills, repository tiers and alerts (generated from "
                          "collectors/metrics.py and the alert rules by collectors/grafana_dashboard.py)."))
    next_id = 1
    for group in metrics.GROUPS:
        row = dash.Row(ROW_TITLES[group]).id(next_id)
        next_id += 1
        panels = []
        for spec in specs[group]:
            panels.append(_panel(spec, next_id, levels))
            next_id += 1
        if group in COLLAPSED:
            for panel in panels:
                row = row.with_panel(panel)
            board = board.with_row(row)
        else:
            board = board.with_row(row.collapsed(False))
            for panel in panels:
                board = board.with_panel(panel)
    body = json.loads(json.dumps(board.build(), cls=JSONEncoder))
    inputs = [{"name": DATASOURCE_INPUT, "label": "Prometheus",
               "description": "The Prometheus that scrapes the Lifeboat exporter",
               "type": "datasource", "pluginId": "prometheus", "pluginName": "Prometheus"}]
    kinds = sorted({spec.viz for row in specs.values() for spec in row})
    return {"__inputs": inputs, "__requires": _requires(kinds), "id": None, **body}


def render(alerts: AlertsSettings | None = None) -> str:
    """The dashboard as deterministic JSON text (``grafana/lifeboat.json`` holds the defaults')."""
    return json.dumps(build_dashboard(alerts), indent=2, ensure_ascii=False) + "\n"


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel that is not a row, including those nested in collapsed rows, in order."""
    found = []
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            found.extend(panel.get("panels", []))
        else:
            found.append(panel)
    return found


def panel_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expr) for every target of every panel, collapsed rows included."""
    return [(panel["title"], target["expr"]) for panel in _panels(dashboard)
            for target in panel.get("targets", []) if target.get("expr")]


_VARIABLE = re.compile(r"\$(?:\{([A-Za-z_]\w*)\}|([A-Za-z_]\w*))")
_REGEX_SPECIALS = re.compile(r"([\\.+*?()|\[\]{}^$])")


def resolve(expr: str, cluster: str, range_seconds: int = 3600) -> str:
    """``expr`` as plain PromQL, as Grafana would send it with ``cluster`` selected and a
    dashboard time range of ``range_seconds``. Raises ValueError on any other variable."""
    regex = _REGEX_SPECIALS.sub(r"\\\1", cluster).replace("\\", "\\\\").replace('"', '\\"')
    values = {"cluster": regex, "__range": f"{range_seconds}s", "__range_s": str(range_seconds),
              "__range_ms": str(range_seconds * 1000)}

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise ValueError(f"cannot resolve ${name} in {expr!r}")
        return values[name]

    return _VARIABLE.sub(substitute, expr)
