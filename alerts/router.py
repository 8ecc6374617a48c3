"""Routing: the lifecycle's transitions become notices delivered to the rule's channels.

- Each channel has its own worker thread: a slow or failing channel (retried with backoff
  by :func:`alerts.channels.retry.deliver`, bounded by ``[alerts.retry]``) never blocks the
  agent or the other channels, and one channel's notices stay in order (a resolve follows
  its firing, so it can use the firing's ref).
- Every delivery is recorded (``catalog.alerts.add_notification``), its detail redacted. The
  ref of the first firing delivery (Slack's thread, Grafana's annotation) is stored with the
  alert; the resolve goes to the channels that got the firing, with those refs.
- Alerts of one cluster that start firing within ``group_wait`` of the first go out as one
  notice per channel (the first alert's, with the others' keys in ``group``); the group
  resolves when its last alert does.
- A firing alert that nobody acknowledged is sent again every ``repeat_interval`` (not to
  Grafana: an annotation marks a span, it is not a reminder).
- An alert whose rule has no configured channel is recorded as ``skipped`` ("no channel
  configured for <rule>"), so it still shows in ``lifeboat alerts``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

from alerts.channels.base import AlertNotice, Channel, Delivery, Outcome, RemediationStep, redact
from alerts.known import channels_of, rule_settings
from alerts.lifecycle import Transition
from engine.catalog.alerts import AlertBook, AlertRecord, AttemptRecord
from engine.catalog.store import iso
from engine.config.alerting import AlertRule, AlertsSettings
from engine.config.units import format_duration

Deliver = Callable[[Channel, AlertNotice], Delivery]
GROUP = "_group"  # in an alert's refs: the key of the group it went out in
SENT_KINDS = ("firing", "repeat", "escalation")  # deliveries after which a resolve is owed
NO_REPEAT = frozenset({"grafana"})
NO_ACK = frozenset({"email"})
NO_CHANNEL = "none"


def settings_secrets(settings: AlertsSettings) -> list[str | None]:
    """Every secret of the channels' settings (what no record may show)."""
    found: list[str | None] = []
    if settings.pagerduty:
        found.append(settings.pagerduty.key())
    if settings.slack:
        found += [settings.slack.webhook(), settings.slack.bot_token()]
    if settings.grafana:
        found.append(settings.grafana.api_token())
    if settings.email:
        found.append(settings.email.secret_password())
    if settings.webhook:
        found.append(settings.webhook.url)
    return found


def steps_of(history: Iterable[AttemptRecord]) -> tuple[RemediationStep, ...]:
    return tuple(RemediationStep(a.round, a.action, a.result, a.output, a.finished_at) for a in history)


def notice_for(settings: AlertsSettings, alert: AlertRecord, state: str,
               history: Iterable[AttemptRecord] = (), group: tuple[str, ...] = (),
               escalated: bool = False, key: str | None = None, **details: Any) -> AlertNotice:
    """The notice for ``alert`` in ``state``, from its record and its rule."""
    rule = rule_settings(settings, alert.rule)
    notes = alert.annotations
    threshold = notes.get("threshold") or (threshold_text(rule) if rule is not None else None)
    summary = notes.get("summary") or (rule.summary if rule else None) or \
        f"{alert.alertname} on {alert.cluster or 'Lifeboat'}"
    return AlertNotice(
        key=key or alert.fingerprint, rule=alert.rule, alertname=alert.alertname,
        state=state,  # type: ignore[arg-type]
        severity=alert.severity, cluster=alert.cluster, summary=summary,
        description=notes.get("description") or (rule.description if rule else None) or "",
        started_at=alert.firing_since or alert.first_seen, ended_at=alert.resolved_at, value=alert.value,
        threshold=threshold, runbook_url=notes.get("runbook_url") or (rule.runbook_url if rule else None)
        or f"{settings.runbook_base}#{alert.rule}",
        labels=dict(alert.labels), remediation=steps_of(history), acknowledged_by=alert.acknowledged_by,
        refs={k: v for k, v in alert.refs.items() if not k.startswith("_")}, group=group,
        escalated=escalated, details={"alert_id": alert.id, **details})


def threshold_text(rule: AlertRule) -> str | None:
    """A rule's threshold as people write it (the annotation Prometheus sends wins)."""
    if not isinstance(rule.threshold, float | int):
        return None
    value = float(rule.threshold)
    text = (format_duration(value) if rule.unit == "seconds" else
            f"{value * 100:g}%" if rule.unit == "ratio" else f"{value:g}")
    return text + (f" in {format_duration(rule.window)}" if rule.window else "")


class Router:
    """Sends notices for the lifecycle's transitions. ``channels``: name -> Channel (from
    :func:`alerts.channels.factory.build_channels`); ``only``: route only to these channels
    (the Alertmanager path: Grafana and the webhook); ``repeat``: send reminders."""

    def __init__(self, settings: AlertsSettings, book: AlertBook, channels: dict[str, Channel],
                 deliver: Deliver | None = None, only: Iterable[str] | None = None, repeat: bool = True,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings, self.book, self.channels = settings, book, dict(channels)
        self._deliver_fn, self.only = deliver, (frozenset(only) if only is not None else None)
        self.repeat, self.clock = repeat, clock
        self._workers = {name: ThreadPoolExecutor(1, thread_name_prefix=f"alerts-{name}")
                         for name in self.channels}
        self._lock = threading.Lock()
        self._futures: list[Future[Any]] = []
        self._buffer: dict[str | None, tuple[float, list[int]]] = {}  # cluster -> (first, alert ids)
        self.secrets = settings_secrets(settings)
        for channel in self.channels.values():
            self.secrets += list(getattr(channel, "secrets", []) or [])

    # the router's entry points ------------------------------------------------------------

    def targets(self, alert: AlertRecord) -> list[str]:
        """The channels an alert is routed to."""
        wanted = channels_of(self.settings, alert.rule) if rule_settings(self.settings, alert.rule) else []
        return [name for name in wanted if self.only is None or name in self.only]

    def route(self, transitions: Iterable[Transition], now: float | None = None) -> None:
        now = self.clock() if now is None else now
        for change in transitions:
            if change.kind == "firing":
                self._hold(change.alert, now)
            elif change.kind == "silenced":
                self._record_silenced(change.alert)
            elif change.kind == "resolved":
                self._resolve(change.alert)
        self._catch_up(now)
        self._flush(now)
        if self.repeat:
            self._repeat(now)

    def acknowledge(self, alert: AlertRecord, timeout: float | None = None) -> list[Delivery]:
        """Tell the channels that got the alert that it is acknowledged (PagerDuty's
        acknowledge, a reply in the Slack thread, the Grafana annotation's text); wait."""
        targets = [c for c in self._sent_to(alert) if c not in NO_ACK]
        notice = notice_for(self.settings, alert, "acknowledged", self.book.attempts(alert.id))
        futures = [self._submit(name, notice, [alert.id], "acknowledged") for name in targets]
        return self._results(futures, timeout)

    def escalate(self, alert: AlertRecord, history: list[AttemptRecord], reason: str,
                 timeout: float | None = None) -> str:
        """Page ``remediation.escalate_to`` with the alert and what remediation tried; wait
        for the deliveries; say where it went."""
        configured = self.settings.configured_channels()
        wanted = self.settings.remediation.escalate_to
        targets = [name for name in wanted if name in configured]
        self.book.update(alert.id, escalated=True)
        if not targets:
            self.book.add_notification(alert.id, NO_CHANNEL, "escalation", "skipped", 0,
                                       f"no escalation channel configured (remediation.escalate_to: "
                                       f"{', '.join(wanted) or 'none'})")
            return f"not escalated: no channel of remediation.escalate_to ({', '.join(wanted)}) is configured"
        current = self.book.get(alert.id) or alert
        notice = notice_for(self.settings, current, "firing", history, escalated=True, reason=reason)
        futures = [self._submit(name, notice, [alert.id], "escalation") for name in targets]
        deliveries = self._results(futures, timeout)
        return "escalated to " + ", ".join(
            f"{d.channel} ({d.outcome}{'' if d.outcome == Outcome.OK else ': ' + d.detail})"
            for d in deliveries)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the deliveries under way (tests, shutdown); True if all ended."""
        with self._lock:
            pending = list(self._futures)
        _, not_done = wait(pending, timeout)
        with self._lock:
            self._futures = [f for f in self._futures if not f.done()]
        return not not_done

    def close(self, timeout: float = 5.0) -> None:
        self.wait(timeout)
        for worker in self._workers.values():
            worker.shutdown(wait=False, cancel_futures=True)

    # firing, grouped --------------------------------------------------------------------

    def _hold(self, alert: AlertRecord, now: float) -> None:
        with self._lock:
            first, ids = self._buffer.get(alert.cluster, (now, []))
            if alert.id not in ids:
                ids.append(alert.id)
            self._buffer[alert.cluster] = (first, ids)

    def _catch_up(self, now: float) -> None:
        """Firing alerts never sent (the agent restarted before their group went out)."""
        with self._lock:
            held = {i for _, ids in self._buffer.values() for i in ids}
        for alert in self.book.open_alerts():
            if alert.state == "firing" and alert.last_notified_at is None and alert.id not in held:
                self._hold(alert, now)

    def _flush(self, now: float) -> None:
        with self._lock:
            due = [cluster for cluster, (first, _) in self._buffer.items()
                   if now - first >= self.settings.group_wait]
            groups = [self._buffer.pop(cluster)[1] for cluster in due]
        for ids in groups:
            alerts = [a for a in (self.book.get(i) for i in ids) if a is not None and a.state == "firing"]
            if alerts:
                self._send_group(alerts, now)

    def _send_group(self, alerts: list[AlertRecord], now: float) -> None:
        key = alerts[0].fingerprint
        for alert in alerts:
            fields: dict[str, Any] = {"last_notified_at": now}
            if len(alerts) > 1:
                fields["refs"] = {**alert.refs, GROUP: key}
            self.book.update(alert.id, **fields)
        by_channel: dict[str, list[AlertRecord]] = {}
        for alert in alerts:
            targets = self.targets(alert)
            if not targets and self.only is None:
                self.book.add_notification(alert.id, NO_CHANNEL, "firing", "skipped", 0,
                                           f"no channel configured for {alert.rule}")
            for name in targets:
                by_channel.setdefault(name, []).append(alert)
        for name, members in by_channel.items():
            leader = members[0]
            notice = notice_for(self.settings, leader, "firing", self.book.attempts(leader.id),
                                group=tuple(a.fingerprint for a in members[1:]))
            self._submit(name, notice, [a.id for a in members], "firing", keep_ref=True)

    def _repeat(self, now: float) -> None:
        open_alerts = self.book.open_alerts()
        open_keys = {a.fingerprint for a in open_alerts}
        for alert in open_alerts:
            if alert.state != "firing" or alert.last_notified_at is None:
                continue
            if now - alert.last_notified_at < self.settings.repeat_interval:
                continue
            group = alert.refs.get(GROUP)
            if group and group != alert.fingerprint and group in open_keys:
                continue  # its group's first alert reminds for it
            members = [a for a in open_alerts if group and a.refs.get(GROUP) == group and a.id != alert.id]
            self.book.update(alert.id, last_notified_at=now)
            for m in members:
                self.book.update(m.id, last_notified_at=now)
            notice = notice_for(self.settings, alert, "firing", self.book.attempts(alert.id),
                                group=tuple(m.fingerprint for m in members), key=group or None)
            for name in self.targets(alert):
                if name not in NO_REPEAT:
                    self._submit(name, notice, [alert.id, *(m.id for m in members)], "repeat")

    # silenced, resolved ------------------------------------------------------------------

    def _record_silenced(self, alert: AlertRecord) -> None:
        detail = f"silenced until {iso(alert.silenced_until)}: {alert.silence_reason}"
        for name in self.targets(alert) or [NO_CHANNEL]:
            self.book.add_notification(alert.id, name, "silenced", "skipped", 0, self._redact(detail))

    def _resolve(self, alert: AlertRecord) -> None:
        with self._lock:
            for _first, ids in list(self._buffer.values()):
                if alert.id in ids:
                    ids.remove(alert.id)  # resolved before its group went out: nothing owed
        targets = self._sent_to(alert)
        if not targets:
            return
        group = alert.refs.get(GROUP)
        if group:
            others = [a for a in self.book.open_alerts() if a.refs.get(GROUP) == group]
            if others:
                for name in targets:
                    self.book.add_notification(
                        alert.id, name, "resolved", "skipped", 0,
                        "held: alerts sent with it still fire (" + ", ".join(f"#{a.id}" for a in others)
                        + "); the group resolves with the last")
                return
        notice = notice_for(self.settings, alert, "resolved", self.book.attempts(alert.id),
                            key=group or None)
        for name in targets:
            self._submit(name, notice, [alert.id], "resolved")

    def _sent_to(self, alert: AlertRecord) -> list[str]:
        """Channels that accepted a firing (or repeat, or escalation) notice of ``alert``."""
        names: list[str] = []
        for record in self.book.notifications(alert.id):
            if record.kind in SENT_KINDS and record.outcome == "ok" and record.channel not in names:
                names.append(record.channel)
        return names

    # delivery ------------------------------------------------------------------------------

    def _submit(self, name: str, notice: AlertNotice, alert_ids: list[int], kind: str,
                keep_ref: bool = False) -> Future[Delivery]:
        worker = self._workers.get(name)
        if worker is None:
            future: Future[Delivery] = Future()
            delivery = Delivery(name, Outcome.FAILED, f"channel {name} is not available (not built)", None, 0)
            self._record(alert_ids, kind, delivery)
            future.set_result(delivery)
            return future
        future = worker.submit(self._send, name, notice, alert_ids, kind, keep_ref)
        with self._lock:
            self._futures = [f for f in self._futures if not f.done()] + [future]
        return future

    def _send(self, name: str, notice: AlertNotice, alert_ids: list[int], kind: str,
              keep_ref: bool) -> Delivery:
        channel = self.channels[name]
        if notice.state != "firing" and alert_ids:
            current = self.book.get(alert_ids[0])  # the firing's ref arrived after this was queued
            if current is not None:
                refs = {k: v for k, v in current.refs.items() if not k.startswith("_")}
                notice = _with_refs(notice, refs)
        try:
            delivery = self._deliver(channel, notice)
        except Exception as exc:  # a bug in a channel or in retry: recorded, never raised
            delivery = Delivery(name, Outcome.FAILED, f"{exc.__class__.__name__}: {exc}")
        self._record(alert_ids, kind, delivery)
        if keep_ref and delivery.outcome == Outcome.OK and delivery.ref:
            with self._lock:
                for alert_id in alert_ids:
                    current = self.book.get(alert_id)
                    if current is not None and name not in current.refs:
                        self.book.update(alert_id, refs={**current.refs, name: delivery.ref})
        return delivery

    def _deliver(self, channel: Channel, notice: AlertNotice) -> Delivery:
        if self._deliver_fn is not None:
            return self._deliver_fn(channel, notice)
        from alerts.channels.retry import deliver

        retry = self.settings.retry
        return deliver(channel, notice, attempts=retry.attempts, first_wait=retry.first_wait,
                       max_wait=retry.max_wait, deadline=retry.deadline)

    def _record(self, alert_ids: list[int], kind: str, delivery: Delivery) -> None:
        detail = self._redact(delivery.detail)
        if len(alert_ids) > 1:
            detail += f" (one notice for alerts {', '.join(f'#{i}' for i in alert_ids)})"
        for alert_id in alert_ids:
            self.book.add_notification(alert_id, delivery.channel, kind, str(delivery.outcome),
                                       delivery.attempts, detail)

    def _redact(self, text: str) -> str:
        return redact(text, self.secrets)

    def _results(self, futures: list[Future[Delivery]], timeout: float | None) -> list[Delivery]:
        limit = timeout if timeout is not None else self.settings.retry.deadline + 30
        done, _ = wait(futures, limit)
        return [f.result() for f in futures if f in done]


def _with_refs(notice: AlertNotice, refs: dict[str, str]) -> AlertNotice:
    from dataclasses import replace

    return replace(notice, refs={**refs, **notice.refs})
