"""Point-in-time recovery: every kind of target, and recovery across a timeline switch."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import pytest

from tests.integration.agent import configure
from tests.integration.pg import Cluster, Lifeboat


@dataclass
class Marker:
    id: int
    xid: int
    lsn: str
    committed_at: str


def commit_marker(cluster: Cluster, marker_id: int) -> Marker:
    with cluster.connect() as conn:
        conn.autocommit = False
        xid = conn.execute("INSERT INTO markers VALUES (%s) RETURNING txid_current()",
                           (marker_id,)).fetchone()[0]
        conn.commit()
        conn.autocommit = True
        lsn, at = conn.execute("SELECT pg_current_wal_lsn()::text, clock_timestamp()::text"
                               ).fetchone()
    time.sleep(0.2)  # commit timestamps well apart
    return Marker(marker_id, int(xid), lsn, at)


def markers(cluster: Cluster) -> list[int]:
    return [r[0] for r in cluster.sql("SELECT id FROM markers ORDER BY id")]


@pytest.fixture
def history(lifeboat: Lifeboat) -> dict[int, Marker]:
    """A backup, then markers 1..3 each in its own transaction, restore point rp<N> after each."""
    lifeboat.cluster.sql("CREATE TABLE markers (id int primary key)")
    lifeboat.run("backup")
    made = {}
    for marker_id in (1, 2, 3):
        made[marker_id] = commit_marker(lifeboat.cluster, marker_id)
        lifeboat.run("restore-point", f"rp{marker_id}")
    lifeboat.switch_and_archive()
    return made


def newest_restore(lifeboat: Lifeboat) -> dict[str, Any]:
    """What the newest restore recorded in the catalog (the CLI records its runs as jobs)."""
    jobs = json.loads(lifeboat.run("jobs", "--output", "json", "--limit", "50").stdout)["jobs"]
    return next(j["result"] for j in jobs if j["kind"] == "restore")


def test_every_target_kind_stops_exactly_there(lifeboat: Lifeboat, history: dict[int, Marker]) -> None:
    configure(lifeboat)  # a catalog in the workspace, where the restores record their results
    cases = [
        (["--target-time", history[2].committed_at], [1, 2]),
        (["--target-xid", str(history[2].xid)], [1, 2]),
        (["--target-xid", str(history[2].xid), "--target-exclusive"], [1]),
        (["--target-lsn", history[1].lsn], [1]),
        (["--target-name", "rp2"], [1, 2]),
        (["--target", "immediate"], []),
        ([], [1, 2, 3]),
    ]
    for args, expected in cases:
        restored, done = lifeboat.restore(*args)
        assert markers(restored) == expected, (args, done.stdout)
        assert "recovery promoted" in done.stdout
        if args and args[0] != "--target":
            assert "recovery stopping" in done.stdout, done.stdout
        restored.stop("immediate")
        gap = newest_restore(lifeboat)["target_gap_bytes"]
        if args[:1] == ["--target-name"]:
            assert gap == 0, gap  # replay ends exactly at the restore point's record
        elif args[:1] == ["--target-lsn"]:
            # an inclusive LSN target replays the record starting there, then stops
            assert gap is not None and -65536 <= gap < 0, gap
        else:
            assert gap is None, (args, gap)


def test_target_actions_pause_and_shutdown(lifeboat: Lifeboat, history: dict[int, Marker]) -> None:
    paused, done = lifeboat.restore("--target-name", "rp1", "--target-action", "pause")
    assert "recovery paused" in done.stdout
    assert paused.value("SELECT pg_is_in_recovery()") is True
    assert markers(paused) == [1]
    paused.stop("immediate")
    # the direct restore is recorded as a job with exactly the options that ran
    recorded = [j for j in json.loads(lifeboat.run("jobs", "--output", "json", "--limit",
                                                   "1000").stdout)["jobs"]
                if j["params"].get("pgdata") == str(paused.pgdata)]
    assert [(j["kind"], j["state"]) for j in recorded] == [("restore", "succeeded")]
    assert {k: recorded[0]["params"][k] for k in ("target", "target_value", "target_action")} == {
        "target": "name", "target_value": "rp1", "target_action": "pause"}
    stopped, done = lifeboat.restore("--target-xid", str(history[2].xid),
                                     "--target-action", "shutdown")
    assert "recovery shut down" in done.stdout
    assert not (stopped.pgdata / "postmaster.pid").exists()


def test_restore_without_start_writes_recovery_settings(lifeboat: Lifeboat,
                                                        history: dict[int, Marker]) -> None:
    restored, _ = lifeboat.restore("--target-name", "rp3", start=False)
    auto = (restored.pgdata / "postgresql.auto.conf").read_text()
    assert "recovery_target_name = 'rp3'" in auto and "wal-get %f" in auto
    assert (restored.pgdata / "recovery.signal").exists()
    assert "START WAL LOCATION" in (restored.pgdata / "backup_label").read_text()
    restored.log = restored.pgdata.parent / f"{restored.pgdata.name}.log"
    restored.start()  # a plain pg_ctl start recovers to the target
    restored.wait_promoted()
    assert markers(restored) == [1, 2, 3]


def test_restore_after_a_timeline_switch(lifeboat: Lifeboat) -> None:
    source = lifeboat.cluster
    source.sql("CREATE TABLE markers (id int primary key)")
    first_backup = lifeboat.run("backup")
    commit_marker(source, 1)
    lifeboat.switch_and_archive()
    # Restore and promote with archiving kept: the new timeline goes to the same archive.
    promoted, done = lifeboat.restore(archive_mode="preserve")
    assert "timeline 2" in done.stdout
    source.stop()
    commit_marker(promoted, 2)
    # The promoted cluster is now the cluster: point the configuration at it and back it up.
    lifeboat.write_config(promoted)
    second_backup = lifeboat.run("backup")
    commit_marker(promoted, 3)
    lifeboat.switch_and_archive()
    info = lifeboat.run("info", "--output", "json").stdout
    assert '"timeline": 2' in info

    newest, done = lifeboat.restore()
    assert markers(newest) == [1, 2, 3]
    assert newest.value("SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)") > "00000002"
    newest.stop("immediate")
    # The first backup (timeline 1) follows the history file onto timeline 2.
    first_id = first_backup.stdout.split()[1]
    assert first_id != second_backup.stdout.split()[1]
    older, _ = lifeboat.restore("--backup", first_id)
    assert markers(older) == [1, 2, 3]
