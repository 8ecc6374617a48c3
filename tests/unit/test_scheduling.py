"""Schedules, windows, resource limits and objective arithmetic (no server)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from engine.agent import conditions
from engine.agent.executor import resource_prefix, worker_count
from engine.agent.scheduler import Scheduler, entries, fires_between, next_fire
from engine.catalog.objectives import PositionHistory, Rates, expected_rto
from engine.catalog.store import Catalog
from engine.config.schema import parse_config
from engine.config.sections import ResourcesConfig
from engine.errors import ConfigError


def _ts(text: str, tz: str = "UTC") -> float:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz)).timestamp()


def _config(tmp_path: Path, cluster_extra: str = "", top: str = "") -> object:
    return parse_config((
        f'[repository]\npath = "{tmp_path}/repo"\n[catalog]\npath = "{tmp_path}/catalog.db"\n{top}\n'
        f'[clusters.main]\npgdata = "/var/lib/pg"\n{cluster_extra}').encode(), "test.toml")


def test_daily_cron_in_a_time_zone() -> None:
    after = _ts("2026-03-01T12:00:00")
    fires = fires_between("0 2 * * *", "Europe/Paris", after, after + 3 * 86400)
    assert [datetime.fromtimestamp(f, ZoneInfo("Europe/Paris")).hour for f in fires] == [2, 2, 2]
    assert datetime.fromtimestamp(fires[0], UTC).hour == 1  # 02:00 CET is 01:00 UTC


def test_first_sunday_means_both_day_fields() -> None:
    after = _ts("2026-11-25T00:00:00")
    fires = fires_between("0 3 1-7 * 0", "UTC", after, after + 100 * 86400)
    days = [datetime.fromtimestamp(f, UTC) for f in fires]
    assert [d.strftime("%Y-%m-%d %H:%M") for d in days] == [
        "2026-12-06 03:00", "2027-01-03 03:00", "2027-02-07 03:00"]
    assert all(d.weekday() == 6 and d.day <= 7 for d in days)


def test_next_fire_is_strictly_after() -> None:
    now = _ts("2026-11-29T01:00:00")
    assert next_fire("0 1 * * 0", "UTC", now) == now + 7 * 86400


@pytest.mark.parametrize(("window", "clock", "inside"), [
    ("01:00-06:00", "03:00", True), ("01:00-06:00", "06:00", False), ("01:00-06:00", "00:59", False),
    ("22:00-04:00", "23:30", True), ("22:00-04:00", "03:59", True), ("22:00-04:00", "12:00", False),
])
def test_windows(window: str, clock: str, inside: bool) -> None:
    assert conditions.in_window(window, "UTC", _ts(f"2026-11-25T{clock}:00")) is inside


def test_window_follows_the_schedules_time_zone() -> None:
    moment = _ts("2026-11-25T02:30:00", "America/New_York")  # 07:30 UTC
    assert conditions.in_window("01:00-06:00", "America/New_York", moment)
    assert not conditions.in_window("01:00-06:00", "UTC", moment)


def test_resources_become_limits() -> None:
    low = ResourcesConfig(io_priority="low", cpu_limit="50%")
    assert resource_prefix(low) == ["ionice", "-c", "3", "nice", "-n", "10"]
    assert worker_count(low, cores=4) == 2 and worker_count(low, cores=1) == 1
    assert worker_count(ResourcesConfig(parallel_jobs=3, cpu_limit="25%"), cores=8) == 3
    assert resource_prefix(ResourcesConfig()) == [] and worker_count(ResourcesConfig()) is None
    assert resource_prefix(ResourcesConfig(io_priority="high", cpu_limit="100%")) == [
        "ionice", "-c", "2", "-n", "0"]


@pytest.mark.parametrize(("extra", "message"), [
    ('[clusters.main.schedules.x]\ncron = "61 * * * *"\n', "schedules.x.cron"),
    ('[clusters.main.schedules.x]\ncron = "0 2 * * *"\ntimezone = "Mars/Base"\n', "unknown time zone"),
    ('[clusters.main.schedules.x]\ncron = "0 2 * * *"\nwindow = "25:00-01:00"\n', "schedules.x.window"),
    ('[clusters.main.schedules.x]\ncron = "0 2 * * *"\nkind = "verify"\ntype = "full"\n',
     "does not apply"),
    ('[clusters.main.schedules.x]\ncron = "0 2 * * *"\n[clusters.main.schedules.x.resources]\n'
     'cpu_limit = "150%"\n', "cpu_limit"),
    ('[clusters.main.schedules.x]\ncron = "0 2 * * *"\nmax_duraton = "4h"\n', "unknown key"),
    ('class = "vital"\n', "clusters.main.class"),
])
def test_bad_schedule_settings_name_the_key(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        _config(tmp_path, extra)
    assert message in str(raised.value) and "test.toml" in str(raised.value)


def test_recovery_classes_and_overrides(tmp_path: Path) -> None:
    config = _config(tmp_path, 'class = "critical"\n')
    assert config.clusters["main"].rpo_objective == 300 and config.clusters["main"].rto_objective == 3600
    assert not config.clusters["main"].synchronous_streaming
    config = _config(tmp_path, 'class = "critical"\n[clusters.main.objectives]\nrpo = "0"\n')
    assert config.clusters["main"].rpo_objective == 0 and config.clusters["main"].synchronous_streaming
    config = _config(tmp_path)
    assert (config.clusters["main"].rpo_objective, config.clusters["main"].rto_objective) == (3600, 14400)


def test_scheduler_fires_catches_up_once_skips_and_notifies_once(tmp_path: Path) -> None:
    config = _config(tmp_path, '[clusters.main.schedules.nightly]\ncron = "0 2 * * *"\ntype = "incr"\n'
                     '[clusters.main.schedules.nightly.resources]\nparallel_jobs = 3\n')
    notices = []
    with Catalog.open(config) as catalog:
        scheduler = Scheduler(config, catalog,
                              lambda c, e, w: notices.append((c, e.name, w)) or {"slack": "ok"})
        names = {e.name for e in entries(config)}
        assert names == {"nightly", "drill-full", "drill-partial"}
        start = _ts("2026-11-25T12:00:00")  # a Wednesday
        assert scheduler.tick(start) == []  # first sight: starts from now
        assert scheduler.tick(start + 3600) == []
        queued = scheduler.tick(start + 3 * 86400)  # three nightly fires passed
        nightly = [catalog.job(i) for i in queued if catalog.job(i).schedule == "nightly"]
        assert len(nightly) == 1
        assert nightly[0].params["type"] == "incr" and nightly[0].params["jobs"] == 3
        assert nightly[0].priority == 40 and nightly[0].requested_by == "schedule:nightly"
        missed = catalog.events(kind="schedule_missed")
        assert any("nightly missed 2 run(s)" in e.message for e in missed)
        later = scheduler.tick(start + 4 * 86400)  # Sunday: the partial drill fires
        assert [catalog.job(i).schedule for i in later] == ["drill-partial"]
        skipped = catalog.events(kind="schedule_skipped")  # the nightly job is still queued
        assert [e.message for e in skipped if "nightly" in e.message]
        # the first Sunday of December is 2026-12-06: notified once, 48 h ahead
        assert notices == []
        before = _ts("2026-12-04T02:59:00")
        scheduler.tick(before)
        assert notices == []
        scheduler.tick(_ts("2026-12-04T03:00:30"))
        scheduler.tick(_ts("2026-12-04T09:00:00"))
        assert len(notices) == 1 and notices[0][1] == "drill-full"
        assert notices[0][2] == datetime(2026, 12, 6, 3, 0, tzinfo=ZoneInfo("UTC"))
        event = catalog.events(kind="drill_notice")[0]
        assert "slack: ok" in event.message and event.severity == "info"


def test_position_history_exposure() -> None:
    history = PositionHistory()
    assert history.exposure(100.0, 0) is None
    history.add(10.0, 1000)
    history.add(20.0, 2000)
    history.add(30.0, 3000)
    assert history.exposure(35.0, 3000) == 0.0  # everything written is safe
    assert history.exposure(35.0, 2500) == 15.0  # safe up to what was written by t=20
    assert history.exposure(35.0, 500) == 25.0  # nothing sampled is safe: since the first sample


def test_expected_rto_adds_restore_replay_and_startup() -> None:
    rates = Rates(100.0, 50.0, 5.0, "test")
    assert expected_rto(1000, 500, rates) == pytest.approx(10 + 10 + 5)


def test_rates_come_from_restores_and_drills(tmp_path: Path) -> None:
    from engine.catalog.objectives import ASSUMED_RESTORE_RATE, measured_rates

    config = _config(tmp_path)
    with Catalog.open(config) as catalog:
        assumed = measured_rates(catalog, "main")
        assert assumed.restore_bytes_per_second == ASSUMED_RESTORE_RATE and "assumed" in assumed.basis
        job = catalog.enqueue("restore", "main", {}, "t", 100)
        catalog.mark_running(job, "a", None)
        catalog.finish(job, "succeeded", {"bytes": 1000, "seconds": 2.0})
        catalog.add_drill("main", "full", 0.0, 10.0, True, 9.0, {"timing": {
            "restore_bytes": 3000, "restore_seconds": 1.0, "wal_bytes": 128 * 2**20,
            "replay_seconds": 2.0}}, "")
        catalog.add_drill("main", "full", 0.0, 10.0, True, 9.0, {"timing": {
            "restore_bytes": 3000, "restore_seconds": 1.0, "wal_bytes": 1000, "replay_seconds": 1.5}}, "")
        rates = measured_rates(catalog, "main")
    assert rates.restore_bytes_per_second == 3000  # median of 500, 3000, 3000
    assert rates.replay_bytes_per_second == 64 * 2**20
    assert rates.startup_seconds == 1.5
    assert "measured by 3 restore(s)" in rates.basis and "replay rate measured" in rates.basis


def test_blockers_name_their_cause(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = _config(tmp_path, '[clusters.main.schedules.x]\ncron = "0 2 * * *"\n'
                     'window = "01:00-06:00"\nmax_load = 2.5\n')
    schedule, cluster = config.clusters["main"].schedules["x"], config.clusters["main"]
    monkeypatch.setattr(conditions, "host_load", lambda: 3.75)
    outside = conditions.start_blocker(schedule, cluster, _ts("2026-11-25T12:00:00"))
    assert outside.cause == "window" and "01:00-06:00 (UTC)" in outside.message
    busy = conditions.start_blocker(schedule, cluster, _ts("2026-11-25T02:00:00"))
    assert busy == conditions.Blocker("load", "host load 3.75 is above max_load 2.5")
    monkeypatch.setattr(conditions, "host_load", lambda: 1.0)
    assert conditions.start_blocker(schedule, cluster, _ts("2026-11-25T02:00:00")) is None


def test_a_notice_a_channel_could_not_take_is_sent_again_later(tmp_path: Path) -> None:
    config = _config(tmp_path)
    answers = iter([{"slack": "retryable"}, {"slack": "ok"}])
    calls = []

    def notify(cluster: str, entry: object, when: datetime) -> dict[str, str]:
        calls.append(when)
        return next(answers)

    with Catalog.open(config) as catalog:
        scheduler = Scheduler(config, catalog, notify)
        start = _ts("2026-12-04T09:00:00")  # 42 h before the first Sunday of December, 03:00
        scheduler.tick(start)
        scheduler.tick(start + 10)  # too soon to retry
        assert len(calls) == 1
        scheduler.tick(start + 301)
        scheduler.tick(start + 700)  # delivered: not sent again
        assert len(calls) == 2 and calls[0] == calls[1]
        messages = [e.message for e in reversed(catalog.events(kind="drill_notice"))]
    assert "will retry in 5m" in messages[0] and "slack: ok" in messages[1]
