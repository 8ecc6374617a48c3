"""``restart_replication`` (restart the streaming receiver, through the agent) and
``restart_replication_slot`` (recreate a lost or missing slot, naming the WAL it cannot
bring back)."""

from __future__ import annotations

import time

from alerts.remediation.base import ActionResult, RemediationContext
from alerts.remediation.common import one_cluster
from engine.errors import LifeboatError

SEEN_WAIT = 10.0  # seconds to wait for a restarted receiver to show in pg_stat_replication


def restart_replication(rctx: RemediationContext) -> ActionResult:
    cluster = one_cluster(rctx)
    if isinstance(cluster, ActionResult):
        return cluster
    settings = rctx.ctx.config.cluster(cluster)
    if not settings.streaming.enabled:
        return ActionResult(True, f"cluster '{cluster}' has no streaming receiver to restart "
                                  f"([clusters.{cluster}.streaming] is not enabled)", skipped=True)
    if rctx.hooks is None:
        return ActionResult(True, "the streaming receiver runs in the agent, and this is not the "
                                  "agent: nothing restarted (the agent's remediation does it)",
                            skipped=True)
    try:
        done = rctx.hooks.restart_streaming(cluster)
    except LifeboatError as exc:
        return ActionResult(False, f"cluster '{cluster}': the streaming receiver was not restarted: {exc}")
    seen = _connected(rctx, cluster, settings.streaming.application_name)
    return ActionResult(seen is not None, f"cluster '{cluster}': {done}; " + (
        f"pg_stat_replication shows '{settings.streaming.application_name}' {seen}" if seen else
        f"it does not show in pg_stat_replication yet (application_name "
        f"'{settings.streaming.application_name}')"), changed=True)


def _connected(rctx: RemediationContext, cluster: str, application_name: str) -> str | None:
    """How the receiver shows in pg_stat_replication, waiting a little for it."""
    from engine import health

    settings = rctx.ctx.config.cluster(cluster)
    deadline = time.monotonic() + min(SEEN_WAIT, rctx.remaining() - 1.0)
    while True:
        try:
            rows = health.replicas(settings, cluster, max(1.0, rctx.remaining()))
        except LifeboatError:
            rows = []
        row = next((r for r in rows if r.application_name == application_name), None)
        if row is not None and row.state == "streaming":
            return f"{row.state} ({row.sync_state})"
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.2)


def restart_replication_slot(rctx: RemediationContext) -> ActionResult:
    from engine.wal.slots import repair_slot

    cluster = one_cluster(rctx)
    if isinstance(cluster, ActionResult):
        return cluster
    settings = rctx.ctx.config.cluster(cluster)
    if not settings.streaming.enabled:
        return ActionResult(True, f"cluster '{cluster}' does not stream WAL ([clusters.{cluster}."
                                  "streaming] is not enabled): it has no slot of Lifeboat's", skipped=True)
    slot = settings.streaming.slot
    try:
        repair = repair_slot(rctx.ctx.config, cluster, rctx.ctx.storage, rctx.remaining())
    except LifeboatError as exc:
        return ActionResult(False, f"cluster '{cluster}': slot '{slot}' not repaired: {exc}")
    before = repair.before
    if not repair.recreated:
        return ActionResult(True, f"cluster '{cluster}': replication slot '{slot}' is fine "
                                  f"(wal_status {before.wal_status}, restart_lsn {before.restart_lsn}, "
                                  + ("active" if before.active_pid else "not active") + "): nothing changed")
    was = "was missing" if not before.exists else f"was invalidated (wal_status '{before.wal_status}')"
    lines = [f"cluster '{cluster}': replication slot '{slot}' {was}; recreated, starting at "
             f"{repair.restart_lsn} on timeline {repair.timeline}"]
    if repair.missing:
        first, last = repair.missing[0], repair.missing[-1]
        start, end = repair.missing_range or ("?", "?")
        gone = [name for name in repair.missing if name not in repair.in_pg_wal]
        lines.append(f"WAL it cannot bring back: {start} to {end}, {len(repair.missing)} segment(s) "
                     f"from {first} (the first missing) to {last}, in neither the repository nor the "
                     "streaming directory")
        if repair.in_pg_wal:
            lines.append(f"still in pg_wal (archive_command can still archive them): "
                         f"{', '.join(repair.in_pg_wal)}")
        if gone:
            lines.append(f"gone from pg_wal (lost for point-in-time recovery until the next backup): "
                         f"{', '.join(gone)}")
    elif repair.archive_end is not None:
        lines.append(f"no WAL lost: the repository holds WAL up to {repair.archive_end}, where the "
                     "new slot's first segment begins")
    else:
        lines.append("the repository holds no WAL of this timeline before the slot: what the "
                     "receiver missed cannot be named")
    return ActionResult(True, "\n".join(lines), changed=True)
