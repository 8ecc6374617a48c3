"""The alert loop against a real Prometheus (Debian's package) evaluating a small rules file:
alerts open, are delivered to a local receiver, remediated and resolve; Prometheus stopped,
or without Lifeboat's rules, is itself an alert (alerting_unavailable), routed like others."""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Any

from alerts.channels.factory import build_channels
from alerts.hooks import AlertHooks
from alerts.loop import AlertLoop
from alerts.prometheus_source import PrometheusSource
from alerts.remediation.base import ActionResult
from tests.alerting import make_ctx
from tests.integration.alert_parts import ALWAYS, LAG, Target, bodies, only_rules, states, until, write_rules
from tests.integration.pg import Workspace
from tests.integration.prom import prometheus
from tests.receivers import HttpReceiver

CHANNELS = """
[alerts.retry]
attempts = 3
first_wait = 0.05
max_wait = 0.1
deadline = 5
[alerts.webhook]
url = "{url}"
[alerts.routes]
critical = ["webhook"]
warning = ["webhook"]
[alerts.rules.backup_failure]
channels = ["webhook"]
[alerts.rules.replication_delay]
channels = ["webhook"]
"""


def registry(calls: list[tuple[str, int]]) -> dict[str, Any]:
    def action(name: str) -> Any:
        def run(rctx: Any) -> ActionResult:
            calls.append((name, rctx.round))
            return ActionResult(ok=True, output=f"{name}: checked {rctx.cluster}")
        return run
    return {name: action(name) for name in (
        "check_network_connectivity", "restart_replication", "escalate_to_dba", "verify_backup_dependencies",
        "cleanup_staging_area", "retry_backup_operation")}


def open_by_rule(ctx: Any) -> dict[str, Any]:
    return {a.rule: a for a in ctx.catalog.alerts.open_alerts()}


def test_prometheus_alerts_fire_are_delivered_and_resolve_then_prometheus_down_is_an_alert(
        workspace: Workspace, tmp_path: Path) -> None:
    receiver, target = HttpReceiver(), Target(lag=420.0)
    rules = write_rules(workspace.path("rules") / "lifeboat.rules.yml", ALWAYS, LAG)
    calls: list[tuple[str, int]] = []
    try:
        with prometheus(workspace, [target.address], [rules]) as prom:
            ctx = make_ctx(tmp_path, alerts=f'prometheus_url = "{prom.url}"\nquery_timeout = 2\n'
                           + only_rules("backup_failure", "replication_delay"),
                           channels=CHANNELS.format(url=receiver.url))
            loop = AlertLoop(ctx, build_channels(ctx.config.alerts), AlertHooks(),
                             PrometheusSource(ctx.config.alerts), registry=registry(calls))

            def tick() -> None:
                loop.tick()
                loop.router.wait(10)
                loop.scheduler.wait(10)

            found = until(lambda: {r for r, a in open_by_rule(ctx).items() if a.state == "firing"}
                          == {"backup_failure", "replication_delay"}, 40, "both alerts firing", tick)
            assert found
            alerts = open_by_rule(ctx)
            lag = alerts["replication_delay"]
            assert lag.value == 420.0 and lag.cluster == "main" and lag.source == "prometheus"
            assert lag.labels["rule"] == "replication_delay"
            assert lag.annotations["summary"] == "replication lag 420s"
            assert "alerting_unavailable" not in alerts  # the rules are loaded: no alert about alerting
            until(lambda: states(receiver, "replication_delay") == ["firing"]
                  and states(receiver, "backup_failure") == ["firing"], 10, "firing delivered", tick)
            notices = {b["rule"]: b for b in bodies(receiver)}
            assert notices["replication_delay"]["value"] == 420.0
            assert notices["replication_delay"]["key"] == lag.fingerprint
            # remediation: round 1 of each rule's actions at once, recorded
            until(lambda: ctx.catalog.alerts.attempts(lag.id), 10, "remediation round 1", tick)
            assert [(a.round, a.action, a.result) for a in ctx.catalog.alerts.attempts(lag.id)] == [
                (1, "check_network_connectivity", "ok"), (1, "restart_replication", "ok"),
                (1, "escalate_to_dba", "ok")]
            # the cure: the lag drops, Prometheus stops the alert, the loop resolves it
            target.lag = 0.0
            until(lambda: ctx.catalog.alerts.get(lag.id).resolved_at is not None, 40, "lag alert resolved",
                  tick)
            until(lambda: states(receiver, "replication_delay") == ["firing", "resolved"], 10, "resolve sent",
                  tick)
            resolved = next(b for b in bodies(receiver) if b["state"] == "resolved")
            assert resolved["key"] == lag.fingerprint and resolved["ended_at"] is not None
            assert "backup_failure" in open_by_rule(ctx)
        # Prometheus is gone: the alerting itself is the alert, routed by the critical route
        loop.tick()
        loop.router.wait(10)
        alerts = open_by_rule(ctx)
        down = alerts["alerting_unavailable"]
        assert (down.state, down.severity, down.source, down.alertname) == (
            "firing", "critical", "lifeboat", "LifeboatAlertingUnavailable")
        assert "Prometheus cannot be read" in down.annotations["description"]
        assert alerts["backup_failure"].state == "firing"  # unknown now, not resolved
        assert states(receiver, "alerting_unavailable") == ["firing"]
        assert [(n.channel, n.kind, n.outcome) for n in ctx.catalog.alerts.notifications(down.id)] == [
            ("webhook", "firing", "ok")]
        loop.close()
    finally:
        receiver.close()
        target.close()


def test_rules_not_loaded_is_an_alert_until_they_are(workspace: Workspace, tmp_path: Path) -> None:
    receiver, target = HttpReceiver(), Target(lag=0.0)
    rules = write_rules(workspace.path("rules") / "lifeboat.rules.yml", ALWAYS)  # LAG is missing
    try:
        with prometheus(workspace, [target.address], [rules], lifecycle=True) as prom:
            settings = f'prometheus_url = "{prom.url}"\n[alerts.remediation]\nenabled = false\n'
            ctx = make_ctx(tmp_path, alerts=settings + only_rules("backup_failure", "replication_delay"),
                           channels=CHANNELS.format(url=receiver.url))
            loop = AlertLoop(ctx, build_channels(ctx.config.alerts), AlertHooks(),
                             PrometheusSource(ctx.config.alerts))

            def tick() -> None:
                loop.tick()
                loop.router.wait(10)

            until(lambda: {"alerting_unavailable", "backup_failure"} <= set(open_by_rule(ctx)), 40,
                  "the loaded rule fires and the missing one is an alert", tick)
            down = open_by_rule(ctx)["alerting_unavailable"]
            assert "has not loaded 1 of Lifeboat's rules (LifeboatReplicationDelay)" in \
                down.annotations["description"]
            until(lambda: states(receiver, "alerting_unavailable") == ["firing"], 10, "delivered", tick)
            write_rules(rules, ALWAYS, LAG)
            request = urllib.request.Request(f"{prom.url}/-/reload", method="POST")
            with urllib.request.urlopen(request, timeout=10) as answer:
                assert answer.status == 200
            until(lambda: ctx.catalog.alerts.get(down.id).resolved_at is not None, 20,
                  "resolved once loaded", tick)
            until(lambda: states(receiver, "alerting_unavailable") == ["firing", "resolved"], 10,
                  "resolve sent", tick)
            assert "backup_failure" in open_by_rule(ctx)
            loop.close()
    finally:
        receiver.close()
        target.close()
