"""``cleanup_staging_area``: remove what killed writers left (repository temp objects, stale
spool acknowledgements, abandoned drill scratch directories), nothing a backup or restore
needs (see :mod:`engine.leftovers`)."""

from __future__ import annotations

from alerts.remediation.base import ActionResult, RemediationContext
from alerts.remediation.common import clusters_of, size
from engine import leftovers
from engine.errors import LifeboatError


def cleanup_staging_area(rctx: RemediationContext) -> ActionResult:
    config = rctx.ctx.config
    stale_after = config.alerts.remediation.stale_after
    lines: list[str] = []
    removed_bytes = removed = failed = 0
    for cluster in clusters_of(rctx):
        if cluster not in config.clusters:
            return ActionResult(False, f"cluster '{cluster}' is not in the configuration")
        try:
            catalog = rctx.ctx.catalog
        except LifeboatError:
            catalog = None
        try:
            plan = leftovers.find(config, cluster, rctx.ctx.storage, catalog, stale_after)
        except LifeboatError as exc:
            return ActionResult(False, f"cluster '{cluster}': leftovers cannot be looked for: {exc}")
        for removal in leftovers.remove(rctx.ctx.storage, plan):
            item = removal.leftover
            if removal.error is None:
                removed += 1
                removed_bytes += item.bytes
                lines.append(f"removed {item.kind} {item.where} ({size(item.bytes)}, "
                             f"{item.age / 60:.0f} min old): {item.why}")
            else:
                failed += 1
                lines.append(f"could not remove {item.kind} {item.where}: {removal.error}")
        lines += [f"cluster '{cluster}': {note}" for note in plan.notes]
    head = (f"removed {removed} leftover(s), {size(removed_bytes)}" if removed else
            f"nothing older than {stale_after:g}s to remove") + (
        f"; {failed} could not be removed" if failed else "")
    return ActionResult(failed == 0, head + ("\n" + "\n".join(lines) if lines else ""),
                        changed=removed > 0)
