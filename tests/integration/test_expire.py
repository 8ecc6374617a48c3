"""Retention on a real cluster: what expires goes, what a kept backup needs stays."""

from __future__ import annotations

import json

from tests.integration.pg import Lifeboat


def backup_ids(lifeboat: Lifeboat) -> list[str]:
    report = json.loads(lifeboat.run("info", "--output", "json").stdout)["clusters"][0]
    return [b["id"] for b in report["backups"]]


def pack_files(lifeboat: Lifeboat) -> set[str]:
    return {p.name for p in (lifeboat.repo / "clusters" / "main" / "packs").rglob("*")
            if p.is_file()}


def write(lifeboat: Lifeboat, n: int) -> None:
    lifeboat.cluster.sql(f"INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, {n}) g")
    lifeboat.switch_and_archive()


def test_expire_keeps_what_retention_and_kept_backups_need(lifeboat: Lifeboat) -> None:
    lifeboat.write_config(lifeboat.cluster, extra=(
        '\n[retention]\nfull = 2\nincr = 1\ngc_grace = "0s"\nexpire_after_backup = false\n'))
    lifeboat.cluster.sql("CREATE TABLE t (n int, h text)")
    write(lifeboat, 20000)
    lifeboat.run("backup")
    first_packs = pack_files(lifeboat)
    write(lifeboat, 20000)
    lifeboat.run("backup")
    write(lifeboat, 20000)
    lifeboat.run("backup", "--type", "incr")
    write(lifeboat, 20000)
    lifeboat.run("backup")
    first, second, incr, third = backup_ids(lifeboat)
    wal_before = json.loads(lifeboat.run("info", "--output", "json").stdout)["clusters"][0]["archive"]

    dry = json.loads(lifeboat.run("expire", "--dry-run", "--output", "json").stdout)
    assert [e["id"] for e in dry["expired"]] == [first]
    assert dry["packs_removed"] == len(first_packs) and dry["wal_removed"] > 0
    assert backup_ids(lifeboat) == [first, second, incr, third]  # a dry run removes nothing

    done = lifeboat.run("expire")
    assert f"expire {first} (full): more than 2 full backups are kept" in done.stdout
    assert backup_ids(lifeboat) == [second, incr, third]
    assert not first_packs & pack_files(lifeboat)
    archive = json.loads(lifeboat.run("info", "--output", "json").stdout)["clusters"][0]["archive"]
    assert archive[0]["first"] > wal_before[0]["first"]
    second_start = json.loads(lifeboat.run("info", "--output", "json").stdout)[
        "clusters"][0]["backups"][0]["start_wal"]
    assert archive[0]["first"] <= second_start  # nothing a kept backup needs is gone
    assert lifeboat.run("verify", check=False).returncode == 0
    restored, _ = lifeboat.restore("--backup", second)
    assert restored.value("SELECT count(*) FROM t") == 80000  # replayed to the end of the archive


def test_backup_applies_retention_afterwards(lifeboat: Lifeboat) -> None:
    lifeboat.write_config(lifeboat.cluster, extra='\n[retention]\nfull = 1\ngc_grace = "0s"\n')
    lifeboat.cluster.sql("CREATE TABLE t (n int, h text)")
    lifeboat.run("backup")
    first = backup_ids(lifeboat)
    done = lifeboat.run("backup")
    assert "1 backups expired" in done.stdout
    assert backup_ids(lifeboat) != first and len(backup_ids(lifeboat)) == 1
    kept = lifeboat.run("backup", "--no-expire")
    assert "expired" not in kept.stdout and len(backup_ids(lifeboat)) == 2
