"""When remediation runs: round 1 as soon as an alert fires, then a round every
``remediation.retry_interval`` while it still fires, up to the rule's ``max_attempts``; then,
if it still fires and nothing escalated it yet, escalation (a notice with the attempts'
history to ``remediation.escalate_to``).

Remediation is on only where all three say so: ``[alerts.remediation] enabled``, the rule's
``auto_remediation.enabled`` and the cluster's ``auto_remediation``. Rounds run in worker
threads, never in the caller's (the alert loop's) thread; one alert has at most one round
under way. Rounds done are counted from the catalog, so an agent that restarts goes on where
it was. Every round and every escalation is an event in the catalog.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

from alerts.known import rule_settings
from alerts.remediation.base import Action, AgentHooks, RemediationContext
from alerts.remediation.runner import run_round
from engine.catalog.alerts import AlertRecord

REMEDIATING = ("firing", "acknowledged", "silenced")


def remediation_enabled(ctx: Any, alert: AlertRecord) -> str | None:
    """None when ``alert`` may be remediated, else why not."""
    settings = ctx.config.alerts
    if not settings.remediation.enabled:
        return "remediation is off ([alerts.remediation] enabled = false)"
    rule = rule_settings(settings, alert.rule)
    if rule is None or rule.auto_remediation is None:
        return f"rule {alert.rule} has no auto_remediation"
    if not rule.auto_remediation.enabled:
        return f"remediation of rule {alert.rule} is off"
    cluster = ctx.config.clusters.get(alert.cluster) if alert.cluster else None
    if cluster is not None and not cluster.auto_remediation:
        return f"remediation of cluster {alert.cluster} is off"
    return None


class RemediationScheduler:
    """Call :meth:`tick` on every evaluation; it starts the rounds and escalations due."""

    def __init__(self, ctx: Any, hooks: AgentHooks | None, registry: Mapping[str, Action] | None = None,
                 workers: int = 2, clock: Callable[[], float] = time.time) -> None:
        self.ctx, self.hooks, self.registry, self.clock = ctx, hooks, registry, clock
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="remediation")
        self._busy: dict[int, Future[Any]] = {}
        self._lock = threading.Lock()

    @property
    def book(self) -> Any:
        return self.ctx.catalog.alerts

    def tick(self, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        settings = self.ctx.config.alerts
        for alert in self.book.open_alerts():
            if alert.state not in REMEDIATING or remediation_enabled(self.ctx, alert) is not None:
                continue
            with self._lock:
                running = self._busy.get(alert.id)
                if running is not None and not running.done():
                    continue
            rule = rule_settings(settings, alert.rule)
            assert rule is not None and rule.auto_remediation is not None
            history = self.book.attempts(alert.id)
            rounds = max((a.round for a in history), default=0)
            last = max((a.finished_at for a in history), default=None)
            if last is not None and now - last < settings.remediation.retry_interval:
                continue
            if rounds < rule.auto_remediation.max_attempts:
                self._start(alert.id, self._round, alert, rounds + 1, rule.auto_remediation.max_attempts,
                            list(rule.auto_remediation.actions))
            elif not alert.escalated:
                self._start(alert.id, self._escalate, alert, rounds)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the rounds under way; True if all ended."""
        with self._lock:
            pending = list(self._busy.values())
        _, not_done = wait(pending, timeout)
        return not not_done

    def close(self, timeout: float = 5.0) -> None:
        self.wait(timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _start(self, alert_id: int, call: Callable[..., None], *args: Any) -> None:
        with self._lock:
            self._busy[alert_id] = self._pool.submit(self._guarded, call, *args)

    def _guarded(self, call: Callable[..., None], alert: AlertRecord, *args: Any) -> None:
        try:
            call(alert, *args)
        except Exception as exc:
            self.ctx.catalog.add_event(alert.cluster, "remediation_error",
                                       f"alert #{alert.id} ({alert.rule}): {exc.__class__.__name__}: {exc}",
                                       severity="error")

    def _round(self, alert: AlertRecord, number: int, max_attempts: int, actions: list[str]) -> None:
        settings = self.ctx.config.alerts.remediation
        history = self.book.attempts(alert.id)
        rctx = RemediationContext(self.ctx, alert, number, max_attempts, time.monotonic(), self.hooks,
                                  history)
        done = run_round(rctx, actions, settings.action_timeout, self.registry)
        failed = [a for a in done if a.result in ("failed", "timeout")]
        summary = "; ".join(f"{a.action}: {a.result}" for a in done)
        self.ctx.catalog.add_event(
            alert.cluster, "remediation_round",
            f"alert #{alert.id} ({alert.rule}) remediation round {number}/{max_attempts}: {summary}",
            severity="warning" if failed else "info",
            data={"alert_id": alert.id, "rule": alert.rule, "round": number,
                  "attempts": [{"action": a.action, "result": a.result} for a in done]})

    def _escalate(self, alert: AlertRecord, rounds: int) -> None:
        current = self.book.get(alert.id)
        if current is None or current.resolved_at is not None or current.escalated:
            return
        if current.state != "firing":
            who = f" by {current.acknowledged_by}" if current.state == "acknowledged" else ""
            self.book.update(alert.id, escalated=True)  # a person has it (or chose quiet): no page
            self.ctx.catalog.add_event(current.cluster, "alert_escalation_skipped",
                                       f"alert #{alert.id} ({alert.rule}) still fires after {rounds} "
                                       f"remediation rounds; not escalated: {current.state}{who}",
                                       data={"alert_id": alert.id})
            return
        reason = f"still firing after {rounds} remediation round{'s' if rounds != 1 else ''}"
        history = self.book.attempts(alert.id)
        if self.hooks is None:
            where = "not escalated: no agent hooks"
        else:
            where = self.hooks.escalate(current, history, reason)
        self.ctx.catalog.add_event(current.cluster, "alert_escalated",
                                   f"alert #{alert.id} ({alert.rule}) {reason}: {where}",
                                   severity="warning", data={"alert_id": alert.id, "rounds": rounds})
