"""The PromQL of each alert signal (:data:`engine.vocabulary.ALERT_SIGNALS`), and the words
its alerts say by default.

A rule of the configuration (``[alerts.rules.<name>]``) names a ``signal`` with a
``threshold`` in the signal's unit (a ``window`` for signals that count events, ``match``
label matchers added to the selectors of the watched metric); :func:`expr_of` renders the
expression Prometheus evaluates. Prometheus does the evaluation: nothing here
re-implements PromQL.

How thresholds are compared:

- counts over a window (``backup_failures``, ``wal_archive_failures``, ``data_loss_events``)
  compare ``increase(...)`` with ``threshold - 0.5``: counts are whole numbers, but
  increase() extrapolates, so one failure can read 0.98 and none can read a hair above 0;
- ``recovery_over_sla``'s threshold is the SLA: it must be a bucket of
  ``lifeboat_recovery_duration_seconds`` (recoveries slower than it are counted from the
  buckets), and the alert fires when one recovery in the window was slower;
- ``rpo_breach``/``rto_at_risk`` compare the exposure (the expected RTO) with threshold x
  the cluster's objective, ``drill_slower_than_rto`` the newest drill's duration with
  threshold x the cluster's RTO objective;
- ``drill_overdue``'s threshold is the grace after the schedule's period;
- the others compare the metric's value with the threshold (``backup_success_rate`` fires
  below it, the rest above; ``drill_failed_checks`` and ``below_replication`` at it or above).

Summaries and descriptions (the defaults here, or a rule's own) may say ``{threshold}``,
``{window}``, ``{for}`` and ``{severity}`` (written for humans: 5m, 2d, 95%) and ``{times}``
(empty for a factor of 1, else "1.5 times "); Prometheus templates (``{{ $labels.cluster }}``,
``{{ $value }}``) are Prometheus's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client.utils import floatToGoString

from collectors.metrics import metric
from engine.config.alerting import AlertRule
from engine.errors import ConfigError
from engine.vocabulary import ALERT_SIGNALS, SIGNAL_METRICS

COUNT = '{{ $value | printf "%.0f" }}'  # increase() extrapolates: 1.02 failures reads as 1
HISTOGRAM = "lifeboat_recovery_duration_seconds"


def num(value: float) -> str:
    """A number as PromQL writes it: 0.95, 180, 172800."""
    return format(value, ".15g")


def human_seconds(seconds: float) -> str:
    """A duration as Prometheus and humans write it: 180 -> '3m', 86400 -> '24h', 172800 -> '2d',
    90 -> '90s', 0.5 -> '500ms' (also a valid PromQL range and ``for``)."""
    if seconds == 0:
        return "0s"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= max(size, 2 * 86400 if unit == "d" else 0) and seconds % size == 0:  # 24h, 2d
            return f"{int(seconds // size)}{unit}"
    return f"{round(seconds * 1000)}ms"  # Prometheus takes whole milliseconds


def human(value: float | None, unit: str) -> str | None:
    """A threshold written for humans in its unit: 5m, 95%, 1, 1.5x; None without one."""
    if value is None or unit == "none":
        return None
    if unit == "seconds":
        return human_seconds(value)
    if unit == "ratio":
        return f"{num(round(value * 100, 10))}%"
    if unit == "factor":
        return f"{num(value)}x"
    return num(value)


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


@dataclass(frozen=True)
class Params:
    """What a signal's expression is rendered with."""

    rule: str  # the rule's name (for errors)
    threshold: float
    window: str  # a PromQL range ('24h'), '' for signals without one
    match: dict[str, str]

    def sel(self, name: str, *fixed: str) -> str:
        """``name{fixed..., match...}``: a selector of the watched metric with the rule's
        label matchers."""
        matchers = [*fixed, *(f"{label}={_quote(value)}" for label, value in sorted(self.match.items()))]
        return name + ("{" + ", ".join(matchers) + "}" if matchers else "")


def _times(threshold: float, objective: str) -> str:
    """threshold x an objective metric (just the metric for a factor of 1)."""
    return objective if threshold == 1 else f"({num(threshold)} * {objective})"


def _above(name: str) -> Callable[[Params], str]:
    return lambda p: f"{p.sel(name)} > {num(p.threshold)}"


def _count(name: str, *fixed: str) -> Callable[[Params], str]:
    return lambda p: f"increase({p.sel(name, *fixed)}[{p.window}]) > {num(p.threshold - 0.5)}"


def _unless_succeeded_since(count: Callable[[Params], str]) -> Callable[[Params], str]:
    """Failures over the window, unless a backup of that type succeeded after the newest
    failure: the retried backup clears the alert, as a DBA expects."""
    return lambda p: (f"{count(p)} unless on(cluster, type) "
                      "(lifeboat_backup_last_success_timestamp_seconds > on(cluster, type) "
                      "lifeboat_backup_last_failure_timestamp_seconds)")


def _recovery_over_sla(p: Params) -> str:
    buckets = metric(HISTOGRAM).buckets
    if p.threshold not in buckets:
        raise ConfigError(
            f"alerts.rules.{p.rule}.threshold: {human_seconds(p.threshold)} is not a bucket of {HISTOGRAM} "
            f"(buckets: {', '.join(human_seconds(b) for b in buckets)}); recoveries slower than the SLA "
            "are counted from the buckets")
    le = floatToGoString(p.threshold)  # as prometheus-client exposes it: 900.0 -> "900.0"
    # Each increase() extrapolates on its own, so two equal counts can differ by a hair;
    # counts of recoveries are whole numbers, so a real slow one is >= 1 and noise < 0.5.
    return (f"increase({p.sel(HISTOGRAM + '_count')}[{p.window}]) - ignoring(le) "
            f"increase({p.sel(HISTOGRAM + '_bucket', f'le={_quote(le)}')}[{p.window}]) > 0.5")


def _data_loss(p: Params) -> str:
    # The alert's own `cause` label would hide the event's: it is kept as loss_cause.
    return ('label_replace(sum by (cluster, cause, service) '
            f'(increase({p.sel("lifeboat_data_loss_events_total")}[{p.window}])), '
            f'"loss_cause", "$1", "cause", "(.*)") > {num(p.threshold - 0.5)}')


def _cluster_absent(p: Params) -> str:
    up = p.sel("lifeboat_up")
    # The whole-exporter case is metrics_absent's: this one stays silent then.
    return (f"(group by (cluster) (max_over_time({up}[1d])) unless group by (cluster) ({up}))"
            " and on() group(lifeboat_up)")


def _drill_overdue(p: Params) -> str:
    return (f"time() - {p.sel('lifeboat_drill_last_success_timestamp_seconds')} > on(cluster, kind) "
            f"(lifeboat_drill_period_seconds + {num(p.threshold)}) "
            "and on(cluster, kind) lifeboat_drill_period_seconds > 0")


@dataclass(frozen=True)
class Signal:
    """How a signal is computed and what its alerts say by default."""

    expr: Callable[[Params], str]
    summary: str
    description: str


SIGNALS: dict[str, Signal] = {
    "backup_failures": Signal(
        _unless_succeeded_since(_count("lifeboat_backups_total", 'result="failed"')),
        "A backup of {{ $labels.cluster }} failed",
        COUNT + " {{ $labels.type }} backup(s) of cluster {{ $labels.cluster }} failed in the last "
        "{window} ({severity} at {threshold} or more)."),
    "backup_success_rate": Signal(
        lambda p: f"{p.sel('lifeboat_backup_success_ratio')} < {num(p.threshold)}",
        "Backup success rate of {{ $labels.cluster }} below {threshold}",
        "{{ $labels.type }} backups of cluster {{ $labels.cluster }} succeeded "
        "{{ $value | humanizePercentage }} of the time over the success window ({severity} below "
        "{threshold})."),
    "backup_age": Signal(
        lambda p: (f"time() - max by (cluster) ({p.sel('lifeboat_backup_last_success_timestamp_seconds')}) "
                   f"> {num(p.threshold)}"),
        "No backup of {{ $labels.cluster }} succeeded in {threshold}",
        "The newest backup of cluster {{ $labels.cluster }} (of any type) finished "
        "{{ $value | humanizeDuration }} ago ({severity} above {threshold})."),
    "wal_archive_lag": Signal(
        _above("lifeboat_wal_archive_lag_seconds"),
        "WAL archiving of {{ $labels.cluster }} is over {threshold} behind",
        "The oldest completed WAL segment of cluster {{ $labels.cluster }} has waited "
        "{{ $value | humanizeDuration }} to be archived ({severity} above {threshold})."),
    "wal_archive_failures": Signal(
        _count("lifeboat_wal_archive_failures_total"),
        "archive_command fails on {{ $labels.cluster }}",
        "archive_command failed " + COUNT + " time(s) on cluster {{ $labels.cluster }} in the last "
        "{window} ({severity} at {threshold} or more)."),
    "replication_lag": Signal(
        _above("lifeboat_replication_lag_seconds"),
        "Replica {{ $labels.replica }} of {{ $labels.cluster }} is over {threshold} behind",
        "Replica {{ $labels.replica }} ({{ $labels.datacenter }}) of cluster {{ $labels.cluster }} is "
        "{{ $value | humanizeDuration }} behind the primary ({severity} above {threshold})."),
    "data_loss_events": Signal(
        _data_loss,
        "Data loss on {{ $labels.cluster }}: {{ $labels.loss_cause }}",
        COUNT + " data-loss event(s) of cause {{ $labels.loss_cause }} on cluster {{ $labels.cluster }} "
        "in the last {window}."),
    "recovery_over_sla": Signal(
        _recovery_over_sla,
        "A recovery of {{ $labels.cluster }} took over {threshold}",
        COUNT + " {{ $labels.type }} recovery(ies) of cluster {{ $labels.cluster }} in the last {window} "
        "took longer than the {threshold} recovery SLA."),
    "rpo_breach": Signal(
        lambda p: (f"{p.sel('lifeboat_rpo_exposure_seconds')} > on(cluster, class) "
                   f"{_times(p.threshold, 'lifeboat_rpo_objective_seconds')}"),
        "{{ $labels.cluster }} is beyond {times}its RPO objective",
        "Cluster {{ $labels.cluster }} ({{ $labels.class }}) would lose {{ $value | humanizeDuration }} "
        "of committed work now, more than {times}its RPO objective."),
    "rto_at_risk": Signal(
        lambda p: (f"{p.sel('lifeboat_rto_expected_seconds')} > on(cluster, class) "
                   f"{_times(p.threshold, 'lifeboat_rto_objective_seconds')}"),
        "{{ $labels.cluster }} would restore slower than {times}its RTO objective",
        "A restore of cluster {{ $labels.cluster }} ({{ $labels.class }}) to the latest point would take "
        "about {{ $value | humanizeDuration }} now, more than {times}its RTO objective."),
    "copy_lag": Signal(
        _above("lifeboat_copy_lag_seconds"),
        "The {{ $labels.region }} copy of {{ $labels.cluster }} is over {threshold} behind",
        "The copy of cluster {{ $labels.cluster }}'s repository in region {{ $labels.region }} lacks a "
        "backup or WAL file written {{ $value | humanizeDuration }} ago ({severity} above {threshold})."),
    "copy_validation_failed": Signal(
        lambda p: f"{p.sel('lifeboat_copy_validation_ok')} == 0",
        "The {{ $labels.region }} copy of {{ $labels.cluster }} fails its validation",
        "The newest validation of the copy of cluster {{ $labels.cluster }}'s repository in region "
        "{{ $labels.region }} found problems (missing, differing or damaged objects): a restore from "
        "that region may not find what it needs ('lifeboat copy --validate --region "
        "{{ $labels.region }}' names them)."),
    "wal_shipping_delay": Signal(
        lambda p: (f"{p.sel('lifeboat_wal_shipping_delay_seconds')} > on(cluster, region) "
                   f"{_times(p.threshold, 'lifeboat_wal_shipping_max_delay_seconds')}"),
        "WAL reaches the {{ $labels.region }} copy of {{ $labels.cluster }} late",
        "The copy of cluster {{ $labels.cluster }}'s repository in region {{ $labels.region }} lacks "
        "WAL archived {{ $value | humanizeDuration }} ago, more than {times}its max_delay: a restore "
        "from that region would lose that much."),
    "below_replication": Signal(
        lambda p: f"{p.sel('lifeboat_backups_below_replication')} >= {num(p.threshold)}",
        "Backups of {{ $labels.cluster }} lack copies in the {{ $labels.tier }} tier",
        "{{ $value }} backup(s) of cluster {{ $labels.cluster }} are held by fewer storages of the "
        "{{ $labels.tier }} tier than its replication count, for {for}: the agent's tiering job "
        "could not repair them."),
    "streaming_receiver_down": Signal(
        lambda p: f"{p.sel('lifeboat_streaming_receiver_up')} == 0",
        "The streaming WAL receiver of {{ $labels.cluster }} is not connected",
        "Cluster {{ $labels.cluster }} answers but the agent's streaming WAL receiver has not been "
        "streaming from it for {for}: WAL reaches the repository only through archive_command, "
        "so the RPO 0 of streaming does not hold."),
    "postgres_down": Signal(
        lambda p: f"{p.sel('lifeboat_up')} == 0",
        "PostgreSQL of {{ $labels.cluster }} does not answer",
        "The Lifeboat exporter could not reach the PostgreSQL server of cluster {{ $labels.cluster }} "
        "for {for}."),
    "metrics_absent": Signal(
        lambda p: f"absent({p.sel('lifeboat_up')})",
        "Prometheus has no Lifeboat metrics",
        "No lifeboat_up series at all: the Lifeboat exporter is down or not scraped, so backups, WAL "
        "archiving and objectives are unwatched."),
    "cluster_metrics_absent": Signal(
        _cluster_absent,
        "Cluster {{ $labels.cluster }} stopped reporting",
        "Cluster {{ $labels.cluster }} reported Lifeboat metrics in the last day but reports none now: "
        "its backups and WAL archive are unwatched."),
    "drill_overdue": Signal(
        _drill_overdue,
        "No {{ $labels.kind }} drill of {{ $labels.cluster }} passed within its period",
        "The last passed {{ $labels.kind }} restore drill of cluster {{ $labels.cluster }} finished "
        "{{ $value | humanizeDuration }} ago, longer than its schedule's period plus {threshold}."),
    "drill_failed": Signal(
        lambda p: f"{p.sel('lifeboat_drill_last_passed')} == 0",
        "The last {{ $labels.kind }} drill of {{ $labels.cluster }} failed",
        "The newest {{ $labels.kind }} restore drill of cluster {{ $labels.cluster }} failed its checks: "
        "a restore may not give back what was written."),
    "drill_failed_checks": Signal(
        lambda p: f"{p.sel('lifeboat_drill_last_failed_checks')} >= {num(p.threshold)}",
        "Restore validation of {{ $labels.cluster }} failed ({{ $labels.kind }} drill)",
        "The newest {{ $labels.kind }} restore drill of cluster {{ $labels.cluster }} failed "
        + COUNT + " of its validation checks ({severity} at {threshold} or more)."),
    "drill_slower_than_rto": Signal(
        lambda p: (f"{p.sel('lifeboat_drill_last_duration_seconds')} > on(cluster) group_left() "
                   f"{_times(p.threshold, 'lifeboat_rto_objective_seconds')}"),
        "The {{ $labels.kind }} drill of {{ $labels.cluster }} took longer than {times}its RTO objective",
        "The newest {{ $labels.kind }} restore drill of cluster {{ $labels.cluster }} took "
        "{{ $value | humanizeDuration }}, more than {times}the cluster's RTO objective."),
}

assert set(SIGNALS) == set(ALERT_SIGNALS) == set(SIGNAL_METRICS)


def expr_of(name: str, rule: AlertRule) -> str:
    """The PromQL of rule ``name``: its own ``expr``, else its signal's, rendered with its
    threshold, window and matchers. ConfigError when the threshold cannot be used (a
    recovery SLA that is not a bucket)."""
    if rule.expr is not None:
        return rule.expr.strip()
    assert rule.signal is not None
    threshold = float(rule.threshold) if rule.threshold is not None else 0.0
    window = human_seconds(rule.window) if rule.window else ""
    return SIGNALS[rule.signal].expr(Params(name, threshold, window, dict(rule.match)))


def threshold_text(rule: AlertRule) -> str | None:
    """The rule's threshold written for humans (5m, 95%, 1, 1.5x), None without one."""
    if rule.signal is None or rule.threshold is None:
        return None
    return human(float(rule.threshold), rule.unit)


def fill(text: str, rule: AlertRule) -> str:
    """``text`` with the rule's ``{threshold}``, ``{window}``, ``{for}``, ``{severity}`` and
    ``{times}`` written in."""
    threshold = float(rule.threshold) if isinstance(rule.threshold, int | float) else None
    times = "" if threshold in (None, 1) or rule.unit != "factor" else f"{num(threshold or 0)} times "
    values = {"threshold": threshold_text(rule) or "", "window": human_seconds(rule.window) if rule.window
              else "", "for": human_seconds(rule.for_), "severity": rule.severity, "times": times}
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return text


def texts_of(rule: AlertRule) -> tuple[str, str]:
    """The rule's summary and description: its own, else its signal's defaults (filled in)."""
    default = SIGNALS[rule.signal] if rule.signal else None
    summary = rule.summary or (default.summary if default else "{{ $labels.alertname }} is firing")
    description = rule.description or (default.description if default else
                                       "The expression of this rule holds: value {{ $value }}.")
    return fill(summary, rule), fill(description, rule)
