"""``verify_backup_dependencies``: the server reachable, archiving working, the repository
writable, the cluster's lock free."""

from __future__ import annotations

from alerts.remediation.base import ActionResult, RemediationContext
from alerts.remediation.common import one_cluster
from engine import health


def verify_backup_dependencies(rctx: RemediationContext) -> ActionResult:
    cluster = one_cluster(rctx)
    if isinstance(cluster, ActionResult):
        return cluster
    found = health.backup_dependencies(rctx.ctx.config, cluster, rctx.ctx.storage, rctx.remaining())
    failed = [f for f in found if not f.ok]
    head = (f"cluster '{cluster}': everything a backup needs is in place" if not failed else
            f"cluster '{cluster}': " + "; ".join(f"{f.target}: {f.detail}" for f in failed))
    return ActionResult(not failed, head + "\n" + "\n".join(f.line() for f in found))
