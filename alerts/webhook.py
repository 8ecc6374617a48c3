"""The Alertmanager path: the agent receives Alertmanager's webhook.

Teams that run Alertmanager set ``[alerts] source = "alertmanager"`` and load the
configuration ``lifeboat rules export --alertmanager`` writes: Alertmanager then notifies
PagerDuty, Slack and email itself (its own receivers), and posts every alert to this server
(``webhook_address:webhook_port``, 127.0.0.1 by default, path ``/alertmanager``) so that the
agent still keeps the alerts' lifecycle in the catalog, runs auto-remediation (and its
escalation) and annotates Grafana. On this path the agent does not poll Prometheus, and the
router sends only to ``grafana`` and ``webhook``: the other channels are Alertmanager's.

The payload is Alertmanager's webhook version 4: ``status`` and ``alerts[]``, each with
``status`` (firing or resolved), ``labels``, ``annotations``, ``startsAt``, ``endsAt`` and
``fingerprint``. An alert that is not Lifeboat's (no known ``rule`` label or alertname) is
ignored. Answers: 200 with what was taken, 400 for a body that is not such a payload.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from alerts.known import rule_for
from alerts.lifecycle import ObservedAlert, Snapshot
from alerts.prometheus_source import parse_time, parse_value

if TYPE_CHECKING:
    from alerts.loop import AlertLoop
    from engine.config.alerting import AlertsSettings

PATH = "/alertmanager"
MAX_BODY = 4 * 1024 * 1024


class PayloadError(ValueError):
    pass


def snapshot_of(settings: AlertsSettings, payload: Any) -> Snapshot:
    """The alerts of one webhook payload (complete for nothing: each says firing or resolved)."""
    if not isinstance(payload, dict) or not isinstance(payload.get("alerts"), list):
        raise PayloadError("not an Alertmanager webhook payload (no alerts list)")
    if str(payload.get("version", "4")) != "4":
        raise PayloadError(f"webhook payload version {payload.get('version')}: only version 4 is known")
    found = []
    for item in payload["alerts"]:
        if not isinstance(item, dict) or not isinstance(item.get("labels"), dict):
            raise PayloadError("an alert without labels")
        labels = {str(k): str(v) for k, v in item["labels"].items()}
        rule = rule_for(settings, labels)
        if rule is None:
            continue
        status = item.get("status")
        if status not in ("firing", "resolved"):
            raise PayloadError(f"alert status {status!r}: expected firing or resolved")
        annotations = {str(k): str(v) for k, v in (item.get("annotations") or {}).items()}
        found.append(ObservedAlert(
            rule, labels, status, "alertmanager", parse_value(annotations.get("value")),
            parse_time(item.get("startsAt")), annotations,
            parse_time(item.get("endsAt")) if status == "resolved" else None))
    return Snapshot(found, frozenset())


class AlertmanagerWebhook:
    """A small HTTP server feeding ``loop.ingest``; ``start()`` runs it in a thread."""

    def __init__(self, loop: AlertLoop, address: str = "127.0.0.1", port: int = 9888) -> None:
        self.loop = loop
        settings = loop.ctx.config.alerts
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                if self.path.split("?")[0].rstrip("/") != PATH:
                    self._answer(404, {"error": f"POST alerts to {PATH}"})
                    return
                length = int(self.headers.get("Content-Length") or 0)
                if length <= 0 or length > MAX_BODY:
                    self._answer(400, {"error": "a JSON body is required"})
                    return
                try:
                    snapshot = snapshot_of(settings, json.loads(self.rfile.read(length)))
                except (ValueError, PayloadError) as exc:
                    self._answer(400, {"error": str(exc)})
                    return
                try:
                    changes = owner.loop.ingest(snapshot)
                except Exception as exc:  # the catalog failed: Alertmanager sends again
                    self._answer(500, {"error": f"{exc.__class__.__name__}: {exc}"})
                    return
                self._answer(200, {"alerts": len(snapshot.alerts),
                                   "changes": [{"alert": c.alert.id, "kind": c.kind} for c in changes]})

            def do_GET(self) -> None:
                self._answer(200 if self.path.rstrip("/") in ("", "/-/healthy") else 404, {"ok": True})

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer((address, port), Handler)
        self.server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}{PATH}"

    def start(self) -> AlertmanagerWebhook:
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True,
                                        name="alertmanager-webhook")
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self._thread is not None:
            self._thread.join(5)
