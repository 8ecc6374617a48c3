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
from tests.alerting import make_ctx
from tests.integration.alert_parts import until
from tests.integration.pg import free_port


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
        assert "Prometheus cannot be read" in alert.annotations["description"]
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
