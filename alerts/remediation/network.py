"""``check_network_connectivity`` (``verify_network_connectivity``): reach the cluster's
server, the repository and each copy, and for replication alerts the replica as the
primary's ``pg_stat_replication`` shows it."""

from __future__ import annotations

from alerts.remediation.base import ActionResult, RemediationContext
from alerts.remediation.common import clusters_of, size
from engine import health
from engine.errors import PostgresError

REPLICA_LABELS = ("replica", "application_name")


def check_network_connectivity(rctx: RemediationContext) -> ActionResult:
    config = rctx.ctx.config
    unknown = [name for name in clusters_of(rctx) if name not in config.clusters]
    if unknown:
        return ActionResult(False, f"cluster '{unknown[0]}' is not in the configuration")
    lines: list[str] = []
    ok = True
    checked_storage = False
    for cluster in clusters_of(rctx):
        settings = config.cluster(cluster)
        found = [health.reach_server(settings, cluster, rctx.remaining())]
        if not checked_storage:  # the repository and its copies are shared by every cluster
            found.append(health.reach_storage(config.repository.url, "repository", rctx.remaining()))
            for region, copy in sorted(config.repository.copies.items()):
                found.append(health.reach_storage(copy.url, f"copy '{region}'", rctx.remaining()))
            checked_storage = True
        ok &= all(f.ok for f in found)
        lines += [f.line() for f in found]
        if found[0].ok:
            replica_ok, replica_lines = _replicas(rctx, cluster)
            ok &= replica_ok
            lines += replica_lines
    failed = [line.split(":", 1)[0] for line in lines if ": FAILED:" in line]
    head = "all answered" if ok else "did not answer: " + "; ".join(failed)
    return ActionResult(ok, head + "\n" + "\n".join(lines))


def _replicas(rctx: RemediationContext, cluster: str) -> tuple[bool, list[str]]:
    """The replica the alert is about (its ``replica`` label), as pg_stat_replication shows it."""
    wanted = next((rctx.alert.labels[k] for k in REPLICA_LABELS if rctx.alert.labels.get(k)), None)
    if wanted is None:
        return True, []
    settings = rctx.ctx.config.cluster(cluster)
    target = f"replica '{wanted}' of cluster '{cluster}' (pg_stat_replication)"
    try:
        rows = health.replicas(settings, cluster, rctx.remaining())
    except PostgresError as exc:
        return False, [f"{target}: FAILED: cannot be read: {exc}"]
    row = next((r for r in rows if r.application_name == wanted), None)
    if row is None:
        seen = ", ".join(r.application_name for r in rows) or "none"
        return False, [f"{target}: FAILED: not connected to the primary (connected: {seen})"]
    lag = size(row.replay_lag_bytes)
    reply = "never replied" if row.reply_age is None else f"last reply {row.reply_age:.0f}s ago"
    return True, [f"{target}: ok: {row.state}, {row.sync_state}, from {row.client or 'a local socket'}, "
                  f"replay {lag} behind, {reply}"]
