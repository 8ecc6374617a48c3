"""The router: grouping, repeat interval, resolve to the channels that got the firing with
their refs, a slow or failing channel blocking nobody, alerts with no channel recorded,
secrets never recorded."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from alerts.channels.base import Outcome
from alerts.lifecycle import Lifecycle, Snapshot
from alerts.router import Router
from tests.alerting import PD_KEY, SLACK_HOOK, Recorder, backup_failure, make_ctx, once, replication_delay

PROM = frozenset({"prometheus", "lifeboat"})


class Setup:
    def __init__(self, tmp_path: Path, alerts: str = "", **channels: Recorder) -> None:
        self.ctx = make_ctx(tmp_path, alerts=alerts)
        self.book = self.ctx.catalog.alerts
        self.life = Lifecycle(self.ctx.config.alerts, self.book)
        self.channels = channels or {n: Recorder(n) for n in ("pagerduty", "slack", "grafana")}
        self.router = Router(self.ctx.config.alerts, self.book, self.channels, deliver=once)

    def step(self, alerts: list, now: float) -> None:
        self.router.route(self.life.apply(Snapshot(alerts, PROM), now), now)
        assert self.router.wait(10)

    def kinds(self, alert_id: int) -> list[tuple[str, str, str]]:
        return [(n.channel, n.kind, n.outcome) for n in self.book.notifications(alert_id)]


def test_firing_goes_to_the_rules_channels(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    t0 = time.time()
    s.step([backup_failure(), replication_delay(cluster="other")], t0)
    pd, slack, grafana = (s.channels[n] for n in ("pagerduty", "slack", "grafana"))
    assert [n.rule for n in pd.sent] == ["backup_failure"]  # its own channels: pagerduty + slack
    assert sorted(n.rule for n in slack.sent) == ["backup_failure", "replication_delay"]
    assert grafana.sent == []
    notice = pd.sent[0]
    assert notice.state == "firing" and notice.cluster == "main"
    assert notice.key == s.book.open_alerts()[0].fingerprint
    assert notice.runbook_url and notice.summary == "backup_failure fires" and notice.value == 1.0
    assert notice.threshold == "1 in 1d"  # from the rule, when Prometheus sent no annotation
    assert next(n for n in slack.sent if n.rule == "replication_delay").threshold == "5m"


def test_alerts_of_one_cluster_within_group_wait_go_as_one_notice(tmp_path: Path) -> None:
    s = Setup(tmp_path, alerts="group_wait = 30")
    t0 = time.time()
    wal = ("wal_archive_failing", "LifeboatWALArchiveFailing")
    from tests.alerting import observed

    s.step([backup_failure()], t0)
    s.step([backup_failure(), observed(*wal)], t0 + 10)
    s.step([backup_failure(), observed(*wal), backup_failure(cluster="other")], t0 + 20)
    assert all(c.sent == [] for c in s.channels.values())  # still waiting for the group
    s.step([backup_failure(), observed(*wal), backup_failure(cluster="other")], t0 + 31)
    pd = s.channels["pagerduty"]
    assert len(pd.sent) == 1  # main's group; other's group started at t0+20
    first, second = sorted(s.book.open_alerts(), key=lambda a: a.id)[:2]
    assert pd.sent[0].key == first.fingerprint and pd.sent[0].group == (second.fingerprint,)
    assert s.kinds(first.id) == s.kinds(second.id) == [
        ("pagerduty", "firing", "ok"), ("slack", "firing", "ok")]
    s.step([backup_failure(), observed(*wal), backup_failure(cluster="other")], t0 + 51)
    assert [n.cluster for n in pd.sent] == ["main", "other"] and pd.sent[1].group == ()
    # the group resolves with its last alert, under the first one's key
    s.step([observed(*wal), backup_failure(cluster="other")], t0 + 60)
    assert [n.state for n in pd.sent] == ["firing", "firing"]
    assert ("pagerduty", "resolved", "skipped") in s.kinds(first.id)
    s.step([backup_failure(cluster="other")], t0 + 70)
    assert [(n.state, n.key) for n in pd.sent[2:]] == [("resolved", first.fingerprint)]


def test_repeat_interval_and_no_repeat_when_acknowledged(tmp_path: Path) -> None:
    s = Setup(tmp_path,
              alerts="repeat_interval = 100\n[alerts.routes]\ncritical = [\"pagerduty\", \"grafana\"]")
    t0 = time.time()
    s.step([backup_failure(), backup_failure(cluster="other")], t0)
    pd, grafana = s.channels["pagerduty"], s.channels["grafana"]
    assert len(pd.sent) == 2
    s.step([backup_failure(), backup_failure(cluster="other")], t0 + 50)
    assert len(pd.sent) == 2
    main = next(a for a in s.book.open_alerts() if a.cluster == "main")
    s.life.acknowledge(main.id, "alice")
    s.step([backup_failure(), backup_failure(cluster="other")], t0 + 101)
    assert [(n.cluster, n.state) for n in pd.sent[2:]] == [("other", "firing")]  # the acked one is quiet
    other = next(a for a in s.book.open_alerts() if a.cluster == "other")
    assert ("pagerduty", "repeat", "ok") in s.kinds(other.id)
    s.step([backup_failure(), backup_failure(cluster="other")], t0 + 150)
    assert len(pd.sent) == 3
    s.step([backup_failure(), backup_failure(cluster="other")], t0 + 202)
    assert len(pd.sent) == 4
    assert grafana.sent == []  # backup_failure names its channels; grafana is never reminded


def test_resolve_goes_to_the_channels_that_got_the_firing_with_their_refs(tmp_path: Path) -> None:
    pd = Recorder("pagerduty", outcome=Outcome.FAILED, detail="HTTP 400 invalid routing key")
    slack = Recorder("slack", refs=True)
    grafana = Recorder("grafana", refs=True)
    s = Setup(tmp_path, alerts='[alerts.rules.backup_failure]\nchannels = ["pagerduty", "slack", "grafana"]',
              pagerduty=pd, slack=slack, grafana=grafana)
    t0 = time.time()
    s.step([backup_failure()], t0)
    alert = s.book.open_alerts()[0]
    assert s.book.get(alert.id).refs == {"slack": "slack-ref-1", "grafana": "grafana-ref-1"}
    s.step([], t0 + 10)
    assert [n.state for n in pd.sent] == ["firing"]  # it never got the firing: no resolve
    assert [(n.state, n.refs.get("slack")) for n in slack.sent] == [
        ("firing", None), ("resolved", "slack-ref-1")]
    assert [(n.state, n.refs.get("grafana"), n.ended_at) for n in grafana.sent][1] == (
        "resolved", "grafana-ref-1", t0 + 10)
    assert ("pagerduty", "firing", "failed") in s.kinds(alert.id)
    assert ("slack", "resolved", "ok") in s.kinds(alert.id)


def test_a_slow_channel_blocks_neither_the_caller_nor_the_other_channels(tmp_path: Path) -> None:
    gate = threading.Event()
    pd = Recorder("pagerduty", gate=gate)
    slack = Recorder("slack")
    s = Setup(tmp_path, pagerduty=pd, slack=slack, grafana=Recorder("grafana"))
    t0 = time.time()
    started = time.monotonic()
    s.router.route(s.life.apply(Snapshot([backup_failure()], PROM), t0), t0)
    assert time.monotonic() - started < 1.0  # route() does not wait for deliveries
    deadline = time.monotonic() + 5
    while not slack.sent and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(slack.sent) == 1 and pd.sent == []  # slack delivered while pagerduty hangs
    gate.set()
    assert s.router.wait(10)
    assert len(pd.sent) == 1


def test_a_failing_channel_is_recorded_and_the_others_still_deliver(tmp_path: Path) -> None:
    def broken(channel: Recorder, notice: object) -> object:
        if channel.name == "pagerduty":
            raise RuntimeError("boom")
        return channel.send(notice)  # type: ignore[arg-type]

    s = Setup(tmp_path)
    s.router = Router(s.ctx.config.alerts, s.book, s.channels, deliver=broken)  # type: ignore[arg-type]
    s.step([backup_failure()], time.time())
    alert = s.book.open_alerts()[0]
    found = {n.channel: (n.outcome, n.detail) for n in s.book.notifications(alert.id)}
    assert found["pagerduty"] == ("failed", "RuntimeError: boom") and found["slack"][0] == "ok"


def test_an_alert_with_no_channel_is_recorded_as_skipped(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, channels="")
    book = ctx.catalog.alerts
    router = Router(ctx.config.alerts, book, {}, deliver=once)
    life = Lifecycle(ctx.config.alerts, book)
    router.route(life.apply(Snapshot([backup_failure()], PROM)))
    alert = book.open_alerts()[0]
    assert [(n.channel, n.kind, n.outcome, n.detail) for n in book.notifications(alert.id)] == [
        ("none", "firing", "skipped", "no channel configured for backup_failure")]


def test_silenced_alerts_are_recorded_not_sent(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    s.book.add_silence("backup_failure", "main", time.time() + 3600, "maintenance window", "ops")
    s.step([backup_failure()], time.time())
    alert = s.book.open_alerts()[0]
    assert all(c.sent == [] for c in s.channels.values())
    assert [(n.channel, n.kind, n.outcome) for n in s.book.notifications(alert.id)] == [
        ("pagerduty", "silenced", "skipped"), ("slack", "silenced", "skipped")]
    assert "maintenance window" in s.book.notifications(alert.id)[0].detail


def test_secrets_never_reach_the_catalog(tmp_path: Path) -> None:
    pd = Recorder("pagerduty", outcome=Outcome.FAILED, detail=f"HTTP 400 for key {PD_KEY}")
    slack = Recorder("slack", outcome=Outcome.FAILED, detail=f"POST {SLACK_HOOK} refused")
    s = Setup(tmp_path, pagerduty=pd, slack=slack)
    s.step([backup_failure()], time.time())
    details = [n.detail for n in s.book.notifications(s.book.open_alerts()[0].id)]
    assert len(details) == 2 and all("***" in d for d in details)
    assert not any(PD_KEY in d or SLACK_HOOK in d or "SeCrEtWeBhOoK" in d for d in details)


def test_acknowledge_tells_the_channels_that_got_it(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    s.step([backup_failure()], time.time())
    alert = s.life.acknowledge(s.book.open_alerts()[0].id, "alice")
    deliveries = s.router.acknowledge(alert)
    assert sorted(d.channel for d in deliveries) == ["pagerduty", "slack"]
    ack = s.channels["pagerduty"].sent[-1]
    assert (ack.state, ack.acknowledged_by, ack.key) == ("acknowledged", "alice", alert.fingerprint)
    assert ("pagerduty", "acknowledged", "ok") in s.kinds(alert.id)
