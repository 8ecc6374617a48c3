"""Builders shared by the alert tests: a configuration with a temporary catalog, observed
alerts, and small in-process channels that record what they were sent."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from alerts.channels.base import AlertNotice, Delivery, Outcome
from alerts.lifecycle import ObservedAlert
from engine.context import Context, open_context

PD_KEY = "R0UTING-KEY-very-secret-0123456789"
SLACK_HOOK = "https://hooks.slack.example/services/T000/B000/SeCrEtWeBhOoK"
CHANNELS = f"""
[alerts.pagerduty]
routing_key = "{PD_KEY}"
[alerts.slack]
webhook_url = "{SLACK_HOOK}"
[alerts.grafana]
url = "http://127.0.0.1:1"
"""


def make_ctx(tmp_path: Path, alerts: str = "", channels: str = CHANNELS, cluster: str = "",
             extra: str = "") -> Context:
    """A context on a configuration with clusters ``main`` and ``other`` and a fresh catalog."""
    text = f"""
os_user = "root"
[repository]
path = "{tmp_path / 'repo'}"
[catalog]
path = "{tmp_path / 'catalog.sqlite3'}"
[agent]
state_dir = "{tmp_path / 'state'}"
[clusters.main]
pgdata = "/srv/pg"
{cluster}
[clusters.other]
pgdata = "/srv/other"
port = 5433
[alerts]
{'' if 'group_wait' in alerts else 'group_wait = 0'}
{alerts}
{channels}
{extra}
"""
    path = tmp_path / "lifeboat.toml"
    path.write_text(text)
    return open_context(path)


def observed(rule: str, alertname: str, state: str = "firing", cluster: str | None = "main",
             severity: str = "critical", value: float | None = 1.0, source: str = "prometheus",
             **labels: str) -> ObservedAlert:
    found = {"alertname": alertname, "rule": rule, "severity": severity, **labels}
    if cluster is not None:
        found["cluster"] = cluster
    if state in ("pending", "firing"):
        found["alertstate"] = state
    return ObservedAlert(rule, found, state, source, value, time.time(), {"summary": f"{rule} fires"})


def backup_failure(state: str = "firing", cluster: str | None = "main", **kw: object) -> ObservedAlert:
    return observed("backup_failure", "LifeboatBackupFailed", state, cluster, **kw)  # type: ignore[arg-type]


def replication_delay(state: str = "firing", cluster: str | None = "main") -> ObservedAlert:
    return observed("replication_delay", "LifeboatReplicationDelay", state, cluster, "warning", 420.0)


class Recorder:
    """A channel that records notices and answers as told (after ``delay`` seconds, or when
    ``gate`` is set)."""

    def __init__(self, name: str, outcome: Outcome = Outcome.OK, delay: float = 0.0,
                 gate: threading.Event | None = None, detail: str = "accepted",
                 refs: bool = False) -> None:
        self.name, self.outcome, self.delay, self.gate, self.detail = name, outcome, delay, gate, detail
        self.refs = refs
        self.sent: list[AlertNotice] = []
        self.times: list[float] = []
        self.secrets: list[str] = []

    def send(self, notice: AlertNotice) -> Delivery:
        if self.gate is not None:
            self.gate.wait(30)
        if self.delay:
            time.sleep(self.delay)
        self.sent.append(notice)
        self.times.append(time.monotonic())
        ref = f"{self.name}-ref-{len(self.sent)}" if self.refs and notice.state == "firing" else None
        return Delivery(self.name, self.outcome, self.detail, ref)


def once(channel: Recorder, notice: AlertNotice) -> Delivery:
    """A deliver function that sends once (the tests' stand-in for retry.deliver)."""
    return channel.send(notice)
