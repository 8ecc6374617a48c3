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
    found: list[health.Finding] = []
    checked_storage = False
    for cluster in clusters_of(rctx):
        server = health.reach_server(config.cluster(cluster), cluster, rctx.remaining())
        found.append(server)
        if not checked_storage:  # the repository and its copies are shared by every cluster
            found.append(health.reach_storage(config.repository.url, "repository", rctx.remaining(),
                                             config.repository.credentials))
            for region, copy in sorted(config.repository.copies.items()):
                found.append(health.reach_storage(copy.url, f"copy '{region}'", rctx.remaining()))
            checked_storage = True
        if server.ok:
            found += _replicas(rctx, cluster)
    failed = [f.target for f in found if not f.ok]
    head = "all answered" if not failed else "did not answer: " + "; ".join(failed)
    return ActionResult(not failed, head + "\n" + "\n".join(f.line() for f in found))


def _replicas(rctx: RemediationContext, cluster: str) -> list[health.Finding]:
    """The replica the alert is about (its ``replica`` label), else the agent's own streaming
    receiver when the cluster streams, as pg_stat_replication shows it."""
    settings = rctx.ctx.config.cluster(cluster)
    wanted = next((rctx.alert.labels[k] for k in REPLICA_LABELS if rctx.alert.labels.get(k)), None)
    if wanted is None and settings.streaming.enabled:
        wanted = settings.streaming.application_name
    if wanted is None:
        return []
    target = f"replica '{wanted}' of cluster '{cluster}' (pg_stat_replication)"
    try:
        rows = health.replicas(settings, cluster, rctx.remaining())
    except PostgresError as exc:
        return [health.Finding(target, False, f"cannot be read: {exc}")]
    row = next((r for r in rows if r.application_name == wanted), None)
    if row is None:
        seen = ", ".join(r.application_name for r in rows) or "none"
        return [health.Finding(target, False, f"not connected to the primary (connected: {seen})")]
    reply = "never replied" if row.reply_age is None else f"last reply {row.reply_age:.0f}s ago"
    return [health.Finding(target, True, f"{row.state}, {row.sync_state}, from "
                                         f"{row.client or 'a local socket'}, {size(row.lag_bytes)} behind "
                                         f"({row.lag_of}), {reply}")]
