"""Each alert's life in the catalog, from what Prometheus (or Alertmanager) reports.

One :class:`engine.catalog.alerts.AlertRecord` is one occurrence of one rule on one series
of labels (its fingerprint). States:

- ``pending``: Prometheus has it active, waiting out the rule's ``for``;
- ``firing``: it fires (and is routed);
- ``acknowledged``: an operator took it (``lifeboat alerts ack``); it stays so until it
  resolves, and is not repeated;
- ``silenced``: a silence (from the configuration or ``lifeboat alerts silence``) covers it;
  nothing is sent, the router records a ``silenced`` notification so it still shows; when
  the silence ends while it still fires, it becomes ``firing`` again and is sent then;
- ``resolved``: it cleared; firing again later opens a new occurrence.

A Prometheus snapshot is complete: an open alert of a source the snapshot is complete for
that it does not list has resolved. Alertmanager reports alerts one by one (firing or
resolved), so its snapshots are complete for nothing; alerts it stopped reporting resolve
after a while (:meth:`Lifecycle.expire`, :func:`alerts.loop.alertmanager_expiry`).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field

from alerts.known import alertname_of, rule_settings
from engine.catalog.alerts import AlertBook, AlertRecord
from engine.config.alerting import AlertsSettings

OPEN_FIRING = ("firing", "acknowledged", "silenced")  # open, and past pending


@dataclass(frozen=True)
class ObservedAlert:
    """One alert as its source reports it."""

    rule: str  # the configuration's (or a synthetic) rule name
    labels: dict[str, str]  # as reported (alertname, rule, severity, cluster, ...)
    state: str  # "pending", "firing" or "resolved"
    source: str = "prometheus"  # "prometheus", "alertmanager" or "lifeboat"
    value: float | None = None
    active_at: float | None = None  # when it became active (epoch seconds)
    annotations: dict[str, str] = field(default_factory=dict)
    ended_at: float | None = None  # Alertmanager's endsAt of a resolved alert


@dataclass(frozen=True)
class Snapshot:
    """What a source reports at one time. An open alert of a source in ``complete`` that is
    not among ``alerts`` has resolved."""

    alerts: list[ObservedAlert]
    complete: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Transition:
    """A change the router acts on. ``kind``: ``pending`` (opened, not firing yet),
    ``firing`` (starts firing, or fires again after its silence ended), ``silenced``
    (firing, but covered by a silence), ``resolved``."""

    kind: str
    alert: AlertRecord  # as stored after the change
    previous: str | None = None  # the state before (None: a new alert)


class UnknownAlert(LookupError):
    pass


class AlertClosed(ValueError):
    pass


def fingerprint(rule: str, labels: dict[str, str]) -> str:
    """Stable per rule and series: a hash of the rule and its sorted labels (without
    ``alertstate``, which changes as the alert goes from pending to firing)."""
    kept = sorted((k, v) for k, v in labels.items() if k != "alertstate")
    text = json.dumps([rule, kept], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class Lifecycle:
    """Opens, updates and closes alerts in the catalog; returns what changed."""

    def __init__(self, settings: AlertsSettings, book: AlertBook) -> None:
        self.settings, self.book = settings, book

    def silence_of(self, rule: str, cluster: str | None, now: float) -> tuple[float, str] | None:
        """(until, reason) of a silence covering ``rule`` on ``cluster`` now, if any (the one
        lasting longest)."""
        found: list[tuple[float, str]] = []
        for silence in self.settings.silences:
            until = silence.until.timestamp()
            if silence.rule == rule and until > now and silence.cluster in (None, cluster):
                found.append((until, f"{silence.reason} (configuration)"))
        for record in self.book.silences(active_at=now):
            if record.covers(rule, cluster, now):
                found.append((record.until, f"{record.reason} (by {record.created_by})"))
        return max(found) if found else None

    def apply(self, snapshot: Snapshot, now: float | None = None) -> list[Transition]:
        now = time.time() if now is None else now
        open_alerts = {a.fingerprint: a for a in self.book.open_alerts()}
        seen: set[str] = set()
        changes: list[Transition] = []
        for observed in snapshot.alerts:
            rule = rule_settings(self.settings, observed.rule)
            if rule is None or not rule.enabled:
                continue  # not Lifeboat's, or turned off in the configuration
            key = fingerprint(observed.rule, observed.labels)
            current = open_alerts.get(key)
            if observed.state == "resolved":
                if current is not None:
                    changes.append(self._resolve(current, observed.ended_at or now))
                    open_alerts.pop(key)
                continue
            seen.add(key)
            if current is not None and current.state in OPEN_FIRING and observed.state == "pending":
                # it cleared and became active again between two looks: a new occurrence
                changes.append(self._resolve(current, now))
                current = None
            if current is None:
                changes.extend(self._open(key, observed, now))
            else:
                changes.extend(self._update(current, observed, now))
        for key, alert in open_alerts.items():
            if key not in seen and alert.source in snapshot.complete:
                changes.append(self._resolve(alert, now))
        changes.extend(self.sweep_silences(now))
        return changes

    def expire(self, source: str, older_than: float, now: float | None = None) -> list[Transition]:
        """Resolve the open alerts of ``source`` not reported for ``older_than`` seconds."""
        now = time.time() if now is None else now
        return [self._resolve(a, now) for a in self.book.open_alerts(source)
                if now - a.last_seen >= older_than]

    def acknowledge(self, alert_id: int, by: str, now: float | None = None) -> AlertRecord:
        """Mark an open alert acknowledged by ``by`` (UnknownAlert, AlertClosed)."""
        now = time.time() if now is None else now
        alert = self.book.get(alert_id)
        if alert is None:
            raise UnknownAlert(f"alert {alert_id} does not exist")
        if alert.resolved_at is not None:
            raise AlertClosed(f"alert {alert_id} ({alert.rule}) resolved at "
                              f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(alert.resolved_at))} "
                              "UTC: nothing to acknowledge")
        self.book.update(alert_id, state="acknowledged", acknowledged_by=by, acknowledged_at=now)
        found = self.book.get(alert_id)
        assert found is not None
        return found

    # ---------------------------------------------------------------------------------

    def _open(self, key: str, observed: ObservedAlert, now: float) -> list[Transition]:
        rule = rule_settings(self.settings, observed.rule)
        assert rule is not None
        cluster = observed.labels.get("cluster")
        state, silence = observed.state, None
        if state == "firing":
            silence = self.silence_of(observed.rule, cluster, now)
            if silence is not None:
                state = "silenced"
        severity = observed.labels.get("severity") or rule.severity
        alert_id = self.book.create(
            key, observed.rule, alertname_of(self.settings, observed.rule), cluster, severity,
            observed.labels, observed.annotations, state, observed.value, observed.source,
            first_seen=observed.active_at or now,
            firing_since=now if state != "pending" else None)
        if silence is not None:
            self.book.update(alert_id, silenced_until=silence[0], silence_reason=silence[1])
        return [Transition(state if state != "pending" else "pending", self._get(alert_id))]

    def _update(self, current: AlertRecord, observed: ObservedAlert, now: float) -> list[Transition]:
        fields: dict[str, object] = {"last_seen": now, "value": observed.value}
        if observed.annotations and observed.annotations != current.annotations:
            fields["annotations"] = observed.annotations
        kind: str | None = None
        if current.state == "pending" and observed.state == "firing":
            silence = self.silence_of(current.rule, current.cluster, now)
            fields["firing_since"] = now
            if silence is None:
                fields["state"], kind = "firing", "firing"
            else:
                fields.update(state="silenced", silenced_until=silence[0], silence_reason=silence[1])
                kind = "silenced"
        self.book.update(current.id, **fields)
        return [Transition(kind, self._get(current.id), current.state)] if kind else []

    def sweep_silences(self, now: float | None = None) -> list[Transition]:
        """Firing alerts a silence now covers become silenced; silenced ones whose silence
        ended fire again (the router sends them then)."""
        now = time.time() if now is None else now
        changes = []
        for alert in self.book.open_alerts():
            if alert.state not in ("firing", "silenced"):
                continue
            silence = self.silence_of(alert.rule, alert.cluster, now)
            if alert.state == "firing" and silence is not None:
                self.book.update(alert.id, state="silenced", silenced_until=silence[0],
                                 silence_reason=silence[1])
                changes.append(Transition("silenced", self._get(alert.id), "firing"))
            elif alert.state == "silenced" and silence is None:
                self.book.update(alert.id, state="firing", silenced_until=None, silence_reason=None)
                changes.append(Transition("firing", self._get(alert.id), "silenced"))
        return changes

    def _resolve(self, alert: AlertRecord, at: float) -> Transition:
        self.book.update(alert.id, state="resolved", resolved_at=at, last_seen=max(at, alert.last_seen))
        return Transition("resolved", self._get(alert.id), alert.state)

    def _get(self, alert_id: int) -> AlertRecord:
        found = self.book.get(alert_id)
        assert found is not None
        return found
