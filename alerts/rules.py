"""Lifeboat's alert rules, as data, and the Prometheus rules file rendered from them.

Every threshold comes from the metric definitions (:mod:`collectors.metrics`), so the
exporter, this rules file and the alert engine judge by the same numbers. Each rule has
a ``cause``: the warning and the critical variant of one condition share it, and the
Alertmanager configuration (:func:`render_alertmanager`) lets a firing critical alert
inhibit the warning of the same cause and cluster.

Output is deterministic: the same definitions always render the same YAML.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import yaml
from prometheus_client.utils import floatToGoString

from collectors import metrics
from engine.config.sections import DrillConfig

Severity = Literal["critical", "warning", "info"]
SEVERITIES: tuple[str, ...] = ("critical", "warning", "info")
GROUP = "lifeboat"
#: Where the runbooks are, relative to Lifeboat's source (as the seed's runbook_url is);
#: ``lifeboat rules export --runbook-base URL`` points alerts at where a team publishes them.
DEFAULT_RUNBOOK_BASE = "alerts/runbooks.md"
#: A cluster without any successful backup for this long alerts. Two days: the seed backs
#: up every night (full at 2 AM, at most 4 h), so one missed night is tolerated, two are not.
BACKUP_MAX_AGE_SECONDS = 2 * 86400.0
#: A drill is overdue once its period plus this much has passed without a success: the
#: longest a drill may run (the drills' default max durations), so a drill that is running
#: on schedule, or took a bit longer than the previous one, does not alert.
DRILL_GRACE_SECONDS = max(DrillConfig.model_fields["full_max_duration"].default,
                          DrillConfig.model_fields["partial_max_duration"].default)
_FOR = re.compile(r"^(0|[0-9]+[smhd])$")
_COUNT = '{{ $value | printf "%.0f" }}'  # increase() extrapolates: 1.02 failures reads as 1


@dataclass(frozen=True)
class Rule:
    """One alert. ``cause`` is shared by the warning and critical variants of a condition;
    ``anchor`` names the rule's section in ``alerts/runbooks.md``."""

    name: str
    severity: Severity
    expr: str
    for_: str
    summary: str
    description: str
    cause: str
    anchor: str

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"rule {self.name}: severity must be one of {', '.join(SEVERITIES)}")
        if not _FOR.match(self.for_):
            raise ValueError(f"rule {self.name}: 'for' must be a duration like 5m, not {self.for_!r}")


def num(value: float) -> str:
    """A threshold as PromQL writes it: 0.95, 180, 172800."""
    return format(value, ".15g")


def human_seconds(seconds: float) -> str:
    """180 -> '3m', 1800 -> '30m', 172800 -> '2d' (for summaries)."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{num(seconds)}s"


def _levels(name: str) -> tuple[float, float]:
    """The (warning, critical) threshold of a metric; both must be defined."""
    threshold = metrics.metric(name).threshold
    if threshold is None or threshold.warning is None or threshold.critical is None:
        raise ValueError(f"{name} has no warning and critical threshold in collectors.metrics")
    return threshold.warning, threshold.critical


def _rule(name: str, severity: Severity, expr: str, for_: str, summary: str, description: str,
          cause: str) -> Rule:
    return Rule(name, severity, expr, for_, summary, description, cause, name.lower())


def _pair(metric: str, name: str, for_: str, summary: str, description: str, cause: str,
          show: Callable[[float], str] = human_seconds) -> list[Rule]:
    """The warning and the critical rule of one metric's threshold. ``summary`` and
    ``description`` say ``LEVEL`` for the threshold (as ``show`` writes it: a duration by
    default) and ``SEVERITY`` for the rule's severity."""
    threshold = metrics.metric(metric).threshold
    warning, critical = _levels(metric)
    below = bool(threshold and threshold.below)
    rules = []
    for suffix, severity, level in ((("Low" if below else "High"), "warning", warning),
                                    ("Critical", "critical", critical)):
        def fill(text: str, level: float = level, severity: str = severity) -> str:
            return text.replace("LEVEL", show(level)).replace("SEVERITY", severity)

        rules.append(_rule(f"{name}{suffix}", severity, f"{metric} {'<' if below else '>'} {num(level)}",
                           for_, fill(summary), fill(description), cause))
    return rules


def _backup_rules() -> list[Rule]:
    rules = _pair("lifeboat_backup_success_ratio", "LifeboatBackupSuccessRate", "5m",
                  "Backup success rate of {{ $labels.cluster }} below LEVEL",
                  "{{ $labels.type }} backups of cluster {{ $labels.cluster }} succeeded "
                  "{{ $value | humanizePercentage }} of the time over the success window "
                  "(SEVERITY below LEVEL).", "backup_success_rate",
                  show=lambda level: f"{num(level * 100)}%")
    rules.append(_rule(
        "LifeboatBackupFailed", "critical",
        'increase(lifeboat_backups_total{result="failed"}[24h]) > 0', "0m",
        "A backup of {{ $labels.cluster }} failed",
        f"{_COUNT} {{{{ $labels.type }}}} backup(s) of cluster {{{{ $labels.cluster }}}} failed in "
        "the last 24 hours.", "backup_failed"))
    age = human_seconds(BACKUP_MAX_AGE_SECONDS)
    rules.append(_rule(
        "LifeboatBackupTooOld", "warning",
        "time() - max by (cluster) (lifeboat_backup_last_success_timestamp_seconds) > "
        f"{num(BACKUP_MAX_AGE_SECONDS)}", "15m",
        f"No backup of {{{{ $labels.cluster }}}} succeeded in {age}",
        "The newest backup of cluster {{ $labels.cluster }} (of any type) finished "
        f"{{{{ $value | humanizeDuration }}}} ago (warning above {age}).", "backup_age"))
    return rules


def _wal_rules() -> list[Rule]:
    rules = _pair("lifeboat_wal_archive_lag_seconds", "LifeboatWALArchiveLag", "1m",
                  "WAL archiving of {{ $labels.cluster }} is over LEVEL behind",
                  "The oldest completed WAL segment of cluster {{ $labels.cluster }} has waited "
                  "{{ $value | humanizeDuration }} to be archived (SEVERITY above LEVEL).",
                  "wal_archive_lag")
    rules.append(_rule(
        "LifeboatWALArchiveFailing", "warning",
        "increase(lifeboat_wal_archive_failures_total[10m]) > 0", "0m",
        "archive_command fails on {{ $labels.cluster }}",
        f"archive_command failed {_COUNT} time(s) on cluster {{{{ $labels.cluster }}}} in the "
        "last 10 minutes.", "wal_archive_failing"))
    return rules


def _replication_rules() -> list[Rule]:
    return _pair("lifeboat_replication_lag_seconds", "LifeboatReplicationLag", "1m",
                 "Replica {{ $labels.replica }} of {{ $labels.cluster }} is over LEVEL behind",
                 "Replica {{ $labels.replica }} ({{ $labels.datacenter }}) of cluster "
                 "{{ $labels.cluster }} is {{ $value | humanizeDuration }} behind the primary "
                 "(SEVERITY above LEVEL).", "replication_lag")


def _objective_rules() -> list[Rule]:
    sla = metrics.RECOVERY_SLA_SECONDS
    histogram = metrics.metric("lifeboat_recovery_duration_seconds")
    if sla not in histogram.buckets:
        raise ValueError(f"RECOVERY_SLA_SECONDS {sla} is not a bucket of {histogram.name}")
    le = floatToGoString(sla)  # as prometheus-client exposes it: 900.0 -> "900.0"
    # Each increase() extrapolates on its own, so two equal counts can differ by a hair;
    # counts of recoveries are whole numbers, so a real slow one is >= 1 and noise < 0.5.
    slow = (f"increase({histogram.name}_count[24h]) - ignoring(le) "
            f'increase({histogram.name}_bucket{{le="{le}"}}[24h]) > 0.5')
    return [
        _rule("LifeboatDataLoss", "critical",
              'label_replace(sum by (cluster, cause, service) '
              '(increase(lifeboat_data_loss_events_total[24h])), "loss_cause", "$1", "cause", "(.*)") > 0',
              "0m", "Data loss on {{ $labels.cluster }}: {{ $labels.loss_cause }}",
              f"{_COUNT} data-loss event(s) of cause {{{{ $labels.loss_cause }}}} on cluster "
              "{{ $labels.cluster }} in the last 24 hours.", "data_loss"),
        _rule("LifeboatRecoveryOverSLA", "warning", slow, "0m",
              f"A recovery of {{{{ $labels.cluster }}}} took over {human_seconds(sla)}",
              f"{_COUNT} {{{{ $labels.type }}}} recovery(ies) of cluster {{{{ $labels.cluster }}}} "
              f"in the last 24 hours took longer than the {human_seconds(sla)} recovery SLA.",
              "recovery_sla"),
        _rule("LifeboatRPOBreached", "critical",
              "lifeboat_rpo_exposure_seconds > on(cluster, class) lifeboat_rpo_objective_seconds", "1m",
              "{{ $labels.cluster }} is beyond its RPO objective",
              "Cluster {{ $labels.cluster }} ({{ $labels.class }}) would lose "
              "{{ $value | humanizeDuration }} of committed work now, more than its RPO objective.",
              "rpo"),
        _rule("LifeboatRTOAtRisk", "warning",
              "lifeboat_rto_expected_seconds > on(cluster, class) lifeboat_rto_objective_seconds", "15m",
              "{{ $labels.cluster }} would restore slower than its RTO objective",
              "A restore of cluster {{ $labels.cluster }} ({{ $labels.class }}) to the latest point "
              "would take about {{ $value | humanizeDuration }} now, more than its RTO objective.",
              "rto"),
    ]


def _copy_rules() -> list[Rule]:
    return _pair("lifeboat_copy_lag_seconds", "LifeboatCopyLag", "15m",
                 "The {{ $labels.region }} copy of {{ $labels.cluster }} is over LEVEL behind",
                 "The copy of cluster {{ $labels.cluster }}'s repository in region {{ $labels.region }} "
                 "lacks a backup or WAL file written {{ $value | humanizeDuration }} ago "
                 "(SEVERITY above LEVEL).", "copy_lag")


def _availability_rules() -> list[Rule]:
    return [
        _rule("LifeboatPostgresDown", "critical", "lifeboat_up == 0", "2m",
              "PostgreSQL of {{ $labels.cluster }} does not answer",
              "The Lifeboat exporter could not reach the PostgreSQL server of cluster "
              "{{ $labels.cluster }} for 2 minutes.", "postgres_down"),
        _rule("LifeboatMetricsAbsent", "critical", "absent(lifeboat_up)", "5m",
              "Prometheus has no Lifeboat metrics",
              "No lifeboat_up series at all: the Lifeboat exporter is down or not scraped, so "
              "backups, WAL archiving and objectives are unwatched.", "metrics_absent"),
        # The whole-exporter case is LifeboatMetricsAbsent's: this one stays silent then.
        _rule("LifeboatClusterMetricsAbsent", "critical",
              "(group by (cluster) (max_over_time(lifeboat_up[1d])) unless group by (cluster) (lifeboat_up))"
              " and on() group(lifeboat_up)", "5m",
              "Cluster {{ $labels.cluster }} stopped reporting",
              "Cluster {{ $labels.cluster }} reported Lifeboat metrics in the last day but reports "
              "none now: its backups and WAL archive are unwatched.", "cluster_metrics_absent"),
    ]


def _drill_rules() -> list[Rule]:
    return [
        _rule("LifeboatDrillOverdue", "warning",
              "time() - lifeboat_drill_last_success_timestamp_seconds > on(cluster, kind) "
              f"(lifeboat_drill_period_seconds + {num(DRILL_GRACE_SECONDS)}) "
              "and on(cluster, kind) lifeboat_drill_period_seconds > 0", "0m",
              "No {{ $labels.kind }} drill of {{ $labels.cluster }} passed within its period",
              "The last passed {{ $labels.kind }} restore drill of cluster {{ $labels.cluster }} "
              "finished {{ $value | humanizeDuration }} ago, longer than its schedule's period "
              f"plus {human_seconds(DRILL_GRACE_SECONDS)}.", "drill_overdue"),
        _rule("LifeboatDrillFailed", "warning", "lifeboat_drill_last_passed == 0", "0m",
              "The last {{ $labels.kind }} drill of {{ $labels.cluster }} failed",
              "The newest {{ $labels.kind }} restore drill of cluster {{ $labels.cluster }} failed "
              "its checks: a restore may not give back what was written.", "drill_failed"),
    ]


def build_rules() -> tuple[Rule, ...]:
    """Every alert rule, with thresholds read from :mod:`collectors.metrics` now."""
    rules = (*_backup_rules(), *_wal_rules(), *_replication_rules(), *_objective_rules(),
             *_copy_rules(), *_availability_rules(), *_drill_rules())
    names = [r.name for r in rules]
    if len(set(names)) != len(names):
        raise ValueError("alert rule names must be unique")
    return rules


RULES: tuple[Rule, ...] = build_rules()


def _dump(data: object) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=10_000,
                          allow_unicode=True)


def render_rules(runbook_base: str = DEFAULT_RUNBOOK_BASE, rules: tuple[Rule, ...] = RULES) -> str:
    """The Prometheus rules file (one group, ``lifeboat``) as YAML."""
    entries = [{
        "alert": r.name,
        "expr": r.expr,
        "for": r.for_,
        "labels": {"severity": r.severity, "cause": r.cause},
        "annotations": {"summary": r.summary, "description": r.description,
                        "runbook_url": f"{runbook_base}#{r.anchor}"},
    } for r in rules]
    header = "# Lifeboat alert rules, generated by alerts.rules.render_rules: edit the code, not this.\n"
    return header + _dump({"groups": [{"name": GROUP, "rules": entries}]})


INHIBIT_RULE = {
    "source_matchers": ['severity="critical"'],
    "target_matchers": ['severity="warning"'],
    "equal": ["cause", "cluster", "type", "kind", "replica"],  # absent on both: equal
}


def render_alertmanager() -> str:
    """An Alertmanager configuration: one placeholder receiver (add integrations, or child
    routes by severity, to it) and the inhibition of warnings by criticals of one cause."""
    config = {
        "route": {"receiver": "lifeboat", "group_by": ["alertname", "cluster"],
                  "group_wait": "30s", "group_interval": "5m", "repeat_interval": "4h"},
        "receivers": [{"name": "lifeboat"}],
        "inhibit_rules": [INHIBIT_RULE],
    }
    header = "# Lifeboat Alertmanager skeleton, generated by alerts.rules.render_alertmanager.\n"
    return header + _dump(config)
