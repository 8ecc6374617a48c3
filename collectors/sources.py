"""Reading each part's state into a :class:`Snapshot`: the PostgreSQL server (archiver,
WAL, replicas), the catalog (jobs, drills, data-loss events, objectives), the repository
(backups, sizes) and the host. Each function does a bounded amount of work and raises
on failure; the refresher (:mod:`collectors.exporter`) decides what a failure exports."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from collectors.host import HostMonitor
from collectors.metrics import (
    FIRING_STATES,
    JOB_RESULTS,
    NOTIFICATION_OUTCOMES,
    RECOVERY_TYPES,
    REMEDIATION_RESULTS,
    SIZE_CLASSES,
    size_class,
)
from collectors.snapshot import Snapshot
from engine.catalog import data_loss
from engine.catalog.store import FAILED, FINAL_STATES, RUNNING, SUCCEEDED, Catalog, DrillRecord
from engine.jobs import BYTE_PROGRESS_KINDS, PARAMS
from engine.vocabulary import BACKUP_TYPES, DRILL_KINDS, FIRST_TIER, TARGETS_WITHOUT_VALUE

if TYPE_CHECKING:
    from engine.config.schema import Config
    from engine.repository.storage.base import Storage

HISTORY_LIMIT = 1_000_000  # rows of job history read per refresh, at most


# PostgreSQL -------------------------------------------------------------------------------

def postgres(snapshot: Snapshot, config: Config, cluster: str, timeout: float) -> str | None:
    """The server's archiver, WAL directory and replicas; why not, when it did not answer."""
    from engine.errors import PostgresError
    from engine.postgres import connection as pg

    settings = config.clusters[cluster]
    try:
        with pg.connect(pg.endpoint_of(settings), cluster, timeout=timeout,
                        statement_timeout=timeout) as conn:
            archiver = pg.row(conn, """
                SELECT archived_count, failed_count,
                       coalesce(extract(epoch FROM last_archived_time), 0), last_archived_wal,
                       CASE WHEN pg_is_in_recovery() THEN NULL
                            ELSE pg_walfile_name(pg_current_wal_lsn()) END,
                       pg_size_bytes(current_setting('wal_segment_size'))
                FROM pg_stat_archiver""")
            ready = pg.row(conn, """
                SELECT count(*), coalesce(extract(epoch FROM now() - min(modification)), 0)
                FROM pg_ls_archive_statusdir() WHERE right(name, 6) = '.ready'""")
            wal_bytes = pg.value(conn, "SELECT coalesce(sum(size), 0) FROM pg_ls_waldir()")
            replicas = conn.execute("""
                SELECT application_name, state, coalesce(sync_state, ''),
                       pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn()
                                            ELSE pg_current_wal_lsn() END,
                                       coalesce(replay_lsn, flush_lsn, write_lsn, sent_lsn)),
                       extract(epoch FROM coalesce(replay_lag, flush_lag, write_lag)),
                       extract(epoch FROM now() - reply_time)
                FROM pg_stat_replication""").fetchall()
    except PostgresError as exc:
        snapshot.set("lifeboat_up", 0, cluster=cluster)
        return str(exc)
    snapshot.set("lifeboat_up", 1, cluster=cluster)
    archived, failed, last_archived_at, last_wal, current_wal, segment_size = archiver
    snapshot.set("lifeboat_wal_archived_total", archived, cluster=cluster)
    snapshot.set("lifeboat_wal_archive_failures_total", failed, cluster=cluster)
    snapshot.set("lifeboat_wal_last_archived_timestamp_seconds", float(last_archived_at), cluster=cluster)
    ready_count, oldest_ready_age = int(ready[0]), float(ready[1])
    snapshot.set("lifeboat_wal_ready_files", ready_count, cluster=cluster)
    snapshot.set("lifeboat_wal_archive_lag_segments",
                 segments_behind(ready_count, last_wal, current_wal, int(segment_size)), cluster=cluster)
    snapshot.set("lifeboat_wal_archive_lag_seconds", oldest_ready_age if ready_count else 0.0,
                 cluster=cluster)
    snapshot.set("lifeboat_wal_directory_bytes", int(wal_bytes), cluster=cluster)
    for name, state, sync_state, lag_bytes, lag, since_reply in replicas:
        lag_bytes = max(0.0, float(lag_bytes or 0))
        if lag is None:  # idle replicas report no lag: caught up, or silent since reply_time
            lag = 0.0 if lag_bytes == 0 else float(since_reply or 0)
        labels = {"cluster": cluster, "replica": name or "unnamed",
                  "datacenter": _datacenter(config, cluster, name)}
        snapshot.set("lifeboat_replication_lag_seconds", float(lag), **labels)
        snapshot.set("lifeboat_replication_lag_bytes", lag_bytes, **labels)
        snapshot.set("lifeboat_replica_info", 1, **labels, state=state or "", sync_state=sync_state)
    streaming = config.clusters[cluster].streaming
    if streaming.enabled:
        connected = any(name == streaming.application_name and state == "streaming"
                        for name, state, *_ in replicas)
        snapshot.set("lifeboat_streaming_receiver_up", int(connected), cluster=cluster)
    return None


def segments_behind(ready: int, last_archived: str | None, current: str | None,
                    segment_size: int) -> int:
    """Completed segments not archived: the ``.ready`` count, or pg_stat_archiver's gap from
    the last archived segment to the one being written, whichever is larger (the gap
    counts on the same timeline only; history and partial files have no place in it)."""
    from engine.wal.names import is_segment, parse_segment

    if not (last_archived and current and is_segment(last_archived) and is_segment(current)):
        return ready
    done, writing = parse_segment(last_archived, segment_size), parse_segment(current, segment_size)
    if done.timeline != writing.timeline:
        return ready
    return max(ready, writing.segno - done.segno - 1)


def _datacenter(config: Config, cluster: str, replica: str) -> str:
    settings = config.clusters[cluster]
    if settings.streaming.enabled and replica == settings.streaming.application_name:
        return settings.datacenter  # the agent's own receiver runs beside the server
    return settings.replica_datacenters.get(replica, "unknown")


# catalog ----------------------------------------------------------------------------------

def catalog(snapshot: Snapshot, config: Config, catalog: Catalog, now: float) -> int:
    """Jobs, schedules, recoveries, data-loss events, drills and objectives; returns how
    many jobs have ended in all (it changes whenever one ends)."""
    clusters = list(config.clusters)
    drills = {c: catalog.drills(c, limit=HISTORY_LIMIT) for c in clusters}  # newest first
    ended = _backups(snapshot, config, catalog, clusters, now)
    _running(snapshot, catalog, clusters)
    _recoveries(snapshot, config, catalog, drills)
    _data_loss(snapshot, config, catalog, clusters)
    for cluster in clusters:
        _drills(snapshot, cluster, drills[cluster])
        _objectives(snapshot, config, catalog, cluster, now)
    copies(snapshot, config, catalog, now)
    alerting(snapshot, config, catalog)
    return ended


def copies(snapshot: Snapshot, config: Config, catalog: Catalog, now: float) -> None:
    """What the agent measured of each region's copy (the catalog's ``copy_state``): the newest
    validation, the bytes copied and the rate achieved, the WAL shipping delay; and each copy's
    limits. A shipping delay not measured lately is NaN (no agent ships: copy lag says more)."""
    if not config.repository.copies:
        return
    states = catalog.copy_states()
    for cluster in config.clusters:
        for region, settings in config.repository.copies.items():
            labels = {"cluster": cluster, "region": region}
            snapshot.set("lifeboat_copy_bandwidth_limit_bytes_per_second", settings.bandwidth_limit or 0,
                         **labels)
            snapshot.set("lifeboat_wal_shipping_max_delay_seconds", settings.max_delay, **labels)
            at, validation = states.get((cluster, region, "validation"), (0.0, None))
            snapshot.set("lifeboat_copy_validation_last_timestamp_seconds", at, **labels)
            snapshot.set("lifeboat_copy_validation_ok",
                         None if validation is None else int(bool(validation.get("ok"))), **labels)
            snapshot.set("lifeboat_copy_validation_problems",
                         None if validation is None else validation.get("problems", 0), **labels)
            _at, transfer = states.get((cluster, region, "transfer"), (0.0, {}))
            snapshot.set("lifeboat_copy_bytes_total", transfer.get("bytes_total") or 0, **labels)
            snapshot.set("lifeboat_copy_throughput_bytes_per_second", transfer.get("rate"), **labels)
            at, shipping = states.get((cluster, region, "shipping"), (0.0, {}))
            fresh = now - at <= 3 * (settings.wal_interval or settings.interval) + 60
            snapshot.set("lifeboat_wal_shipping_delay_seconds",
                         shipping.get("delay") if fresh else None, **labels)


def alerting(snapshot: Snapshot, config: Config, catalog: Catalog) -> None:
    """Open alerts by rule and state, notifications by channel and outcome, remediation
    attempts by action and result. Counters of the configured channels and of the actions
    of rules that remediate start at 0, so increase() sees their first event."""
    firing: Counter[tuple[str, str, str, str]] = Counter()
    for alert in catalog.alerts.open_alerts():
        if alert.state in FIRING_STATES:
            firing[(alert.cluster or "", alert.rule, alert.severity, alert.state)] += 1
    for (cluster, rule, severity, state), count in sorted(firing.items()):
        snapshot.set("lifeboat_alerts_firing", count, cluster=cluster, rule=rule, severity=severity,
                     state=state)
    settings = config.alerts
    for channel in settings.configured_channels():
        for outcome in NOTIFICATION_OUTCOMES:
            snapshot.set("lifeboat_alert_notifications_total", 0, channel=channel, outcome=outcome)
    for channel, outcome, count in catalog.alerts.notification_counts():
        snapshot.set("lifeboat_alert_notifications_total", count, channel=channel, outcome=outcome)
    actions = {action for rule in settings.rules.values()
               if rule.enabled and rule.auto_remediation and rule.auto_remediation.enabled
               for action in rule.auto_remediation.actions}
    for action in sorted(actions):
        for result in REMEDIATION_RESULTS:
            snapshot.set("lifeboat_remediation_attempts_total", 0, action=action, result=result)
    for action, result, count in catalog.alerts.attempt_counts():
        snapshot.set("lifeboat_remediation_attempts_total", count, action=action, result=result)


def _backups(snapshot: Snapshot, config: Config, catalog: Catalog, clusters: list[str],
             now: float) -> int:
    """Backup counters, success ratios and schedule attempts; the count of ended jobs."""
    totals: Counter[tuple[str, str, str]] = Counter()
    window: Counter[tuple[str, str, str]] = Counter()
    schedules: Counter[tuple[str, str, str]] = Counter()
    ended = 0
    for cluster, kind, backup_type, schedule, state, count, recent in catalog.job_counts(
            now - config.exporter.success_rate_window):
        ended += count
        if cluster not in config.clusters:
            continue
        if schedule:
            schedules[(cluster, schedule, state)] += count
        if kind == "backup":
            totals[(cluster, backup_type or "full", state)] += count
            window[(cluster, backup_type or "full", state)] += recent
    failed_at = _last_failures(catalog)
    for cluster in clusters:
        for kind in BACKUP_TYPES:
            snapshot.set("lifeboat_backup_last_failure_timestamp_seconds",
                         failed_at.get((cluster, kind), 0.0), cluster=cluster, type=kind)
            for result in JOB_RESULTS:
                snapshot.set("lifeboat_backups_total", totals[(cluster, kind, result)],
                             cluster=cluster, type=kind, result=result)
            attempts = sum(window[(cluster, kind, r)] for r in JOB_RESULTS)
            ratio = window[(cluster, kind, SUCCEEDED)] / attempts if attempts else None
            snapshot.set("lifeboat_backup_success_ratio", ratio, cluster=cluster, type=kind)
    from engine.agent.scheduler import entries

    for entry in entries(config):
        for result in JOB_RESULTS:
            snapshot.set("lifeboat_schedule_attempts_total",
                         schedules[(entry.cluster, entry.name, result)],
                         cluster=entry.cluster, schedule=entry.name, result=result)
    return ended


def _last_failures(catalog: Catalog) -> dict[tuple[str, str], float]:
    """(cluster, type) -> when its newest failed backup ended: a later success clears the
    backup_failure alert (``backup_failures`` compares the two)."""
    found: dict[tuple[str, str], float] = {}
    for job in catalog.jobs(states=(FAILED,), limit=1000):
        if job.kind == "backup" and job.finished_at is not None:
            key = (job.cluster, str(job.params.get("type") or "full"))
            found[key] = max(found.get(key, 0.0), job.finished_at)
    return found


def _running(snapshot: Snapshot, catalog: Catalog, clusters: list[str]) -> None:
    running = catalog.jobs(states=(RUNNING,), limit=10_000)
    progress = catalog.byte_progress()
    for cluster in clusters:
        for kind in PARAMS:
            jobs = [j for j in running if j.cluster == cluster and j.kind == kind]
            snapshot.set("lifeboat_jobs_running", len(jobs), cluster=cluster, kind=kind)
            if kind in BYTE_PROGRESS_KINDS:
                done = sum(progress.get(j.id, (0, 0))[0] for j in jobs)
                total = sum(progress.get(j.id, (0, 0))[1] for j in jobs)
                snapshot.set("lifeboat_job_progress_bytes", done, cluster=cluster, kind=kind)
                snapshot.set("lifeboat_job_size_bytes", total, cluster=cluster, kind=kind)


def _recoveries(snapshot: Snapshot, config: Config, catalog: Catalog,
                drills: dict[str, list[DrillRecord]]) -> None:
    """The recovery-time histogram (restores and drills) and the newest PITR target gaps."""
    observed: dict[tuple[str, str, str], list[float]] = {}
    gap_seen: set[tuple[str, str]] = set()
    for job in catalog.jobs(kind="restore", states=FINAL_STATES, limit=HISTORY_LIMIT):
        if job.cluster not in config.clusters or not job.result:
            continue
        for unit in ("seconds", "bytes"):
            gap = job.result.get(f"target_gap_{unit}")
            if gap is not None and (job.cluster, unit) not in gap_seen:
                gap_seen.add((job.cluster, unit))  # newest first: the first one found is the newest
                snapshot.set(f"lifeboat_restore_target_gap_{unit}", gap, cluster=job.cluster)
        if job.state != SUCCEEDED or job.result.get("seconds") is None:
            continue
        kind = "full" if job.result.get("target") in (None, *TARGETS_WITHOUT_VALUE) else "pitr"
        size = size_class(job.result.get("backup_bytes") or job.result.get("bytes") or 0)
        observed.setdefault((job.cluster, kind, size), []).append(float(job.result["seconds"]))
    for cluster, records in drills.items():
        for drill in records:
            if drill.rto_seconds is None:
                continue
            size = size_class((drill.result.get("timing") or {}).get("restore_bytes") or 0)
            observed.setdefault((cluster, f"drill_{drill.kind}", size), []).append(drill.rto_seconds)
    for cluster in drills:  # every series exists from the start, at 0 (so increase() sees a first one)
        for kind in RECOVERY_TYPES:
            for size, _bound in SIZE_CLASSES:
                observed.setdefault((cluster, kind, size), [])
    for (cluster, kind, size), seconds in observed.items():
        snapshot.histogram("lifeboat_recovery_duration_seconds", seconds, cluster=cluster, type=kind,
                           size_class=size, **{"class": config.clusters[cluster].recovery_class})


def _data_loss(snapshot: Snapshot, config: Config, catalog: Catalog, clusters: list[str]) -> None:
    for cluster in clusters:
        for cause, severity in data_loss.CAUSES.items():
            snapshot.set("lifeboat_data_loss_events_total", 0, cluster=cluster, cause=cause,
                         severity=severity, service=config.service_of(cluster))
    for event in catalog.events(kind=data_loss.EVENT_KIND, limit=HISTORY_LIMIT):
        data = event.data or {}
        if event.cluster not in config.clusters or data.get("cause") not in data_loss.CAUSES:
            continue
        snapshot.add("lifeboat_data_loss_events_total", 1, cluster=event.cluster, cause=data["cause"],
                     severity=data.get("severity", "critical"),
                     service=data.get("service", config.service_of(event.cluster)))


def _drills(snapshot: Snapshot, cluster: str, drills: list[DrillRecord]) -> None:
    for kind in DRILL_KINDS:
        of_kind = [d for d in drills if d.kind == kind]
        passed = [d for d in of_kind if d.passed]
        labels = {"cluster": cluster, "kind": kind}
        snapshot.set("lifeboat_drills_total", len(passed), **labels, result="passed")
        snapshot.set("lifeboat_drills_total", len(of_kind) - len(passed), **labels, result="failed")
        snapshot.set("lifeboat_drill_last_success_timestamp_seconds",
                     passed[0].finished_at if passed else 0, **labels)
        if of_kind:
            newest = of_kind[0]
            failed_checks = [c for c in newest.result.get("checks", []) if not c.get("passed")]
            snapshot.set("lifeboat_drill_last_passed", int(newest.passed), **labels)
            snapshot.set("lifeboat_drill_last_duration_seconds",
                         newest.finished_at - newest.started_at, **labels)
            snapshot.set("lifeboat_drill_last_failed_checks", len(failed_checks), **labels)


def _objectives(snapshot: Snapshot, config: Config, catalog: Catalog, cluster: str, now: float) -> None:
    settings = config.clusters[cluster]
    labels = {"cluster": cluster, "class": settings.recovery_class}
    snapshot.set("lifeboat_rpo_objective_seconds", settings.rpo_objective, **labels)
    snapshot.set("lifeboat_rto_objective_seconds", settings.rto_objective, **labels)
    record = catalog.latest_objectives(cluster)
    stale = record is None or now - record.at > 4 * config.agent.objectives_interval + 60
    snapshot.set("lifeboat_rpo_exposure_seconds", None if stale else record.rpo_exposure, **labels)
    snapshot.set("lifeboat_rto_expected_seconds", None if stale else record.rto_expected, **labels)
    unsafe = None if stale else record.details.get("unsafe_bytes")
    snapshot.set("lifeboat_wal_unsafe_bytes", unsafe, cluster=cluster)


def drill_periods(snapshot: Snapshot, config: Config, now: float) -> None:
    """The longest gap between two scheduled drills of each kind, over the next year."""
    from engine.agent.scheduler import entries, fires_between

    periods: dict[tuple[str, str], float] = {}
    for entry in entries(config):
        if entry.kind != "drill":
            continue
        fires = [now, *fires_between(entry.cron, entry.timezone, now, now + 400 * 86400)]
        gap = max((b - a for a, b in pairwise(fires[1:])), default=0.0)
        key = (entry.cluster, str(entry.params.get("kind", "full")))
        if gap:  # several schedules of one kind: the most frequent sets the period
            periods[key] = min(periods.get(key, gap), gap)
    for cluster in config.clusters:
        for kind in DRILL_KINDS:
            snapshot.set("lifeboat_drill_period_seconds", periods.get((cluster, kind), 0.0),
                         cluster=cluster, kind=kind)


# repository -------------------------------------------------------------------------------

def repository(snapshot: Snapshot, config: Config, storage: Storage, cluster: str) -> None:
    """Backups in the repository (the source of truth for what exists) and its sizes."""
    from engine.repository import layout
    from engine.repository.info import cluster_report

    tiers = _tiers(config, storage)
    report = cluster_report(storage, cluster, with_archive=False, tiers=tiers)
    newest: dict[str, Any] = {}
    counts: Counter[str] = Counter()
    for backup in report.backups:  # oldest first
        counts[backup.type] += 1
        newest[backup.type] = backup
    for kind in BACKUP_TYPES:
        labels = {"cluster": cluster, "type": kind}
        snapshot.set("lifeboat_repository_backups", counts[kind], **labels)
        backup = newest.get(kind)
        if backup is None:
            snapshot.set("lifeboat_backup_last_success_timestamp_seconds", 0, **labels)
            continue
        started, finished = _epoch(backup.started_at), _epoch(backup.finished_at)
        snapshot.set("lifeboat_backup_last_success_timestamp_seconds", finished, **labels)
        snapshot.set("lifeboat_backup_last_duration_seconds", finished - started, **labels)
        snapshot.set("lifeboat_backup_last_size_bytes", backup.size_bytes, **labels)
        snapshot.set("lifeboat_backup_info", 1, **labels, backup_id=backup.id,
                     timeline=str(backup.timeline))
    first = _epoch(report.backups[0].finished_at) if report.backups else 0.0
    snapshot.set("lifeboat_recovery_window_start_timestamp_seconds", first, cluster=cluster)
    if report.backups:
        last = report.backups[-1]
        new_bytes = last.size_bytes - last.reused_bytes
        snapshot.set("lifeboat_compression_ratio",
                     new_bytes / last.stored_bytes if last.stored_bytes else None, cluster=cluster)
    if tiers is None:  # the repository is the one tier: every backup in it, one copy each
        snapshot.set("lifeboat_repository_bytes", storage.usage(layout.cluster_prefix(cluster)),
                     cluster=cluster, tier=FIRST_TIER, region=config.repository.region)
        snapshot.set("lifeboat_tier_backups", len(report.backups), cluster=cluster, tier=FIRST_TIER)
        snapshot.set("lifeboat_backup_copies", 1 if report.backups else None, cluster=cluster,
                     tier=FIRST_TIER)
        snapshot.set("lifeboat_backups_below_replication", 0, cluster=cluster, tier=FIRST_TIER)
    else:
        _tiered(snapshot, config, tiers, report, cluster)
    _copies(snapshot, config, storage, cluster)


_TIERS: dict[tuple[int, int], Any] = {}  # (config, storage) -> its opened tiers


def _tiers(config: Config, storage: Storage) -> Any:
    """The repository's tiers when configured (opened once per configuration and storage)."""
    if not config.repository.tiers.enabled:
        return None
    from engine.repository.tiers import open_tiers

    key = (id(config), id(storage))
    if key not in _TIERS:
        _TIERS[key] = open_tiers(config, storage)
    return _TIERS[key]


def _tiered(snapshot: Snapshot, config: Config, tiers: Any, report: Any, cluster: str) -> None:
    """Real bytes of each tier (the sum over its storages), its backups and their copies."""
    from engine.errors import LifeboatError
    from engine.repository import layout

    for tier in tiers.tiers:
        try:
            size: float | None = sum(s.usage(layout.cluster_prefix(cluster)) for s in tier.storages)
        except (LifeboatError, OSError):
            size = None
        snapshot.set("lifeboat_repository_bytes", size, cluster=cluster, tier=tier.name,
                     region=config.repository.region)
        placed = [p for p in report.placements.values() if p["tier"] == tier.name]
        snapshot.set("lifeboat_tier_backups", len(placed), cluster=cluster, tier=tier.name)
        snapshot.set("lifeboat_backup_copies", min((p["copies"] for p in placed), default=None),
                     cluster=cluster, tier=tier.name)
        snapshot.set("lifeboat_backups_below_replication",
                     sum(1 for p in placed if p["below_replication"]), cluster=cluster, tier=tier.name)


def _copies(snapshot: Snapshot, config: Config, storage: Storage, cluster: str) -> None:
    """Each region's copy: its size and how far it is behind (NaN: it cannot be read)."""
    if not config.repository.copies:
        return
    from engine.errors import LifeboatError
    from engine.repository import layout
    from engine.repository.copies import copy_lag
    from engine.repository.storage import open_storage

    for region, settings in config.repository.copies.items():
        target = open_storage(settings.url)
        try:
            lag: float | None = copy_lag(storage, target, cluster)
            size: float | None = target.usage(layout.cluster_prefix(cluster))
        except (LifeboatError, OSError):
            lag = size = None
        snapshot.set("lifeboat_copy_lag_seconds", lag, cluster=cluster, region=region)
        snapshot.set("lifeboat_repository_bytes", size, cluster=cluster, tier=FIRST_TIER, region=region)


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


# host -------------------------------------------------------------------------------------

def host(snapshot: Snapshot, monitor: HostMonitor) -> None:
    sample = monitor.sample()
    snapshot.set("lifeboat_host_load1", sample.load1)
    for device, share in sample.io_utilization.items():
        snapshot.set("lifeboat_host_io_utilization_ratio", share, device=device)
    for direction, rate in sample.network_bytes_per_second.items():
        snapshot.set("lifeboat_host_network_bytes_per_second", rate, direction=direction)
