"""``escalate_to_dba``: on the last round, page the on-call with the alert and what
remediation tried (through the agent's hooks)."""

from __future__ import annotations

from alerts.remediation.base import ActionResult, RemediationContext
from engine.errors import LifeboatError


def escalate_to_dba(rctx: RemediationContext) -> ActionResult:
    if not rctx.last_round:
        return ActionResult(True, f"escalates after round {rctx.max_attempts} if the alert persists "
                                  f"(this is round {rctx.round})", skipped=True)
    if rctx.hooks is None:
        return ActionResult(False, "cannot escalate: no pager here (escalation is done by the "
                                   "agent's remediation, which routes the page)")
    tried = [a for a in rctx.history if a.alert_id == rctx.alert.id and a.action != "escalate_to_dba"]
    failing = [a for a in tried if a.result in ("failed", "timeout")]
    reason = (f"alert {rctx.alert.alertname} persists after {rctx.round} round(s) of remediation "
              f"({len(tried)} action(s) run, {len(failing)} failed or timed out)")
    try:
        where = rctx.hooks.escalate(rctx.alert, list(rctx.history), reason)
    except LifeboatError as exc:
        return ActionResult(False, f"escalation failed: {exc}")
    return ActionResult(True, f"escalated: {reason}; {where}", changed=True)
