"""The alert lifecycle: transitions, stable fingerprints, silences (configuration and
catalog), acknowledgement, Alertmanager's per-alert reports and resolve timeout."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest

from alerts.lifecycle import AlertClosed, Lifecycle, Snapshot, UnknownAlert, fingerprint
from tests.alerting import backup_failure, make_ctx, replication_delay

PROM = frozenset({"prometheus", "lifeboat"})


def lifecycle(tmp_path: Path, **kw: str) -> Lifecycle:
    ctx = make_ctx(tmp_path, **kw)
    return Lifecycle(ctx.config.alerts, ctx.catalog.alerts)


def test_pending_firing_resolved(tmp_path: Path) -> None:
    life = lifecycle(tmp_path)
    t0 = time.time()
    changes = life.apply(Snapshot([backup_failure("pending")], PROM), t0)
    assert [c.kind for c in changes] == ["pending"]
    alert = changes[0].alert
    assert alert.state == "pending" and alert.firing_since is None and alert.cluster == "main"
    assert life.apply(Snapshot([backup_failure("pending")], PROM), t0 + 1) == []
    changes = life.apply(Snapshot([backup_failure("firing")], PROM), t0 + 2)
    assert [(c.kind, c.previous, c.alert.id) for c in changes] == [("firing", "pending", alert.id)]
    assert changes[0].alert.firing_since == t0 + 2
    assert life.apply(Snapshot([backup_failure("firing", value=3.0)], PROM), t0 + 3) == []
    assert life.book.get(alert.id).value == 3.0 and life.book.get(alert.id).last_seen == t0 + 3
    changes = life.apply(Snapshot([], PROM), t0 + 4)
    assert [(c.kind, c.alert.id, c.alert.resolved_at) for c in changes] == [("resolved", alert.id, t0 + 4)]
    assert life.book.open_alerts() == []
    # firing again later is a new occurrence of the same fingerprint
    again = life.apply(Snapshot([backup_failure("firing")], PROM), t0 + 5)
    assert again[0].kind == "firing" and again[0].alert.id != alert.id
    assert again[0].alert.fingerprint == alert.fingerprint


def test_fingerprint_is_stable_and_per_series() -> None:
    a = backup_failure("pending").labels
    b = dict(reversed(list(backup_failure("firing").labels.items())))  # other order, other alertstate
    assert fingerprint("backup_failure", a) == fingerprint("backup_failure", b)
    other = backup_failure(cluster="other").labels
    assert fingerprint("backup_failure", a) != fingerprint("backup_failure", other)
    assert fingerprint("backup_failure", a) != fingerprint("backup_failure_x", a)
    # the same in every process (no salted hash): a restarted agent finds its open alerts
    assert fingerprint("r", {"b": "2", "a": "1"}) == fingerprint("r", {"a": "1", "b": "2", "alertstate": "x"})
    assert fingerprint("r", {"a": "1"}) == "e830913f101f7a3e9d492977198c53f7"


def test_two_series_are_two_alerts_and_only_the_absent_one_resolves(tmp_path: Path) -> None:
    life = lifecycle(tmp_path)
    t0 = time.time()
    life.apply(Snapshot([backup_failure(), backup_failure(cluster="other")], PROM), t0)
    assert len(life.book.open_alerts()) == 2
    changes = life.apply(Snapshot([backup_failure(cluster="other")], PROM), t0 + 1)
    assert [(c.kind, c.alert.cluster) for c in changes] == [("resolved", "main")]


def test_unreachable_prometheus_resolves_nothing_of_prometheus(tmp_path: Path) -> None:
    life = lifecycle(tmp_path)
    t0 = time.time()
    life.apply(Snapshot([backup_failure()], PROM), t0)
    # the snapshot of an unreachable Prometheus is complete only for Lifeboat's own alerts
    assert life.apply(Snapshot([], frozenset({"lifeboat"})), t0 + 1) == []
    assert len(life.book.open_alerts()) == 1


def test_configuration_silence(tmp_path: Path) -> None:
    life = lifecycle(tmp_path, extra="""
[[alerts.silences]]
rule = "backup_failure"
cluster = "main"
until = 2099-01-01T00:00:00Z
reason = "planned maintenance"
""")
    t0 = time.time()
    changes = life.apply(Snapshot([backup_failure(), backup_failure(cluster="other")], PROM), t0)
    states = {c.alert.cluster: (c.kind, c.alert.state) for c in changes}
    assert states == {"main": ("silenced", "silenced"), "other": ("firing", "firing")}
    main = next(c.alert for c in changes if c.alert.cluster == "main")
    assert "planned maintenance" in main.silence_reason and main.silenced_until > t0


def test_catalog_silence_then_its_end(tmp_path: Path) -> None:
    life = lifecycle(tmp_path)
    t0 = time.time()
    first = life.apply(Snapshot([replication_delay()], PROM), t0)[0].alert
    assert first.state == "firing"
    life.book.add_silence("replication_delay", None, t0 + 100, "known slow link", "ops@host")
    changes = life.apply(Snapshot([replication_delay()], PROM), t0 + 1)
    assert [(c.kind, c.alert.state, c.previous) for c in changes] == [("silenced", "silenced", "firing")]
    assert changes[0].alert.silence_reason == "known slow link (by ops@host)"
    assert life.apply(Snapshot([replication_delay()], PROM), t0 + 50) == []
    changes = life.apply(Snapshot([replication_delay()], PROM), t0 + 101)  # the silence ended
    assert [(c.kind, c.alert.state, c.previous) for c in changes] == [("firing", "firing", "silenced")]
    assert changes[0].alert.silence_reason is None
    # a silence of another cluster does not cover it
    life.book.add_silence("replication_delay", "other", t0 + 1000, "other only", "ops")
    assert life.apply(Snapshot([replication_delay()], PROM), t0 + 102) == []


def test_acknowledged_until_it_resolves(tmp_path: Path) -> None:
    life = lifecycle(tmp_path)
    t0 = time.time()
    alert = life.apply(Snapshot([backup_failure()], PROM), t0)[0].alert
    acked = life.acknowledge(alert.id, "alice@host", t0 + 1)
    assert (acked.state, acked.acknowledged_by, acked.acknowledged_at) == (
        "acknowledged", "alice@host", t0 + 1)
    assert life.apply(Snapshot([backup_failure()], PROM), t0 + 2) == []
    assert life.book.get(alert.id).state == "acknowledged"
    life.book.add_silence("backup_failure", None, t0 + 100, "quiet", "ops")  # ack wins over a silence
    assert life.apply(Snapshot([backup_failure()], PROM), t0 + 3) == []
    changes = life.apply(Snapshot([], PROM), t0 + 4)
    assert [(c.kind, c.previous) for c in changes] == [("resolved", "acknowledged")]
    with pytest.raises(AlertClosed, match=f"alert {alert.id} .*resolved"):
        life.acknowledge(alert.id, "bob")
    with pytest.raises(UnknownAlert, match="alert 999 does not exist"):
        life.acknowledge(999, "bob")


def test_alertmanager_reports_alert_by_alert(tmp_path: Path) -> None:
    life = lifecycle(tmp_path)
    t0 = time.time()
    firing = replace(backup_failure(), source="alertmanager")
    other = replace(backup_failure(cluster="other"), source="alertmanager")
    life.apply(Snapshot([firing, other]), t0)
    assert life.apply(Snapshot([]), t0 + 1) == []  # not complete: absence says nothing
    resolved = replace(firing, state="resolved", ended_at=t0 + 1.5)
    changes = life.apply(Snapshot([resolved]), t0 + 2)
    assert [(c.kind, c.alert.cluster, c.alert.resolved_at) for c in changes] == [
        ("resolved", "main", t0 + 1.5)]
    # not reported again for resolve_timeout (300 s by default): resolved
    assert life.expire("alertmanager", 300, t0 + 100) == []
    changes = life.expire("alertmanager", 300, t0 + 400)
    assert [(c.kind, c.alert.cluster) for c in changes] == [("resolved", "other")]


def test_alerts_of_unknown_or_disabled_rules_are_ignored(tmp_path: Path) -> None:
    life = lifecycle(tmp_path, alerts="[alerts.rules.replication_delay]\nenabled = false\n")
    stranger = replace(backup_failure(), rule="not_a_rule")
    assert life.apply(Snapshot([stranger, replication_delay()], PROM)) == []
    assert life.book.open_alerts() == []
