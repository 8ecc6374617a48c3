"""What the actions share: which cluster an alert is about, and wording."""

from __future__ import annotations

from alerts.remediation.base import ActionResult, RemediationContext
from engine.config.units import format_size


def clusters_of(rctx: RemediationContext) -> list[str]:
    """The alert's cluster; with none named, every configured cluster."""
    if rctx.cluster is not None:
        return [rctx.cluster]
    return sorted(rctx.ctx.config.clusters)


def one_cluster(rctx: RemediationContext) -> str | ActionResult:
    """The cluster the alert is about, or the failed result saying why there is none."""
    clusters = rctx.ctx.config.clusters
    if rctx.cluster is not None:
        if rctx.cluster not in clusters:
            known = ", ".join(sorted(clusters)) or "none"
            return ActionResult(False, f"the alert names cluster '{rctx.cluster}', which the "
                                       f"configuration does not have ({known})")
        return rctx.cluster
    if len(clusters) == 1:
        return next(iter(clusters))
    return ActionResult(False, f"alert {rctx.alert.alertname} names no cluster (no 'cluster' label) "
                               "and the configuration has several: nothing to act on")


def size(n: int | None) -> str:
    return "unknown" if n is None else format_size(n)


def percent(share: float | None) -> str:
    return "unknown" if share is None else f"{share * 100:.1f}%"
