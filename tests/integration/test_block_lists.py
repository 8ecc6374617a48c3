"""Block lists on a real cluster: an unchanged file costs a backup a few bytes whatever its
size, every backup restores alone, expire collects lists no kept backup needs, and a copy
in another region carries the lists and restores."""

from __future__ import annotations

import json
from pathlib import Path

from engine.repository import layout
from engine.repository.manifest import read_manifest
from engine.repository.storage.posix import PosixStorage
from tests.integration.pg import Lifeboat


def backups(lifeboat: Lifeboat) -> list[dict]:
    return json.loads(lifeboat.run("info", "--output", "json").stdout)["clusters"][0]["backups"]


def cost(lifeboat: Lifeboat, backup: dict) -> int:
    """What a backup added to the repository: its manifest, new packs and new block lists."""
    manifest = lifeboat.repo / layout.manifest_key("main", backup["id"])
    return manifest.stat().st_size + backup["stored_bytes"] + backup["list_bytes"]


def lists(repo: Path) -> set[str]:
    return {p.name for p in (repo / layout.lists_prefix("main")).rglob("*") if p.is_file()}


def settle(lifeboat: Lifeboat, table: str) -> None:
    """Hint bits set and visibility map written now, so that no later read changes the pages."""
    lifeboat.cluster.sql(f"ALTER TABLE {table} SET (autovacuum_enabled = off)")
    lifeboat.cluster.sql(f"VACUUM (FREEZE, ANALYZE) {table}")
    lifeboat.cluster.sql("CHECKPOINT")


def test_an_incremental_after_no_change_costs_the_same_whatever_the_database_size(
        lifeboat: Lifeboat) -> None:
    source = lifeboat.cluster
    source.sql("CREATE TABLE small AS SELECT g, md5(g::text) AS h FROM generate_series(1, 15000) g")
    settle(lifeboat, "small")
    lifeboat.run("backup")
    lifeboat.run("backup", "--type", "incr")
    source.sql("CREATE TABLE big AS SELECT g, repeat(md5(g::text), 4) AS h "
               "FROM generate_series(1, 600000) g")  # 100 MB: one file of its own
    settle(lifeboat, "big")
    lifeboat.run("backup")
    lifeboat.run("backup", "--type", "incr")
    full_1, incr_1, full_2, incr_2 = backups(lifeboat)
    assert full_2["size_bytes"] > full_1["size_bytes"] + 100_000_000
    before, after = cost(lifeboat, incr_1), cost(lifeboat, incr_2)
    assert before < 64 * 1024, before
    # the 100 MB table (its heap by its list's id; its free space and visibility maps, a few
    # pages each, inline) costs about a kilobyte: nothing that grows with its 12,800 pages
    assert after - before < 2048, (before, after)
    print(f"no-change incremental: {before} bytes, {after} bytes with 100 MB more")
    assert incr_2["stored_bytes"] < 64 * 1024 and incr_2["list_bytes"] == 0
    assert cost(lifeboat, full_2) > 5_000_000  # the full backup did store the table


def test_an_incremental_restores_alone_after_its_base_expired_and_from_a_copy(
        lifeboat: Lifeboat) -> None:
    copy = lifeboat.workspace.path("block-lists-copy-dr")
    lifeboat.write_config(lifeboat.cluster, extra=(
        '\n[retention]\nfull = 1\ngc_grace = "0s"\nexpire_after_backup = false\n'
        f'[repository.copies.dr]\npath = "{copy}"\n'))
    source = lifeboat.cluster
    source.sql("CREATE TABLE kept AS SELECT g, md5(g::text) AS h FROM generate_series(1, 100000) g")
    source.sql("CREATE TABLE changed AS SELECT g, md5(g::text) AS h FROM generate_series(1, 100000) g")
    settle(lifeboat, "kept")
    lifeboat.run("backup")
    source.sql("UPDATE changed SET h = md5(h) WHERE g % 10 = 0")
    source.sql("CHECKPOINT")
    lifeboat.run("backup", "--type", "incr")
    lifeboat.switch_and_archive()
    at_incr = source.table_checksums()
    source.sql("INSERT INTO changed SELECT g, 'after' FROM generate_series(1, 1000) g")
    lifeboat.run("backup")
    full, incr, newest = backups(lifeboat)
    assert incr["base"] == full["id"]
    before = lists(lifeboat.repo)
    storage = PosixStorage(lifeboat.repo)

    def listed(backup_id: str) -> set[str]:
        manifest = read_manifest(storage, "main", backup_id)
        return {e.list_id.hex() for e in manifest.entries() if e.list_id is not None}

    only_full = listed(full["id"]) - listed(incr["id"]) - listed(newest["id"])
    shared = listed(full["id"]) & listed(incr["id"])
    path = source.value("SELECT pg_relation_filepath('kept')")
    kept_list = next(e.list_id.hex() for e in read_manifest(storage, "main", incr["id"]).entries()
                     if e.path == path)
    assert only_full and kept_list in shared  # the unchanged table's list is one object for both

    done = json.loads(lifeboat.run("expire", "--output", "json").stdout)
    assert [e["id"] for e in done["expired"]] == [full["id"]]
    assert done["lists_removed"] == len(only_full)
    assert lists(lifeboat.repo) == before - only_full  # shared lists stay
    assert lifeboat.run("verify", check=False).returncode == 0

    restored, _ = lifeboat.restore("--backup", incr["id"], "--target", "immediate")
    assert restored.table_checksums() == at_incr
    restored.stop("immediate")

    report = json.loads(lifeboat.run("copy", "--output", "json").stdout)
    copied = report[0] if isinstance(report, list) else report
    assert copied["lists_copied"] == len(lists(lifeboat.repo)) == len(lists(copy))
    from_copy = lifeboat.workspace.path("block-lists-copy.toml", create=False)
    text = lifeboat.config.read_text().split("[repository.copies.dr]")[0]
    from_copy.write_text(text.replace(f'"{lifeboat.repo}"', f'"{copy}"', 1))
    lifeboat.config, original = from_copy, lifeboat.config
    try:
        restored, _ = lifeboat.restore("--backup", incr["id"], "--target", "immediate")
    finally:
        lifeboat.config = original
    assert restored.table_checksums() == at_incr
