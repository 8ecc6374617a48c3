"""Alerts in the catalog: each alert's lifecycle, what was sent where, what remediation
tried, and the silences operators set.

One row of ``alerts`` is one occurrence of one rule on one series of labels (its
``fingerprint``): it is opened when Prometheus (or Alertmanager) first reports it and
closed (``resolved_at``) when it clears; firing again later opens a new row. The logic of
the lifecycle lives in :mod:`alerts.lifecycle`; this module only stores and reads.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from engine.catalog.db import Database

_ALERT_COLUMNS = (
    "id, fingerprint, rule, alertname, cluster, severity, labels, annotations, state, value, source, "
    "first_seen, last_seen, firing_since, resolved_at, acknowledged_by, acknowledged_at, "
    "silenced_until, silence_reason, last_notified_at, refs, escalated")
#: Columns :meth:`AlertBook.update` may set.
_UPDATABLE = frozenset(
    ("severity", "labels", "annotations", "state", "value", "last_seen", "firing_since", "resolved_at",
     "acknowledged_by", "acknowledged_at", "silenced_until", "silence_reason", "last_notified_at",
     "refs", "escalated"))
_JSON = frozenset(("labels", "annotations", "refs"))


@dataclass(frozen=True)
class AlertRecord:
    id: int
    fingerprint: str
    rule: str
    alertname: str
    cluster: str | None
    severity: str
    labels: dict[str, str]
    annotations: dict[str, str]
    state: str
    value: float | None
    source: str  # "prometheus", "alertmanager" or "lifeboat" (an alert about the alerting itself)
    first_seen: float
    last_seen: float
    firing_since: float | None
    resolved_at: float | None
    acknowledged_by: str | None
    acknowledged_at: float | None
    silenced_until: float | None
    silence_reason: str | None
    last_notified_at: float | None
    refs: dict[str, str] = field(default_factory=dict)
    escalated: bool = False

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> AlertRecord:
        values = list(row)
        for index in (6, 7, 20):
            values[index] = json.loads(values[index]) if values[index] else {}
        values[21] = bool(values[21])
        return cls(*values)

    def to_json(self) -> dict[str, Any]:
        from engine.catalog.store import iso

        data = {name: getattr(self, name) for name in self.__dataclass_fields__ if name != "refs"}
        for name in ("first_seen", "last_seen", "firing_since", "resolved_at", "acknowledged_at",
                     "silenced_until", "last_notified_at"):
            data[name] = iso(data[name])
        return data


@dataclass(frozen=True)
class NotificationRecord:
    id: int
    alert_id: int
    at: float
    channel: str
    kind: str  # firing, repeat, acknowledged, resolved, escalation, test
    outcome: str  # ok, retryable, failed (after the retries), skipped
    attempts: int
    detail: str


@dataclass(frozen=True)
class AttemptRecord:
    id: int
    alert_id: int
    round: int
    action: str
    started_at: float
    finished_at: float
    result: str  # ok, failed, timeout, skipped
    output: str


@dataclass(frozen=True)
class SilenceRecord:
    id: int
    rule: str
    cluster: str | None
    created_at: float
    until: float
    reason: str
    created_by: str

    def covers(self, rule: str, cluster: str | None, now: float) -> bool:
        return self.rule == rule and self.until > now and self.cluster in (None, cluster)


class AlertBook:
    """The catalog's alert tables (one :class:`Database`, shared with the rest of the catalog)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # alerts ---------------------------------------------------------------------------

    def create(self, fingerprint: str, rule: str, alertname: str, cluster: str | None, severity: str,
               labels: dict[str, str], annotations: dict[str, str], state: str, value: float | None,
               source: str, first_seen: float, firing_since: float | None = None) -> int:
        return self.db.insert(
            "INSERT INTO alerts (fingerprint, rule, alertname, cluster, severity, labels, annotations, "
            "state, value, source, first_seen, last_seen, firing_since) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (fingerprint, rule, alertname, cluster, severity, json.dumps(labels, sort_keys=True),
             json.dumps(annotations, sort_keys=True), state, value, source, first_seen, time.time(),
             firing_since))

    def update(self, alert_id: int, **fields: Any) -> None:
        unknown = set(fields) - _UPDATABLE
        if unknown:
            raise ValueError(f"alerts: cannot update {', '.join(sorted(unknown))}")
        if not fields:
            return
        values = [json.dumps(v, sort_keys=True) if k in _JSON else (int(v) if k == "escalated" else v)
                  for k, v in fields.items()]
        assignments = ", ".join(f"{name} = ?" for name in fields)
        self.db.execute(f"UPDATE alerts SET {assignments} WHERE id = ?", (*values, alert_id))

    def get(self, alert_id: int) -> AlertRecord | None:
        rows = self.db.execute(f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE id = ?", (alert_id,))
        return AlertRecord.from_row(rows[0]) if rows else None

    def open_alert(self, fingerprint: str) -> AlertRecord | None:
        """The occurrence of ``fingerprint`` that has not resolved, if any."""
        rows = self.db.execute(
            f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE fingerprint = ? AND resolved_at IS NULL "
            "ORDER BY id DESC LIMIT 1", (fingerprint,))
        return AlertRecord.from_row(rows[0]) if rows else None

    def open_alerts(self, source: str | None = None) -> list[AlertRecord]:
        """Every alert not resolved yet (oldest first)."""
        where, params = "resolved_at IS NULL", []
        if source is not None:
            where += " AND source = ?"
            params.append(source)
        rows = self.db.execute(f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE {where} ORDER BY id", params)
        return [AlertRecord.from_row(r) for r in rows]

    def recent(self, since: float | None = None, cluster: str | None = None,
               limit: int = 100) -> list[AlertRecord]:
        """Open alerts and those that resolved since ``since``, newest first."""
        where, params = ["(resolved_at IS NULL OR resolved_at >= ?)"], [since or 0.0]
        if cluster is not None:
            where.append("cluster = ?")
            params.append(cluster)
        rows = self.db.execute(
            f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?",
            (*params, limit))
        return [AlertRecord.from_row(r) for r in rows]

    # notifications --------------------------------------------------------------------

    def add_notification(self, alert_id: int, channel: str, kind: str, outcome: str, attempts: int,
                         detail: str) -> int:
        return self.db.insert(
            "INSERT INTO alert_notifications (alert_id, at, channel, kind, outcome, attempts, detail) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)", (alert_id, time.time(), channel, kind, outcome, attempts,
                                             detail))

    def notifications(self, alert_id: int) -> list[NotificationRecord]:
        rows = self.db.execute(
            "SELECT id, alert_id, at, channel, kind, outcome, attempts, detail FROM alert_notifications "
            "WHERE alert_id = ? ORDER BY id", (alert_id,))
        return [NotificationRecord(*r) for r in rows]

    def notification_counts(self) -> list[tuple[str, str, int]]:
        """(channel, outcome, count) over all time: the exporter's counters."""
        rows = self.db.execute(
            "SELECT channel, outcome, COUNT(*) FROM alert_notifications GROUP BY channel, outcome")
        return [(r[0], r[1], int(r[2])) for r in rows]

    # remediation ----------------------------------------------------------------------

    def add_attempt(self, alert_id: int, round_: int, action: str, started_at: float,
                    finished_at: float, result: str, output: str) -> int:
        return self.db.insert(
            "INSERT INTO remediation_attempts (alert_id, round, action, started_at, finished_at, "
            "result, output) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (alert_id, round_, action, started_at, finished_at, result, output))

    def attempts(self, alert_id: int) -> list[AttemptRecord]:
        rows = self.db.execute(
            "SELECT id, alert_id, round, action, started_at, finished_at, result, output "
            "FROM remediation_attempts WHERE alert_id = ? ORDER BY id", (alert_id,))
        return [AttemptRecord(*r) for r in rows]

    def attempt_counts(self) -> list[tuple[str, str, int]]:
        """(action, result, count) over all time: the exporter's counters."""
        rows = self.db.execute(
            "SELECT action, result, COUNT(*) FROM remediation_attempts GROUP BY action, result")
        return [(r[0], r[1], int(r[2])) for r in rows]

    # silences -------------------------------------------------------------------------

    def add_silence(self, rule: str, cluster: str | None, until: float, reason: str,
                    created_by: str) -> int:
        return self.db.insert(
            "INSERT INTO silences (rule, cluster, created_at, until, reason, created_by) "
            "VALUES (?, ?, ?, ?, ?, ?)", (rule, cluster, time.time(), until, reason, created_by))

    def silences(self, active_at: float | None = None) -> list[SilenceRecord]:
        """Every silence, or those still in force at ``active_at``."""
        if active_at is None:
            rows = self.db.execute(
                "SELECT id, rule, cluster, created_at, until, reason, created_by FROM silences ORDER BY id")
        else:
            rows = self.db.execute(
                "SELECT id, rule, cluster, created_at, until, reason, created_by FROM silences "
                "WHERE until > ? ORDER BY id", (active_at,))
        return [SilenceRecord(*r) for r in rows]
