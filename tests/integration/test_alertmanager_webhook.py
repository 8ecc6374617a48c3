"""The Alertmanager path: a real Alertmanager (Debian's package) posts its webhook to the
agent's server, which opens and resolves the alerts in the catalog, annotates Grafana (here a
local receiver), starts remediation, and leaves PagerDuty to Alertmanager."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import yaml

from alerts.channels.factory import build_channels
from alerts.hooks import AlertHooks
from alerts.loop import AlertLoop
from alerts.webhook import AlertmanagerWebhook
from tests.alerting import Recorder, make_ctx
from tests.integration.alert_parts import until
from tests.integration.pg import free_port
from tests.integration.servers import alertmanager, post_alerts
from tests.integration.test_alert_loop import registry
from tests.receivers import HttpReceiver


def minimal_config(webhook_url: str) -> str:
    """Every alert to the agent's webhook at once, resolved ones too."""
    return yaml.safe_dump({
        "route": {"receiver": "lifeboat", "group_by": ["alertname", "cluster"], "group_wait": "0s",
                  "group_interval": "1s", "repeat_interval": "1m"},
        "receivers": [{"name": "lifeboat",
                       "webhook_configs": [{"url": webhook_url, "send_resolved": True}]}],
    })


def rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def test_alertmanager_webhook_feeds_lifecycle_grafana_and_remediation(tmp_path: Path) -> None:
    grafana = HttpReceiver()
    port = free_port()
    ctx = make_ctx(tmp_path, alerts=f'source = "alertmanager"\nwebhook_port = {port}\n', channels=f"""
[alerts.pagerduty]
routing_key = "R0UTING-KEY-very-secret-0123456789"
[alerts.grafana]
url = "{grafana.url}"
[alerts.rules.backup_failure]
channels = ["pagerduty", "grafana"]
""")
    pagerduty = Recorder("pagerduty")
    calls: list[tuple[str, int]] = []
    channels = {"pagerduty": pagerduty, **build_channels(ctx.config.alerts, only=["grafana"])}
    loop = AlertLoop(ctx, channels, AlertHooks(), None, registry=registry(calls))
    server = AlertmanagerWebhook(loop, "127.0.0.1", port).start()
    home = tmp_path / "alertmanager"
    home.mkdir()
    labels = {"alertname": "LifeboatBackupFailed", "rule": "backup_failure", "severity": "critical",
              "cluster": "main"}
    started = time.time()
    try:
        with alertmanager(home, minimal_config(server.url)) as am:
            post_alerts(am, [
                {"labels": labels, "startsAt": rfc3339(started),
                 "annotations": {"summary": "backup failed on main", "threshold": "1 in 24h"}},
                {"labels": {"alertname": "SomebodyElsesAlert", "severity": "critical"},
                 "startsAt": rfc3339(started)},
            ])
            alert = until(lambda: ctx.catalog.alerts.open_alerts(), 20, "the alert from Alertmanager")[0]
            assert (alert.rule, alert.state, alert.source, alert.cluster) == (
                "backup_failure", "firing", "alertmanager", "main")
            assert abs(alert.first_seen - started) < 1.0  # Alertmanager's startsAt
            assert len(ctx.catalog.alerts.open_alerts()) == 1  # the other team's alert is not Lifeboat's
            loop.router.wait(10)
            until(lambda: len(grafana.requests) == 1, 10, "grafana annotation")
            made = grafana.requests[0]
            assert (made.method, made.path) == ("POST", "/api/annotations")
            assert {"rule:backup_failure", "cluster:main", "severity:critical"} <= set(made.json["tags"])
            assert abs(made.json["time"] / 1000 - started) < 1.0
            assert ctx.catalog.alerts.get(alert.id).refs == {"grafana": "1"}  # the annotation's id
            assert pagerduty.sent == []  # Alertmanager's own receiver pages on this path
            loop.scheduler.wait(10)
            assert [(a.round, a.action) for a in ctx.catalog.alerts.attempts(alert.id)] == [
                (1, "verify_backup_dependencies"), (1, "cleanup_staging_area"), (1, "retry_backup_operation")]
            # the alert ends: Alertmanager sends it resolved
            ended = time.time()
            post_alerts(am, [{"labels": labels, "startsAt": rfc3339(started), "endsAt": rfc3339(ended)}])
            until(lambda: ctx.catalog.alerts.get(alert.id).resolved_at is not None, 20,
                  "resolved by Alertmanager")
            assert abs(ctx.catalog.alerts.get(alert.id).resolved_at - ended) < 1.0
            loop.router.wait(10)
            until(lambda: len(grafana.requests) == 2, 10, "annotation closed")
            closed = grafana.requests[1]
            assert (closed.method, closed.path) == ("PATCH", "/api/annotations/1")  # the same annotation
            assert closed.json["isRegion"] and abs(closed.json["timeEnd"] / 1000 - ended) < 1.0
        # a body that is not Alertmanager's payload is refused with 400
        bad = urllib.request.Request(server.url, b'{"alerts": "no"}', {"Content-Type": "application/json"},
                                     method="POST")
        try:
            urllib.request.urlopen(bad, timeout=5)
            raise AssertionError("a bad payload was accepted")
        except urllib.error.HTTPError as exc:
            assert exc.code == 400
    finally:
        server.stop()
        loop.close()
        grafana.close()
