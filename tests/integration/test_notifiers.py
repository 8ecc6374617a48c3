"""Notifiers against a local HTTP receiver: the real slack-sdk client and the JSON webhook
deliver the drill notice; the receiver's status decides ok, retryable or failed."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from alerts.notifiers import JsonWebhook, Notice, Outcome, SlackWebhook, drill_notice
from engine.config.schema import Config, parse_config
from tests.integration.pg import free_port

WHEN = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)


class Receiver:
    """Records every POST; answers with the status named by the path's last part."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        received = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append({"path": self.path, "headers": dict(self.headers),
                                 "json": json.loads(body)})
                status = int(self.path.rsplit("/", 1)[1])
                reply = b"ok" if status == 200 else b"no_service"
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.close()


def config(slack: str | None = None, webhook: str | None = None) -> Config:
    lines = ['[repository]\npath = "/var/tmp/repo"\n[clusters.orders]\npgdata = "/var/tmp/pgdata"\n',
             '[notifications]\nstakeholders = ["ops_team", "data_team", "service_owners"]']
    lines += [f'slack_webhook_url = "{slack}"'] if slack else []
    lines += [f'webhook_url = "{webhook}"'] if webhook else []
    return parse_config("\n".join(lines).encode(), "test.toml")


def test_slack_webhook_delivers_the_drill_notice(receiver: Receiver) -> None:
    [delivery] = drill_notice(config(slack=f"{receiver.url}/slack/200"), "orders", WHEN)
    assert delivery.channel == "slack" and delivery.outcome is Outcome.OK, delivery.detail
    [request] = receiver.requests
    assert request["path"] == "/slack/200"
    assert request["headers"]["Content-Type"].startswith("application/json")
    text = request["json"]["text"]
    assert "full restore drill of PostgreSQL cluster 'orders' starts at 2026-12-06T03:00+00:00" in text
    assert "ops_team, data_team, service_owners" in text
    header = request["json"]["blocks"][0]
    assert header["type"] == "header" and "orders" in header["text"]["text"]


def test_json_webhook_delivers_the_drill_notice(receiver: Receiver) -> None:
    [delivery] = drill_notice(config(webhook=f"{receiver.url}/hook/200"), "orders", WHEN)
    assert delivery.channel == "webhook" and delivery.outcome is Outcome.OK
    body = receiver.requests[0]["json"]
    assert body["title"] == "Restore drill of orders at 2026-12-06T03:00+00:00"
    assert body["severity"] == "info" and "up to 4 h" in body["text"]
    assert body["data"] == {"event": "drill_notice", "cluster": "orders", "kind": "full",
                            "scheduled_at": "2026-12-06T03:00+00:00", "max_duration_seconds": 14400.0,
                            "stakeholders": ["ops_team", "data_team", "service_owners"]}


def test_every_configured_channel_is_sent_to(receiver: Receiver) -> None:
    found = drill_notice(config(f"{receiver.url}/slack/200", f"{receiver.url}/hook/200"), "orders", WHEN)
    assert [(d.channel, str(d.outcome)) for d in found] == [("slack", "ok"), ("webhook", "ok")]
    assert sorted(r["path"] for r in receiver.requests) == ["/hook/200", "/slack/200"]
    assert drill_notice(config(), "orders", WHEN) == []  # no channel: nothing sent, nothing raised


@pytest.mark.parametrize("channel", [SlackWebhook, JsonWebhook])
def test_status_decides_retryable_or_failed(receiver: Receiver, channel: Any) -> None:
    notice = Notice("t", "body")
    assert channel(f"{receiver.url}/x/500").send(notice).outcome is Outcome.RETRYABLE
    assert channel(f"{receiver.url}/x/429").send(notice).outcome is Outcome.RETRYABLE
    gone = channel(f"{receiver.url}/x/404").send(notice)
    assert gone.outcome is Outcome.FAILED and "404" in gone.detail
    assert len(receiver.requests) == 3  # no hidden retries: the caller decides


@pytest.mark.parametrize("channel", [SlackWebhook, JsonWebhook])
def test_unreachable_receiver_is_retryable(channel: Any) -> None:
    delivery = channel(f"http://127.0.0.1:{free_port()}/nobody", timeout=2).send(Notice("t", "body"))
    assert delivery.outcome is Outcome.RETRYABLE and "not delivered" in delivery.detail
