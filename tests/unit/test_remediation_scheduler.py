"""Remediation scheduling: round 1 at once in a worker thread, a round every retry_interval
while the alert fires, escalation with the history after max_attempts; off per rule, per
cluster and globally."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from alerts.hooks import AlertHooks
from alerts.lifecycle import Lifecycle, Snapshot
from alerts.remediation.base import ActionResult, RemediationContext
from alerts.remediation.scheduler import RemediationScheduler
from alerts.router import Router
from tests.alerting import Recorder, make_ctx, once, replication_delay

PROM = frozenset({"prometheus", "lifeboat"})


class Registry(dict):
    """Actions that record the thread and round they ran in and fail (nothing fixes it)."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        super().__init__()
        self.calls: list[tuple[str, int, str]] = []
        self.gate = gate
        for name in ("check_network_connectivity", "restart_replication", "escalate_to_dba"):
            self[name] = self._action(name)

    def _action(self, name: str):
        def run(rctx: RemediationContext) -> ActionResult:
            if self.gate is not None:
                self.gate.wait(10)
            self.calls.append((name, rctx.round, threading.current_thread().name))
            if name == "escalate_to_dba":
                return ActionResult(ok=True, output="not the last round", skipped=not rctx.last_round)
            return ActionResult(ok=False, output=f"{name}: replica 10.0.0.9 unreachable")
        return run


def setup(tmp_path: Path, alerts: str = "", cluster: str = "", gate: threading.Event | None = None):
    remediation = '[alerts.remediation]\nretry_interval = 60\nescalate_to = ["pagerduty"]\n'
    ctx = make_ctx(tmp_path, alerts=remediation + alerts, cluster=cluster)
    book = ctx.catalog.alerts
    Lifecycle(ctx.config.alerts, book).apply(Snapshot([replication_delay()], PROM))
    pd = Recorder("pagerduty")
    router = Router(ctx.config.alerts, book, {"pagerduty": pd, "slack": Recorder("slack")}, deliver=once)
    registry = Registry(gate)
    scheduler = RemediationScheduler(ctx, AlertHooks(router=router), registry)
    return ctx, scheduler, registry, pd


def rounds(ctx, alert_id: int) -> list[int]:
    return sorted({a.round for a in ctx.catalog.alerts.attempts(alert_id)})


def test_rounds_at_retry_interval_then_escalation_with_history(tmp_path: Path) -> None:
    ctx, scheduler, registry, pd = setup(tmp_path)
    alert = ctx.catalog.alerts.open_alerts()[0]
    t0 = time.time()
    scheduler.tick(t0)
    assert scheduler.wait(10)
    assert rounds(ctx, alert.id) == [1]
    assert all(thread != threading.main_thread().name for _, _, thread in registry.calls)
    scheduler.tick(t0 + 30)  # retry_interval not over
    assert scheduler.wait(10) and rounds(ctx, alert.id) == [1]
    scheduler.tick(t0 + 70)
    assert scheduler.wait(10) and rounds(ctx, alert.id) == [1, 2]
    scheduler.tick(t0 + 140)
    assert scheduler.wait(10) and rounds(ctx, alert.id) == [1, 2, 3]  # max_attempts = 3
    attempts = ctx.catalog.alerts.attempts(alert.id)
    assert [(a.round, a.action, a.result) for a in attempts][-3:] == [
        (3, "check_network_connectivity", "failed"), (3, "restart_replication", "failed"),
        (3, "escalate_to_dba", "ok")]
    assert pd.sent == []
    scheduler.tick(t0 + 210)  # still firing after the last round: escalate
    assert scheduler.wait(10)
    assert rounds(ctx, alert.id) == [1, 2, 3]
    [page] = pd.sent
    assert page.escalated and page.key == alert.fingerprint and len(page.remediation) == 9
    assert page.remediation[0].action == "check_network_connectivity"
    assert "10.0.0.9 unreachable" in page.remediation[0].output
    assert "after 3 remediation rounds" in page.details["reason"]
    assert ctx.catalog.alerts.get(alert.id).escalated
    events = [e.kind for e in ctx.catalog.events(kind=None, limit=50)]
    assert events.count("remediation_round") == 3 and events.count("alert_escalated") == 1
    scheduler.tick(t0 + 400)
    assert scheduler.wait(10) and len(pd.sent) == 1 and rounds(ctx, alert.id) == [1, 2, 3]


def test_a_round_runs_in_a_worker_and_one_at_a_time(tmp_path: Path) -> None:
    gate = threading.Event()
    ctx, scheduler, registry, _ = setup(tmp_path, gate=gate)
    alert = ctx.catalog.alerts.open_alerts()[0]
    started = time.monotonic()
    scheduler.tick(time.time())
    assert time.monotonic() - started < 1.0  # tick() does not wait for the round
    scheduler.tick(time.time() + 1000)  # a round is under way: no second one
    gate.set()
    assert scheduler.wait(10)
    assert rounds(ctx, alert.id) == [1] and len(registry.calls) == 3


def test_no_remediation_of_a_resolved_or_pending_alert(tmp_path: Path) -> None:
    ctx, scheduler, registry, _ = setup(tmp_path)
    Lifecycle(ctx.config.alerts, ctx.catalog.alerts).apply(Snapshot([replication_delay("pending")], PROM))
    scheduler.tick(time.time())  # the firing one resolved, the new one is pending
    assert scheduler.wait(10) and registry.calls == []


@pytest.mark.parametrize(("alerts", "cluster"), [
    ("[alerts.rules.replication_delay.auto_remediation]\nenabled = false\n", ""),
    ("", "auto_remediation = false"),
    ("enabled = false\n", ""),  # in [alerts.remediation]
], ids=["per-rule", "per-cluster", "globally"])
def test_remediation_can_be_turned_off(tmp_path: Path, alerts: str, cluster: str) -> None:
    ctx, scheduler, registry, pd = setup(tmp_path, alerts=alerts, cluster=cluster)
    for offset in (0, 100, 200, 300, 400):
        scheduler.tick(time.time() + offset)
        assert scheduler.wait(10)
    assert registry.calls == [] and pd.sent == []
    assert ctx.catalog.alerts.attempts(ctx.catalog.alerts.open_alerts()[0].id) == []


def test_a_rule_without_remediation_is_left_alone(tmp_path: Path) -> None:
    ctx, scheduler, registry, _ = setup(tmp_path)
    from tests.alerting import observed

    Lifecycle(ctx.config.alerts, ctx.catalog.alerts).apply(Snapshot(
        [replication_delay(), observed("copy_lag_high", "LifeboatCopyLagHigh", severity="warning")], PROM))
    scheduler.tick(time.time())
    assert scheduler.wait(10)
    assert {c[0] for c in registry.calls} == {"check_network_connectivity", "restart_replication",
                                             "escalate_to_dba"}
    copy = next(a for a in ctx.catalog.alerts.open_alerts() if a.rule == "copy_lag_high")
    assert ctx.catalog.alerts.attempts(copy.id) == []
