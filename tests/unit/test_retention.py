from datetime import UTC, datetime, timedelta

from engine.repository.retention import plan
from tests.unit.helpers import summary

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
SEG = 16 * 1024 * 1024


def backup(backup_type: str, days_ago: float, segno: int) -> object:
    stopped = NOW - timedelta(days=days_ago)
    stamp = stopped.strftime("%Y%m%d-%H%M%S") + backup_type[0].upper()
    return summary(stamp, type=backup_type, stopped_at=stopped.isoformat().replace("+00:00", "Z"),
                   start_lsn=f"0/{segno * SEG + 40:X}", stop_lsn=f"0/{segno * SEG + 256:X}")


def ids(items: list) -> list[str]:
    return [b.id[-1] + str(round((NOW - datetime.fromisoformat(b.stopped_at.replace("Z", "+00:00")))
                                 .total_seconds() / 86400)) for b in items]


HISTORY = [backup("full", 20, 2), backup("incr", 19, 4), backup("full", 10, 6),
           backup("incr", 9, 8), backup("full", 3, 10), backup("incr", 1, 12)]


def test_count_rule_keeps_the_newest_fulls() -> None:
    result = plan(HISTORY, {"full": ("count", 2)}, None, NOW.timestamp(), SEG)
    assert ids(result.expire) == ["F20"]
    assert result.reasons[result.expire[0].id] == "more than 2 full backups are kept"
    assert result.wal_before_segno == 4  # the oldest kept backup (incr of day 19) starts there


def test_age_rules_per_type() -> None:
    result = plan(HISTORY, {"full": ("age", 15 * 86400), "incr": ("age", 5 * 86400)}, None,
                  NOW.timestamp(), SEG)
    assert ids(result.expire) == ["F20", "I19", "I9"]
    assert result.wal_before_segno == 6


def test_the_recovery_window_and_the_newest_backup_are_never_expired() -> None:
    rules = {"full": ("count", 1), "incr": ("age", 0.0)}
    result = plan(HISTORY, rules, 12 * 86400, NOW.timestamp(), SEG)
    # the window of 12 days starts with the newest backup older than 12 days: the incr of day 19
    assert "I19" in ids(result.keep) and "I1" in ids(result.keep)
    assert result.reasons[HISTORY[1].id] == "kept: starts the recovery window"
    assert ids(result.expire) == ["F20", "F10", "I9"]
    assert result.wal_before_segno == 4


def test_nothing_without_rules_or_backups() -> None:
    assert plan(HISTORY, {}, None, NOW.timestamp(), SEG).expire == []
    empty = plan([], {"full": ("count", 1)}, None, NOW.timestamp(), SEG)
    assert empty.expire == [] and empty.wal_before_segno is None
