"""What every alert channel shares: the notice it delivers and the outcome it returns.

The contract, as Alertmanager's notifiers have it: ``send`` never raises for a delivery
problem; it returns a :class:`Delivery` whose outcome is

- ``ok``: the receiver accepted the notice (2xx);
- ``retryable``: it may succeed later (5xx, 429, a timeout, a refused connection):
  the caller sends again, with backoff (:mod:`alerts.channels.retry`);
- ``failed``: sending again cannot help (bad credentials, a wrong URL, a bad payload):
  a person must fix the channel.

A channel may hand back a ``ref`` (Slack's message ``ts``, Grafana's annotation id): the
router stores it with the alert and passes it back in :attr:`AlertNotice.refs` when the
alert is acknowledged or resolves, so the follow-up lands in the same thread or closes
the same annotation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, Protocol

NoticeState = Literal["firing", "acknowledged", "resolved"]


class Outcome(StrEnum):
    OK = "ok"
    RETRYABLE = "retryable"
    FAILED = "failed"


@dataclass(frozen=True)
class Delivery:
    channel: str
    outcome: Outcome
    detail: str  # never holds a secret (see :func:`alerts.channels.base.redact`)
    ref: str | None = None  # the channel's handle on what it posted (thread ts, annotation id)
    attempts: int = 1


@dataclass(frozen=True)
class RemediationStep:
    """One remediation attempt already made for the alert, as a notice shows it."""

    attempt: int
    action: str
    result: str  # "ok", "failed", "timeout", "skipped"
    output: str
    at: float


@dataclass(frozen=True)
class AlertNotice:
    """One alert (one rule and one series of labels) at one point of its life."""

    key: str  # stable per rule and series: PagerDuty's dedup key, the catalog's fingerprint
    rule: str  # the rule's name in the configuration, e.g. "backup_failure"
    alertname: str  # the Prometheus alert name, e.g. "LifeboatBackupFailed"
    state: NoticeState
    severity: str  # "critical", "warning" or "info"
    cluster: str | None
    summary: str
    description: str
    started_at: float  # epoch seconds
    ended_at: float | None = None  # when it resolved
    value: float | None = None
    threshold: str | None = None  # as the rule states it: "300s", "1 in 24h", "95%"
    runbook_url: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    remediation: tuple[RemediationStep, ...] = ()
    acknowledged_by: str | None = None
    refs: dict[str, str] = field(default_factory=dict)  # channel name -> ref from its first send
    group: tuple[str, ...] = ()  # keys of other alerts that fired with this one (one message)
    escalated: bool = False  # remediation gave up: the notice carries its history
    details: dict[str, Any] = field(default_factory=dict)  # anything else worth showing


class Channel(Protocol):
    """A destination for alert notices. ``send`` returns the outcome; it does not raise."""

    name: str

    def send(self, notice: AlertNotice) -> Delivery: ...


def outcome_of_status(status: int) -> Outcome:
    if 200 <= status < 300:
        return Outcome.OK
    if status >= 500 or status in (408, 429):
        return Outcome.RETRYABLE
    return Outcome.FAILED


def redact(text: str, secrets: list[str | None]) -> str:
    """``text`` with every secret replaced by ``***`` (error messages may echo a URL or key)."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text
