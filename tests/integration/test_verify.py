"""verify finds and names every kind of damage, and --since-last checks only what is new."""

from __future__ import annotations

import json
import time
from pathlib import Path

from engine.repository import layout
from engine.repository.manifest import read_manifest
from engine.repository.storage.posix import PosixStorage
from tests.integration.pg import Lifeboat
from tests.manifests import blocks_of, entry_of


def verify(lifeboat: Lifeboat, *args: str) -> tuple[int, dict]:
    done = lifeboat.run("verify", "--output", "json", *args, check=False)
    return done.returncode, json.loads(done.stdout)


def fill(lifeboat: Lifeboat, segments: int) -> None:
    lifeboat.cluster.sql("CREATE TABLE IF NOT EXISTS filler (n int, pad text)")
    for _ in range(segments):
        lifeboat.cluster.sql("INSERT INTO filler SELECT g, md5(g::text) FROM generate_series(1, 3000) g")
        lifeboat.switch_and_archive()


def test_verify_names_each_kind_of_damage(lifeboat: Lifeboat) -> None:
    source = lifeboat.cluster
    source.sql("CREATE TABLE data AS SELECT g, md5(g::text) AS h FROM generate_series(1, 50000) g")
    lifeboat.run("backup")
    fill(lifeboat, 3)
    lifeboat.run("backup", "--type", "incr")
    code, report = verify(lifeboat)
    assert code == 0 and report["ok"] and report["blocks"] > 100 and report["wal_segments"] >= 4

    storage = PosixStorage(lifeboat.repo)
    info = json.loads(lifeboat.run("info", "--output", "json").stdout)["clusters"][0]
    full, incr = info["backups"]
    # 1. a flipped byte in a block of the table
    path = source.value("SELECT pg_relation_filepath('data')")
    manifest = read_manifest(storage, "main", full["id"])
    block = blocks_of(manifest, path)[2]
    pack = Path(storage.path_of(layout.pack_key("main", block.pack)))
    data = bytearray(pack.read_bytes())
    data[block.offset + 10] ^= 0x04
    pack.write_bytes(bytes(data))
    # 2. a truncated manifest
    manifest_file = Path(storage.path_of(layout.manifest_key("main", incr["id"])))
    manifest_file.write_bytes(manifest_file.read_bytes()[:-100])
    # 3. a WAL segment deleted from the middle
    archive_range = info["archive"][0]
    victim = f"{archive_range['last'][:16]}{int(archive_range['last'][16:], 16) - 1:08X}"
    storage.delete(layout.wal_key("main", victim))

    code, report = verify(lifeboat)
    assert code == 1 and not report["ok"]
    found = {(p["kind"], p["item"]) for p in report["problems"]}
    assert ("manifest", incr["id"]) in found
    assert any(kind == "block" and path in item and full["id"] in item for kind, item in found)
    assert ("wal", victim) in found
    text = lifeboat.run("verify", check=False)
    assert text.returncode == 1 and victim in text.stdout and "missing from the archive" in text.stdout


def test_missing_history_file_is_named(lifeboat: Lifeboat) -> None:
    lifeboat.cluster.sql("CREATE TABLE t (n int)")
    lifeboat.run("backup")
    promoted, _ = lifeboat.restore(archive_mode="preserve")  # timeline 2, archived too
    promoted.sql("INSERT INTO t SELECT generate_series(1, 1000)")
    promoted.sql("SELECT pg_switch_wal()")
    storage = PosixStorage(lifeboat.repo)
    for _ in range(100):
        if any(k.rsplit("/", 1)[-1].startswith("00000002") for k in storage.list("clusters/main/wal")
               if not k.endswith(".history")):
            break
        time.sleep(0.1)
    else:
        raise AssertionError("no segment of timeline 2 was archived")
    assert verify(lifeboat)[0] == 0
    storage.delete(layout.wal_key("main", "00000002.history"))
    code, report = verify(lifeboat)
    assert code == 1
    [backup] = json.loads(lifeboat.run("info", "--output", "json").stdout)["clusters"][0]["backups"]
    assert {"kind": "history", "item": "00000002.history",
            "key": "clusters/main/wal/history/00000002.history",
            "detail": "missing from the archive, but segments of timeline 2 are archived",
            "affects": f"recovery of backup {backup['id']} reads it (to follow timeline 2 or find the "
                       "newest timeline) and stops at it"} in report["problems"]


def test_since_last_checks_only_what_is_new(lifeboat: Lifeboat) -> None:
    lifeboat.cluster.sql("CREATE TABLE t AS SELECT g FROM generate_series(1, 100000) g")
    lifeboat.run("backup")
    code, first = verify(lifeboat)
    assert code == 0 and first["frames"] > 0
    code, again = verify(lifeboat, "--since-last")
    assert code == 0 and again["frames"] == 0 and again["skipped_packs"] > 0
    lifeboat.cluster.sql("INSERT INTO t SELECT g FROM generate_series(1, 100000) g")
    lifeboat.run("backup", "--type", "incr")
    code, new = verify(lifeboat, "--since-last")
    assert code == 0 and 0 < new["frames"] < first["frames"] and new["skipped_packs"] > 0


def test_verify_names_a_damaged_or_missing_block_list_and_the_backups_it_breaks(
        lifeboat: Lifeboat) -> None:
    source = lifeboat.cluster
    source.sql("CREATE TABLE data AS SELECT g, md5(g::text) AS h FROM generate_series(1, 50000) g")
    source.sql("ALTER TABLE data SET (autovacuum_enabled = off)")
    source.sql("VACUUM (FREEZE) data")
    source.sql("CHECKPOINT")
    lifeboat.run("backup")
    lifeboat.run("backup", "--type", "incr")
    full, incr = (b["id"] for b in json.loads(lifeboat.run("info", "--output", "json").stdout)[
        "clusters"][0]["backups"])
    path = source.value("SELECT pg_relation_filepath('data')")
    storage = PosixStorage(lifeboat.repo)
    ids = {entry_of(read_manifest(storage, "main", b), path).list_id for b in (full, incr)}
    assert len(ids) == 1  # the unchanged table: one list for both backups
    key = layout.list_key("main", ids.pop().hex())
    stored = Path(storage.path_of(key))
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0x01
    stored.write_bytes(bytes(data))

    code, report = verify(lifeboat)
    assert code == 1
    problems = [p for p in report["problems"] if p["kind"] == "list"]
    assert len(problems) == 1 and problems[0]["item"] == key
    assert "checksum mismatch" in problems[0]["detail"]
    assert problems[0]["affects"] == f"backups it breaks: {full} ({path}), {incr} ({path})"

    stored.unlink()
    code, report = verify(lifeboat)
    assert code == 1
    [problem] = [p for p in report["problems"] if p["kind"] == "list"]
    assert "is missing from the repository" in problem["detail"] and incr in problem["affects"]
    _, done = lifeboat.restore("--backup", incr, check=False)
    assert done.returncode == 1 and f"block list {key} (file {path}) is missing" in done.stderr
