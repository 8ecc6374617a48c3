"""The agent's side of the exported files: Prometheus loaded with the rules file
``lifeboat rules export`` renders raises no alerting_unavailable and its alerts map to their
rules; Alertmanager running the exported configuration reaches the agent's webhook server."""

from __future__ import annotations

import time
from pathlib import Path

from alerts.hooks import AlertHooks
from alerts.loop import AlertLoop
from alerts.prometheus_source import PrometheusSource
from alerts.rules import render_rules
from alerts.webhook import AlertmanagerWebhook
from tests.alerting import make_ctx
from tests.integration.alert_parts import until
from tests.integration.pg import Workspace, free_port
from tests.integration.prom import prometheus
from tests.integration.test_alertmanager_webhook import alertmanager, post_alerts, rfc3339
from tests.receivers import HttpReceiver


def test_exported_rules_are_loaded_and_their_alerts_map_to_rules(workspace: Workspace,
                                                                 tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, alerts="[alerts.remediation]\nenabled = false\n", channels="")
    rules = workspace.path("rules") / "lifeboat.rules.yml"
    rules.write_text(render_rules(ctx.config.alerts))
    # nothing is scraped: the "metrics absent" rules become pending (their 'for' is 5m)
    with prometheus(workspace, [f"127.0.0.1:{free_port()}"], [rules]) as prom:
        settings = f'prometheus_url = "{prom.url}"\n[alerts.remediation]\nenabled = false\n'
        ctx = make_ctx(tmp_path, alerts=settings, channels="")
        source = PrometheusSource(ctx.config.alerts)
        assert set(source.expected_alertnames()) <= source.loaded_alertnames()
        loop = AlertLoop(ctx, {}, AlertHooks(), source)

        def pending() -> set[str]:
            loop.tick()
            return {a.rule for a in ctx.catalog.alerts.open_alerts() if a.state == "pending"}

        assert "metrics_absent" in until(pending, 30, "metrics_absent pending")
        found = {a.rule: a for a in ctx.catalog.alerts.open_alerts()}
        assert "alerting_unavailable" not in found  # every enabled rule is loaded
        absent = found["metrics_absent"]
        assert (absent.alertname, absent.severity, absent.source) == ("LifeboatMetricsAbsent", "critical",
                                                                      "prometheus")
        assert absent.annotations.get("runbook_url", "").endswith("#metrics_absent")
        loop.close()


def test_exported_alertmanager_configuration_reaches_the_agents_webhook(tmp_path: Path) -> None:
    from alerts.alertmanager import render_alertmanager

    port = free_port()
    with HttpReceiver() as slack:
        ctx = make_ctx(tmp_path, alerts=f'source = "alertmanager"\nwebhook_port = {port}\n'
                       "[alerts.remediation]\nenabled = false\n",
                       channels=f'[alerts.slack]\nwebhook_url = "{slack.url}/services/T/B/X"\n')
        loop = AlertLoop(ctx, {}, AlertHooks(), None)
        server = AlertmanagerWebhook(loop, "127.0.0.1", port).start()
        home = tmp_path / "am"
        home.mkdir()
        try:
            with alertmanager(home, render_alertmanager(ctx.config.alerts)) as am:
                labels = {"alertname": "LifeboatReplicationDelay", "rule": "replication_delay",
                          "severity": "warning", "cause": "replication_lag", "cluster": "main"}
                post_alerts(am, [{"labels": labels, "annotations": {"summary": "lag 420s"},
                                  "startsAt": rfc3339(time.time())}])
                [alert] = until(lambda: ctx.catalog.alerts.open_alerts(), 30, "the alert at the agent")
                assert (alert.rule, alert.source, alert.state) == (
                    "replication_delay", "alertmanager", "firing")
                until(lambda: slack.requests, 30, "Alertmanager's own Slack receiver")
                # the agent sends Slack nothing itself on this path
                assert ctx.catalog.alerts.notifications(alert.id) == []
        finally:
            server.stop()
            loop.close()
