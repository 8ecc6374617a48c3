"""``retry_backup_operation``: queue the cluster's newest failed backup job again, with the
same parameters, through the jobs API."""

from __future__ import annotations

from alerts.remediation.base import ActionResult, RemediationContext
from alerts.remediation.common import one_cluster
from engine.errors import LifeboatError
from engine.jobs import requeue_failed

REQUESTED_BY = "lifeboat-remediation"


def retry_backup_operation(rctx: RemediationContext) -> ActionResult:
    cluster = one_cluster(rctx)
    if isinstance(cluster, ActionResult):
        return cluster
    try:
        done = requeue_failed(rctx.ctx.catalog, rctx.ctx.config, cluster, "backup", REQUESTED_BY)
    except LifeboatError as exc:
        return ActionResult(False, f"cluster '{cluster}': the failed backup was not queued again: {exc}")
    if done.active is not None:
        job = done.active
        return ActionResult(True, f"cluster '{cluster}': backup job {job.id} is already {job.state} "
                                  f"(requested by {job.requested_by}): nothing queued")
    if done.failed is None:
        newest = done.newest
        return ActionResult(True, f"cluster '{cluster}': " + (
            f"the newest backup job, {newest.id}, ended {newest.state}: nothing to retry"
            if newest is not None else "no backup job in the catalog: nothing to retry"))
    failed = done.failed
    return ActionResult(True, f"cluster '{cluster}': backup job {failed.id} failed "
                              f"({failed.error or 'no error recorded'}); queued again as job {done.job_id} "
                              f"with the same parameters {failed.params}", changed=True)
