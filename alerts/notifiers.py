"""Notifiers: channels that deliver a :class:`Notice`.

The contract, as Alertmanager's notifiers have it: ``send`` never raises for a delivery
problem; it returns a :class:`Delivery` whose outcome is

- ``ok``: the receiver accepted the notice (2xx);
- ``retryable``: it may succeed later (5xx, 429, a timeout, a refused connection):
  the caller may send again, with backoff;
- ``failed``: sending again cannot help (another 4xx: wrong URL, revoked webhook, bad
  payload): a person must fix the channel.

Two channels: a Slack incoming webhook (through slack-sdk's ``WebhookClient``) and a
generic JSON webhook (a POST of the notice as JSON, for any HTTP endpoint). They share
:class:`Delivery`, :class:`Outcome` and :func:`outcome_of_status` with the alert channels
(:mod:`alerts.channels`), which deliver alerts rather than drill announcements.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from alerts.channels.base import Delivery, Outcome, outcome_of_status
from alerts.channels.http import post_json
from engine.config.schema import Config

TIMEOUT = 10.0
_quiet = logging.getLogger("lifeboat.notifiers")
_quiet.addHandler(logging.NullHandler())


@dataclass(frozen=True)
class Notice:
    title: str
    text: str
    severity: str = "info"
    data: dict[str, Any] = field(default_factory=dict)


class Notifier(Protocol):
    """A channel. ``send`` returns the outcome (see the module); it does not raise."""

    name: str

    def send(self, notice: Notice) -> Delivery: ...


class SlackWebhook:
    """A Slack incoming webhook: the notice as text with a header and fields blocks."""

    name = "slack"

    def __init__(self, url: str, timeout: float = TIMEOUT) -> None:
        from slack_sdk.webhook import WebhookClient

        # No retries inside: the outcome says whether to retry, the caller decides when.
        self.client = WebhookClient(url, timeout=int(timeout), retry_handlers=[], logger=_quiet)

    def send(self, notice: Notice) -> Delivery:
        fields = [{"type": "mrkdwn", "text": f"*{key}*\n{value}"}
                  for key, value in notice.data.items() if isinstance(value, str | int | float)][:10]
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": notice.title[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": notice.text[:3000]}}]
        if fields:
            blocks.append({"type": "section", "fields": fields})
        try:
            response = self.client.send(text=f"{notice.title}\n{notice.text}", blocks=blocks)
        except Exception as exc:  # urllib's URLError, timeouts, refused connections
            return Delivery(self.name, Outcome.RETRYABLE, f"not delivered: {exc}")
        outcome = outcome_of_status(response.status_code)
        return Delivery(self.name, outcome, f"HTTP {response.status_code} {str(response.body)[:200]}")


class JsonWebhook:
    """A POST of ``{"title", "text", "severity", "sent_at", "data"}`` to any URL."""

    name = "webhook"

    def __init__(self, url: str, timeout: float = TIMEOUT) -> None:
        self.url, self.timeout = url, timeout

    def send(self, notice: Notice) -> Delivery:
        body = {"title": notice.title, "text": notice.text, "severity": notice.severity,
                "sent_at": datetime.now(UTC).isoformat(timespec="seconds"), "data": notice.data}
        return Delivery(self.name, *post_json(self.url, body, self.timeout))


def channels(config: Config) -> list[Notifier]:
    """Every channel configured in ``[notifications]``."""
    settings = config.notifications
    found: list[Notifier] = []
    if settings.slack_webhook_url:
        found.append(SlackWebhook(settings.slack_webhook_url))
    if settings.webhook_url:
        found.append(JsonWebhook(settings.webhook_url))
    return found


def drill_announcement(config: Config, cluster: str, when: datetime, kind: str = "full") -> Notice:
    """The notice sent ahead of a drill: what, when, who is asked to know, what to expect."""
    settings = config.clusters[cluster]
    drills = settings.drills
    stakeholders = config.notifications.stakeholders
    limit = drills.full_max_duration if kind == "full" else drills.partial_max_duration
    at = when.isoformat(timespec="minutes")
    text = (f"A {kind} restore drill of PostgreSQL cluster '{cluster}' starts at {at}. "
            f"The newest backup is restored into a scratch cluster on the database host and "
            f"validated (data checksums, constraints, roles and grants, probe queries); it may take "
            f"up to {limit / 3600:g} h. Writes to the compared tables pause for milliseconds while "
            "the reference point is taken; expect extra disk and CPU load meanwhile. "
            f"For: {', '.join(stakeholders) or 'no stakeholders configured'}.")
    return Notice(f"Restore drill of {cluster} at {at}", text, "info",
                  {"event": "drill_notice", "cluster": cluster, "kind": kind, "scheduled_at": at,
                   "max_duration_seconds": limit, "stakeholders": list(stakeholders)})


def drill_notice(config: Config, cluster: str, when: datetime, kind: str = "full") -> list[Delivery]:
    """Announce a drill on every configured channel (none configured: nothing sent)."""
    notice = drill_announcement(config, cluster, when, kind)
    return [channel.send(notice) for channel in channels(config)]

__all__ = ["Delivery", "JsonWebhook", "Notice", "Notifier", "Outcome", "SlackWebhook", "channels",
           "drill_announcement", "drill_notice", "outcome_of_status"]
