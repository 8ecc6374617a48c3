"""A real Alertmanager (Debian's prometheus-alertmanager) running the configuration
``lifeboat rules export --alertmanager`` writes: an alert of a rule reaches the rule's own
channels (a Slack webhook and an SMTP server on loopback) and the agent's webhook, and a
firing critical holds back the warning of the same cause and series."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from alerts.alertmanager import render_alertmanager
from alerts.rules import build_rules
from engine.config.alerting import AlertsSettings
from tests.integration.pg import free_port
from tests.integration.servers import alertmanager, post_alerts


class Receiver:
    """An HTTP server on loopback that keeps every JSON body POSTed to it, by path."""

    def __init__(self) -> None:
        self.received: list[tuple[str, Any]] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append((self.path, json.loads(body or b"null")))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def posted(self, path: str) -> list[Any]:
        return [body for where, body in list(self.received) if where == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope)
        return "250 OK"


def alert_of(settings: AlertsSettings, rule: str, **labels: str) -> dict[str, Any]:
    """An alert as Prometheus would send it for ``rule``: its labels as rendered, and its
    annotations with the templates filled in (here: the rule's name)."""
    [definition] = [d for d in build_rules(settings) if d.rule == rule]
    now = datetime.now(UTC)
    return {"labels": {"alertname": definition.alert, **definition.labels, **labels},
            "annotations": definition.annotations | {"summary": f"summary of {rule}",
                                                     "description": f"description of {rule}"},
            "startsAt": now.isoformat(), "endsAt": (now + timedelta(minutes=10)).isoformat()}


def wait_for(check: Any, seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_alertmanager_delivers_to_the_rules_channels_and_the_agent(tmp_path: Path) -> None:
    receiver, mailbox = Receiver(), Mailbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    smtp.start()
    try:
        settings = AlertsSettings.model_validate({
            "group_wait": "1s", "webhook_address": "127.0.0.1", "webhook_port": receiver.port,
            "slack": {"webhook_url": f"http://127.0.0.1:{receiver.port}/slack"},
            "email": {"host": "127.0.0.1", "port": smtp.port, "sender": "lifeboat@example.com",
                      "recipients": ["dba@example.com"]},
            "routes": {"critical": ["slack"], "warning": ["slack"]},
        })
        with alertmanager(tmp_path, render_alertmanager(settings)) as url:
            # replication_delay names its own channels (the seed's slack + email)
            post_alerts(url, [alert_of(settings, "replication_delay", cluster="main", replica="r1",
                                       datacenter="dc1")])
            [agent] = wait_for(lambda: receiver.posted("/alertmanager"), 30, "the agent's webhook")
            assert agent["status"] == "firing"
            [alert] = agent["alerts"]
            assert alert["labels"]["rule"] == "replication_delay" and alert["labels"]["cluster"] == "main"
            assert alert["annotations"]["threshold"] == "5m"
            [slack] = wait_for(lambda: receiver.posted("/slack"), 30, "the Slack webhook")
            [attachment] = slack["attachments"]
            assert attachment["title"] == "[FIRING] summary of replication_delay"
            assert attachment["text"] == ("description of replication_delay\n"
                                          "Threshold: 5m | Runbook: alerts/runbooks.md#replication_delay\n")
            [mail] = wait_for(lambda: list(mailbox.messages), 30, "the email")
            assert mail.rcpt_tos == ["dba@example.com"] and mail.mail_from == "lifeboat@example.com"
            assert b"Subject: [FIRING] summary of replication_delay" in mail.content

            # a warning and a critical of one cause and series: only the critical goes out
            receiver.received.clear()
            warning = alert_of(settings, "wal_archive_lag_high", cluster="other")
            critical = alert_of(settings, "wal_archive_lag_critical", cluster="other")
            post_alerts(url, [critical])
            wait_for(lambda: receiver.posted("/alertmanager"), 30, "the critical at the agent")
            post_alerts(url, [warning])
            time.sleep(4)  # more than group_wait: the warning would have been sent by now
            names = {a["labels"]["alertname"] for body in receiver.posted("/alertmanager")
                     for a in body["alerts"]}
            assert names == {"LifeboatWALArchiveLagCritical"}
            slack_names = json.dumps(receiver.posted("/slack"))
            assert "LifeboatWALArchiveLagHigh" not in slack_names
    finally:
        smtp.stop()
        receiver.close()
