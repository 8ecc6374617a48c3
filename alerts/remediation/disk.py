"""``check_disk_space``: free space where the repository, PGDATA, pg_wal and the spool are,
against ``[alerts.remediation] disk_min_free``."""

from __future__ import annotations

from alerts.remediation.base import ActionResult, RemediationContext
from alerts.remediation.common import clusters_of, percent, size
from engine import health


def check_disk_space(rctx: RemediationContext) -> ActionResult:
    config = rctx.ctx.config
    minimum = config.alerts.remediation.disk_min_free
    lines: list[str] = []
    low: list[str] = []
    seen: set[str] = set()
    for cluster in clusters_of(rctx):
        if cluster not in config.clusters:
            return ActionResult(False, f"cluster '{cluster}' is not in the configuration")
        for space in health.disk_space(config, cluster, rctx.remaining()):
            key = f"{space.label}:{space.resolved}"
            if key in seen:
                continue
            seen.add(key)
            where = space.path if space.resolved == space.path else f"{space.path} (-> {space.resolved})"
            if space.error is not None:
                low.append(f"{space.label} {space.path}")
                lines.append(f"{space.label} {where}: FAILED: cannot be read: {space.error}")
                continue
            share = space.share
            below = share is not None and share < minimum
            if below:
                low.append(f"{space.label} {space.path} ({percent(share)} free)")
            lines.append(f"{space.label} {where}: {'FAILED' if below else 'ok'}: {size(space.free)} "
                         f"free of {size(space.total)} ({percent(share)}"
                         + (f", below the minimum {percent(minimum)})" if below else ")"))
    head = (f"every path has at least {percent(minimum)} free" if not low else
            f"below {percent(minimum)} free or unreadable: " + "; ".join(low))
    return ActionResult(not low, head + "\n" + "\n".join(lines))
