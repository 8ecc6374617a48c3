"""Every read the console makes, in one place: the Context (configuration, repository,
catalog) opened once per process (``st.cache_resource``), reads cached for a few seconds
(``st.cache_data(ttl=...)``) so a page renders from memory while the agent works.

Reads return plain data (dicts, lists): the pages only lay them out. Nothing here writes;
work is asked for through :mod:`dashboard.actions`.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import streamlit as st

from engine.context import Context

RECENT_ALERTS = 7 * 86400.0


def config_path() -> str | None:
    """``--config FILE`` among the script's arguments (``lifeboat console`` passes it), else
    ``$LIFEBOAT_CONFIG``, else the default path."""
    args = sys.argv[1:]
    for i, arg in enumerate(args):
        if arg == "--config" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    return os.environ.get("LIFEBOAT_CONFIG")


@st.cache_resource(show_spinner=False)
def _context(path: str | None) -> Context:
    from engine.context import open_context

    return open_context(path)


def context() -> Context:
    return _context(config_path())


def for_cluster(cluster: str) -> Context:
    """A Context for ``cluster`` sharing the process's configuration, storage and catalog
    (the shared one is never bound to a cluster: sessions run side by side)."""
    base = context()
    if cluster not in base.config.clusters:
        from engine.errors import UsageError

        raise UsageError(f"unknown cluster '{cluster}'")
    ctx = Context(base.config, base.config_path, cluster)
    ctx._catalog = base.catalog
    ctx.__dict__["storage"] = base.storage
    ctx.__dict__["tiers"] = base.tiers  # opened once: a tier on S3 has a client to keep
    return ctx


def refresh() -> None:
    """Forget cached reads (after an action, so its effect shows at once)."""
    st.cache_data.clear()


def clusters() -> list[str]:
    return sorted(context().config.clusters)


def plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {k: plain(v) for k, v in asdict(value).items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def parse_iso(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        found = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return found if found.tzinfo else found.replace(tzinfo=UTC)


# the engine's restore planning (engine/restore/plan.py), once it is there -------------------

def planner() -> Any:
    """The engine's restore planner module, or None while it is not installed."""
    try:
        from engine.restore import plan
    except ImportError:
        return None
    return plan


def preview_available() -> bool:
    from engine.jobs import PARAMS

    return "preview" in PARAMS


def regions() -> list[str]:
    """The regions holding a copy of the repository ([repository.copies.REGION])."""
    return sorted(context().config.repository.copies)


@st.cache_data(ttl=30, show_spinner=False)
def recovery_windows(cluster: str, region: str | None = None) -> list[dict[str, Any]] | None:
    """Each timeline's reachable span {timeline, start, end} (datetimes) in the primary
    repository or the copy in ``region``, or None without the planner."""
    plan = planner()
    if plan is None:
        return None
    found = []
    for w in plan.recovery_windows(for_cluster(cluster).in_region(region), cluster):
        start, end = _when(w.start), _when(w.end)
        found.append({"timeline": w.timeline, "start": start, "end": end})
    return found


@st.cache_data(ttl=30, show_spinner=False)
def named_points(cluster: str, region: str | None = None) -> list[dict[str, Any]] | None:
    plan = planner()
    if plan is None:
        return None
    return [{"name": p.name, "time": _when(p.time), "lsn": p.lsn}
            for p in plan.named_points(for_cluster(cluster).in_region(region), cluster)]


def point_in_window(day: Any, clock: Any, start: datetime, end: datetime
                    ) -> tuple[datetime | None, str | None]:
    """The UTC moment a date and a time of day (to the second) name, and None; or None and
    why it cannot be chosen: nothing picked, or outside the window ``start`` .. ``end`` (a
    recovery window: the first and last moment the repository can reach)."""
    if day is None or clock is None:
        return None, "Pick a date and a time."
    at = datetime.combine(day, clock.replace(microsecond=0, tzinfo=None), UTC)
    low, high = start.replace(microsecond=0), end
    if low < start:
        low += timedelta(seconds=1)  # whole seconds only, never before the window opens
    if not low <= at <= high:
        return None, (f"{at:%Y-%m-%d %H:%M:%S} UTC is outside what the repository can reach: pick a time "
                      f"from {low:%Y-%m-%d %H:%M:%S} to {high:%Y-%m-%d %H:%M:%S} UTC.")
    return at, None


def _when(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    return parse_iso(str(value))


# the repository ---------------------------------------------------------------------------

@st.cache_data(ttl=30, show_spinner=False)
def repository(cluster: str) -> dict[str, Any]:
    """The cluster's backups (oldest first) and WAL archive ranges, as ``info`` shows them."""
    from engine.repository.info import cluster_report

    try:
        report = cluster_report(context().storage, cluster, tiers=context().tiers)
    except Exception as exc:  # a repository that cannot be read is shown, not raised
        return {"name": cluster, "status": f"error: {exc}", "backups": [], "archive": []}
    return report.to_json()


@st.cache_data(ttl=30, show_spinner=False)
def backups(cluster: str) -> dict[str, Any]:
    """The cluster's backups only (the Overview's read): no walk of the WAL archive, whose
    listing grows with every segment kept."""
    from engine.repository.info import cluster_report

    try:
        report = cluster_report(context().storage, cluster, with_archive=False, tiers=context().tiers)
    except Exception as exc:  # a repository that cannot be read is shown, not raised
        return {"name": cluster, "status": f"error: {exc}", "backups": [], "archive": []}
    return report.to_json()


# the catalog ------------------------------------------------------------------------------

@st.cache_data(ttl=2, show_spinner=False)
def jobs(cluster: str | None = None, kind: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    found = context().catalog.jobs(cluster, kind=kind, limit=limit)
    return [_job(j) for j in found]


def job(job_id: int) -> dict[str, Any] | None:
    """One job, read now (a progress bar follows it)."""
    found = context().catalog.job(job_id)
    if found is None:
        return None
    data = _job(found)
    progress = context().catalog.byte_progress().get(job_id)
    data["bytes_done"], data["bytes_total"] = progress if progress else (None, None)
    return data


def _job(j: Any) -> dict[str, Any]:
    return j.to_json() | {"created": j.created_at, "started": j.started_at, "finished": j.finished_at}


def job_percent(job: dict[str, Any]) -> int:
    """How far a job is, 0-100: 100 once it succeeded (the agent caps a running job at 99)."""
    return 100 if job["state"] == "succeeded" else max(0, min(100, int(job["progress"] or 0)))


def progress_text(job: dict[str, Any], title: str) -> str:
    """The line over a job's progress bar: state, percent, phase, and bytes while it writes."""
    text = f"{title} job {job['id']}: {job['state']}, {job_percent(job)}%"
    if job["state"] == "running" and job["message"]:
        text += f" — {job['message']}"
        if job.get("bytes_total"):
            text += f" ({job['bytes_done'] / 2**20:,.1f} of {job['bytes_total'] / 2**20:,.1f} MiB)"
    return text


def point_text(point: dict[str, Any] | None, short: bool = False) -> str:
    """A point recovery reached ({lsn, time, timeline, state}) in words."""
    if not point:
        return "-"
    when = parse_iso(str(point["time"])) if point.get("time") else None
    at = f"{when:%Y-%m-%d %H:%M:%S} UTC" if when else "an unknown time"
    if short:
        return at
    return (f"{at}, LSN {point.get('lsn') or '-'} on timeline {point.get('timeline') or '-'}"
            + (f" ({point['state']})" if point.get("state") else ""))


def restore_outcome(result: dict[str, Any]) -> list[tuple[str, str]]:
    """A restore job's result as (label, text) lines: the backup, what was written, the
    point reached, the gap to the target, and the validation of the restored cluster."""
    lines = [("Backup", f"{result.get('backup')}, {result.get('files', 0)} files, "
                        f"{(result.get('bytes') or 0) / 2**20:,.1f} MiB into {result.get('pgdata')}")]
    target = result.get("target")
    lines.append(("Target", f"{target} {result.get('target_value') or ''}".strip()))
    if result.get("reached"):
        lines.append(("Point reached", point_text(result["reached"])))
        if result["reached"].get("stop_message"):
            lines.append(("Recovery stopped", str(result["reached"]["stop_message"])))
        gap_s, gap_b = result.get("target_gap_seconds"), result.get("target_gap_bytes")
        parts = ([f"{gap_s:,.3f} s from the last transaction recovered to the time asked"]
                 if gap_s is not None else []) + (
            [f"{gap_b:,} bytes of WAL short of the target"] if gap_b is not None else [])
        lines.append(("Target gap", "; ".join(parts) or f"not measured for a {target} target"))
    else:
        lines.append(("Point reached", "the server was not started (no recovery yet)"))
    validation = result.get("validation")
    if validation:
        for check in validation.get("checks", []):
            lines.append((f"Validation: {check['name']}",
                          ("passed: " if check["passed"] else "FAILED: ") + str(check["detail"])))
    elif result.get("reached"):
        lines.append(("Validation", "not run"))
    return lines


def job_log(job_id: int, tail: int = 200) -> str | None:
    """The end of the job's log in the agent's state directory, if it is readable."""
    path = context().config.agent.state_dir / "jobs" / f"job-{job_id}.log"
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    return "\n".join(lines[-tail:])


@st.cache_data(ttl=2, show_spinner=False)
def job_events(job_id: int, limit: int = 200) -> list[dict[str, Any]]:
    """What the agent recorded about the job in the catalog (started, ended, why), oldest
    first: readable wherever the console runs, unlike the log file on the agent's host."""
    found = context().catalog.events(job_id=job_id, limit=limit)
    return [{"at": datetime.fromtimestamp(e.at, UTC), "severity": e.severity, "kind": e.kind,
             "message": e.message} for e in reversed(found)]


@st.cache_data(ttl=30, show_spinner=False)
def drills(cluster: str, limit: int = 100) -> list[dict[str, Any]]:
    return [{"id": d.id, "kind": d.kind, "started_at": d.started_at, "finished_at": d.finished_at,
             "passed": d.passed, "rto_seconds": d.rto_seconds, "result": d.result, "report": d.report}
            for d in context().catalog.drills(cluster, limit=limit)]


@st.cache_data(ttl=5, show_spinner=False)
def alerts(since_seconds: float = RECENT_ALERTS) -> list[dict[str, Any]]:
    """Open alerts and those resolved recently, with notifications and remediation attempts
    (notification details are redacted when they are recorded)."""
    book = context().catalog.alerts
    found = []
    for a in book.recent(since=time.time() - since_seconds, limit=500):
        data = a.to_json()
        data["notifications"] = [plain(n) for n in book.notifications(a.id)]
        data["remediation"] = [plain(r) for r in book.attempts(a.id)]
        found.append(data)
    return found


@st.cache_data(ttl=10, show_spinner=False)
def silences() -> list[dict[str, Any]]:
    return [plain(s) for s in context().catalog.alerts.silences(active_at=time.time())]


@st.cache_data(ttl=30, show_spinner=False)
def rules() -> list[str]:
    from alerts.known import known_rules

    return sorted(known_rules(context().config.alerts))


@st.cache_data(ttl=5, show_spinner=False)
def audit(limit: int = 500, actor: str | None = None) -> list[dict[str, Any]]:
    return [e.to_json() for e in context().catalog.audit.entries(actor=actor, limit=limit)]


@st.cache_data(ttl=10, show_spinner=False)
def objectives() -> dict[str, dict[str, Any]]:
    """Each cluster's class, objectives and the agent's latest measurement."""
    ctx = context()
    found = {}
    for cluster in clusters():
        settings = ctx.config.clusters[cluster]
        record = ctx.catalog.latest_objectives(cluster)
        found[cluster] = ({"class": settings.recovery_class} | record.to_json()) if record else {
            "class": settings.recovery_class, "rpo_objective_seconds": settings.rpo_objective,
            "rto_objective_seconds": settings.rto_objective, "rpo_exposure_seconds": None,
            "rto_expected_seconds": None, "measured_at": None}
    return found


def level(measured: float | None, objective: float | None) -> str:
    """green (within 75% of the objective), amber (within it), red (beyond), grey (unknown)."""
    if measured is None or objective is None:
        return "grey"
    if objective == 0:
        return "green" if measured == 0 else "red"
    ratio = measured / objective
    return "green" if ratio <= 0.75 else "amber" if ratio <= 1.0 else "red"


# live figures: the same reads the exporter makes ------------------------------------------

@st.cache_data(ttl=15, show_spinner=False)
def server(cluster: str) -> dict[str, Any]:
    """The server's WAL archive and replication lag, read as the exporter reads them."""
    from collectors import sources
    from collectors.snapshot import Snapshot

    snapshot = Snapshot()
    problem = sources.postgres(snapshot, context().config, cluster, timeout=2.0)
    values = snapshot.values

    def one(name: str) -> float | None:
        series = values.get(name, {})
        return next(iter(series.values()), None)

    lags = values.get("lifeboat_replication_lag_seconds", {})
    return {"up": problem is None, "problem": problem,
            "archive_lag_seconds": one("lifeboat_wal_archive_lag_seconds"),
            "archive_lag_segments": one("lifeboat_wal_archive_lag_segments"),
            "replicas": len(lags), "replication_lag_seconds": max(lags.values()) if lags else None}


@st.cache_data(ttl=30, show_spinner=False)
def catalog_figures() -> dict[str, dict[tuple[str, ...], float]]:
    """The catalog's own figures (what the exporter derives from it), for when Prometheus
    cannot be read."""
    from collectors import sources
    from collectors.snapshot import Snapshot

    ctx = context()
    snapshot = Snapshot()
    sources.catalog(snapshot, ctx.config, ctx.catalog, time.time())
    found = dict(snapshot.values)
    for name, series in snapshot.histograms.items():
        for labels, hist in series.items():
            found.setdefault(f"{name}_count", {})[labels] = float(hist.count)
            found.setdefault(f"{name}_sum", {})[labels] = hist.total
    return found


def prometheus_url() -> str:
    config = context().config
    return config.console.prometheus_url or config.alerts.prometheus_url


class PrometheusDown(Exception):
    pass


@st.cache_data(ttl=30, show_spinner=False)
def prometheus_range(query: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
    """A range query through prometheus-api-client: [{labels, times, values}];
    PrometheusDown when Prometheus cannot answer."""
    from prometheus_api_client import PrometheusConnect
    from urllib3.util.retry import Retry

    url = prometheus_url()
    try:
        client = PrometheusConnect(url=url.rstrip("/"), disable_ssl=False, retry=Retry(total=0),
                                   timeout=context().config.alerts.query_timeout)
        result = client.custom_query_range(query, datetime.fromtimestamp(start, UTC),
                                           datetime.fromtimestamp(end, UTC), f"{int(step)}s")
    except Exception as exc:  # refused, timed out, TLS, a bad answer: all one message
        raise PrometheusDown(f"Prometheus at {url} cannot be read ({exc.__class__.__name__})") from None
    return [{"labels": r.get("metric", {}),
             "times": [datetime.fromtimestamp(float(t), UTC) for t, _ in r.get("values", [])],
             "values": [float(v) for _, v in r.get("values", [])]} for r in result]


# the overview -----------------------------------------------------------------------------

def age(ts: float | None, now: float | None = None) -> str:
    if ts is None:
        return "never"
    seconds = max(0.0, (now or time.time()) - ts)
    return duration(seconds) + " ago"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


@st.cache_data(ttl=10, show_spinner=False)
def overview() -> list[dict[str, Any]]:
    """One row per cluster: what someone paged at 3 a.m. reads first."""
    from alerts.lifecycle import OPEN_FIRING

    ctx = context()
    goals = objectives()
    firing: dict[str | None, list[str]] = {}
    for a in ctx.catalog.alerts.open_alerts():
        if a.state in OPEN_FIRING:
            firing.setdefault(a.cluster, []).append(f"{a.severity}: {a.rule}")
    rows = []
    for cluster in clusters():
        goal = goals[cluster]
        report = backups(cluster)
        last: dict[str, float] = {}
        for b in report["backups"]:
            when = parse_iso(b.get("finished_at"))
            if b.get("status") == "ok" and when is not None:
                last[b["type"]] = max(last.get(b["type"], 0.0), when.timestamp())
        drill = ctx.catalog.drills(cluster, limit=1)
        live = server(cluster)
        rows.append({
            "cluster": cluster, "class": goal["class"],
            "rpo_exposure": goal.get("rpo_exposure_seconds"), "rpo_objective": goal["rpo_objective_seconds"],
            "rto_expected": goal.get("rto_expected_seconds"), "rto_objective": goal["rto_objective_seconds"],
            "rpo_level": level(goal.get("rpo_exposure_seconds"), goal["rpo_objective_seconds"]),
            "rto_level": level(goal.get("rto_expected_seconds"), goal["rto_objective_seconds"]),
            "measured_at": goal.get("measured_at"),
            "last_backup": last, "repository": report["status"], "server": live,
            "firing": firing.get(cluster, []),
            "last_drill": None if not drill else {
                "passed": drill[0].passed, "finished_at": drill[0].finished_at,
                "rto_seconds": drill[0].rto_seconds, "kind": drill[0].kind}})
    if firing.get(None):
        rows.append({"cluster": None, "firing": firing[None]})
    return rows
