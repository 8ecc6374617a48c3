"""What an operator does to alerts, one way for ``lifeboat alerts ack/silence`` and the console.

:func:`acknowledge` marks an open alert acknowledged and tells the channels that got it
(PagerDuty's incident acknowledged, a reply in the Slack thread), with the deliveries'
details redacted; :func:`silence` checks the rule, duration and reason and records a silence
and its event. Errors: :class:`alerts.lifecycle.UnknownAlert` / ``AlertClosed`` for an alert
that cannot be acknowledged, :class:`engine.errors.UsageError` for a bad silence.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

from engine.errors import UsageError


@dataclass(frozen=True)
class Acknowledged:
    alert: Any  # the AlertRecord as stored after the acknowledgement
    deliveries: list[Any]  # alerts.channels Delivery, details redacted
    problem: str | None  # why the channels could not be told (redacted), if so

    @property
    def failed(self) -> list[Any]:
        return [d for d in self.deliveries if d.outcome != "ok"]


def acknowledge(ctx: Any, alert_id: int, by: str) -> Acknowledged:
    from alerts.channels.base import redact
    from alerts.lifecycle import Lifecycle
    from alerts.router import settings_secrets

    settings, book = ctx.config.alerts, ctx.catalog.alerts
    alert = Lifecycle(settings, book).acknowledge(alert_id, by)
    deliveries, problem = _tell_channels(ctx, alert)
    secrets = settings_secrets(settings)
    deliveries = [replace(d, detail=redact(d.detail, secrets)) for d in deliveries]
    return Acknowledged(book.get(alert.id), deliveries, redact(problem, secrets) if problem else None)


def _tell_channels(ctx: Any, alert: Any) -> tuple[list[Any], str | None]:
    """Send the acknowledgement to the channels that got the alert (PagerDuty's acknowledge)."""
    from alerts.router import NO_ACK, Router
    from engine.errors import ConfigError

    book = ctx.catalog.alerts
    sent = {n.channel for n in book.notifications(alert.id)
            if n.kind in ("firing", "repeat", "escalation") and n.outcome == "ok"} - NO_ACK
    if not sent:
        return [], None
    from alerts.channels.factory import build_channels

    try:
        channels = build_channels(ctx.config.alerts, only=sent)
    except ConfigError as exc:
        return [], str(exc)
    router = Router(ctx.config.alerts, book, channels)
    try:
        return router.acknowledge(alert), None
    finally:
        router.close()


@dataclass(frozen=True)
class Silenced:
    id: int
    rule: str
    cluster: str | None
    until: float
    reason: str
    by: str


def silence(ctx: Any, rule: str, cluster: str | None, seconds: float, reason: str, by: str) -> Silenced:
    """Send nothing for ``rule``'s alerts (on ``cluster``, or every cluster) for ``seconds``."""
    from alerts.known import known_rules
    from engine.catalog.store import iso

    if seconds <= 0:
        raise UsageError("the silence must last more than 0 (e.g. 2h)")
    if not reason.strip():
        raise UsageError("a silence needs a reason (it is shown with every silenced alert)")
    rules = known_rules(ctx.config.alerts)
    if rule not in rules:
        raise UsageError(f"rule '{rule}' is not a rule (rules: {', '.join(sorted(rules))})")
    if cluster is not None and cluster not in ctx.config.clusters:
        raise UsageError(f"unknown cluster '{cluster}'")
    until = time.time() + seconds
    silence_id = ctx.catalog.alerts.add_silence(rule, cluster, until, reason, by)
    ctx.catalog.add_event(cluster, "alert_silenced",
                          f"alerts of rule {rule}{' on ' + cluster if cluster else ''} "
                          f"silenced until {iso(until)} by {by}: {reason}")
    return Silenced(silence_id, rule, cluster, until, reason, by)
