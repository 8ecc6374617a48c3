"""The agent's wiring: ``lifeboat agent`` runs the alert loop as one of its periodic parts
(an unreachable Prometheus becomes the alerting_unavailable alert), and on the Alertmanager
path serves the webhook."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from engine.catalog.store import Catalog
from tests.alerting import PD_KEY, make_ctx
from tests.integration.alert_parts import ALWAYS, LAG, Target, only_rules, until, write_rules
from tests.integration.pg import Workspace, free_port
from tests.integration.prom import prometheus
from tests.receivers import HttpReceiver, HttpsReceiver


def agent(config: Path, seconds: float) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "lifeboat", "--config", str(config), "agent",
                             "--duration", str(seconds)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def test_agent_runs_the_alert_loop(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, alerts=f'prometheus_url = "http://127.0.0.1:{free_port()}"\n'
                   "evaluation_interval = 0.5\nquery_timeout = 1\n", channels="",
                   extra="[exporter]\nenabled = false\n")
    ctx.close()
    process = agent(ctx.config_path, 4)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    with Catalog.open(ctx.config) as catalog:
        [alert] = catalog.alerts.open_alerts()
        assert (alert.rule, alert.state, alert.source) == ("alerting_unavailable", "firing", "lifeboat")
        description = alert.annotations["description"]
        assert "Prometheus cannot be read" in description
        # one line that says what to check, not requests' nested exception text
        assert "connection refused: is Prometheus running" in description, description
        assert "HTTPConnectionPool" not in description and "NewConnectionError" not in description
        assert [(n.channel, n.outcome, n.detail) for n in catalog.alerts.notifications(alert.id)] == [
            ("none", "skipped", "no channel configured for alerting_unavailable")]
        assert not [e for e in catalog.events(kind="agent_error") if "alerts" in e.message]


def test_agent_serves_alertmanagers_webhook(tmp_path: Path) -> None:
    port = free_port()
    settings = f'source = "alertmanager"\nwebhook_port = {port}\nevaluation_interval = 0.5\n'
    ctx = make_ctx(tmp_path, alerts=settings, channels="", extra="[exporter]\nenabled = false\n")
    ctx.close()
    process = agent(ctx.config_path, 30)
    try:
        payload = {"version": "4", "status": "firing", "receiver": "lifeboat", "alerts": [
            {"status": "firing", "labels": {"alertname": "LifeboatBackupFailed", "rule": "backup_failure",
                                            "severity": "critical", "cluster": "main"},
             "annotations": {"summary": "backup failed"}, "startsAt": "2026-12-03T10:00:00.123456789Z",
             "endsAt": "0001-01-01T00:00:00Z", "fingerprint": "abc"}]}

        def post() -> dict | None:
            request = urllib.request.Request(f"http://127.0.0.1:{port}/alertmanager",
                                             json.dumps(payload).encode(),
                                             {"Content-Type": "application/json"}, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=5) as answer:
                    return json.loads(answer.read())
            except OSError:
                return None

        answer = until(post, 30, "the agent's webhook")
        assert answer["alerts"] == 1 and answer["changes"][0]["kind"] == "firing"
        with Catalog.open(ctx.config) as catalog:
            [alert] = catalog.alerts.open_alerts()
            assert (alert.rule, alert.source, alert.state) == ("backup_failure", "alertmanager", "firing")
            assert alert.first_seen == datetime(2026, 12, 3, 10, 0, 0, 123456, UTC).timestamp()
    finally:
        process.terminate()
        process.communicate(timeout=30)
    assert process.returncode == 0


def test_agent_pages_pagerduty_and_slack_from_prometheus_and_resolves(workspace: Workspace,
                                                                     tmp_path: Path) -> None:
    """The whole embedded path in a real agent: Prometheus evaluates the rules, the agent's
    loop reads them, PagerDuty (HTTPS, the real client) gets a trigger then a resolve with one
    dedup key, Slack (the real webhook client) gets Block Kit messages."""
    target = Target(lag=420.0)
    rules = write_rules(workspace.path("rules") / "lifeboat.rules.yml", ALWAYS, LAG)
    with HttpsReceiver() as pd, HttpReceiver() as slack, \
            prometheus(workspace, [target.address], [rules]) as prom:
        ctx = make_ctx(tmp_path, alerts=f'prometheus_url = "{prom.url}"\nevaluation_interval = 0.5\n'
                       "[alerts.remediation]\nenabled = false\n"
                       "[alerts.retry]\nfirst_wait = 0.05\nmax_wait = 0.2\ndeadline = 5\n"
                       + only_rules("backup_failure", "replication_delay"), channels=f"""
[alerts.pagerduty]
routing_key = "{PD_KEY}"
api_url = "{pd.url}"
ca_file = "{pd.ca_file}"
[alerts.slack]
webhook_url = "{slack.url}/services/T000/B000/XXXX"
""", extra="[exporter]\nenabled = false\n")
        ctx.close()
        process = agent(ctx.config_path, 60)
        try:
            until(lambda: len(slack.requests) >= 2 and pd.requests, 40, "pages from the agent")
            target.lag = 0.0  # replication_delay clears; backup_failure (vector(1)) keeps firing
            until(lambda: len(slack.requests) >= 3, 40, "the resolve in Slack")
        finally:
            process.terminate()
            _, err = process.communicate(timeout=30)
        assert process.returncode == 0, err
    target.close()
    with Catalog.open(ctx.config) as catalog:
        alerts = {a.rule: a for a in catalog.alerts.recent()}
        failed, lag = alerts["backup_failure"], alerts["replication_delay"]
        assert failed.resolved_at is None and lag.resolved_at is not None
        events = [r.json for r in pd.requests if r.path == "/v2/enqueue"]
        assert [(e["event_action"], e["dedup_key"]) for e in events] == [("trigger", failed.fingerprint)]
        assert events[0]["payload"]["severity"] == "critical" and events[0]["routing_key"] == PD_KEY
        texts = [json.dumps(r.json) for r in slack.requests]
        assert sum("backup failed on main" in t for t in texts) == 1
        assert ["Resolved" in t for t in texts if "replication lag" in t] == [False, True]
        assert [(n.channel, n.kind, n.outcome) for n in catalog.alerts.notifications(lag.id)] == [
            ("slack", "firing", "ok"), ("slack", "resolved", "ok")]
        shown = lifeboat_alerts(ctx.config_path)
        assert PD_KEY not in shown and "XXXX" not in shown


def lifeboat_alerts(config: Path) -> str:
    done = subprocess.run([sys.executable, "-m", "lifeboat", "--config", str(config), "alerts", "--output",
                           "json", "--all"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout
