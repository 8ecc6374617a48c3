"""verify checks every object in the cluster's part of the repository against the checksum
recorded when it was written: one flipped byte in any of them (needed by a backup or not)
exits 1 naming it and what it breaks; an object Lifeboat did not write is named as unknown.
--since-last skips the immutable objects an earlier verify proved, yet still checks the
small mutable ones and whatever was written since."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.backup.packset import PackSet
from engine.repository import layout
from engine.repository.manifest import read_manifest
from engine.repository.packs import FOOTER
from engine.repository.storage.posix import PosixStorage
from engine.repository.verify.report import NOT_NEEDED
from tests.integration.pg import Lifeboat, Workspace, chown_postgres
from tests.manifests import blocks_of, entry_of

WAL = "clusters/main/wal"


@dataclass
class Repo:
    lifeboat: Lifeboat
    storage: PosixStorage
    backup: dict  # info's record of the one backup
    table: str  # the relation file of the table "data"
    orphan_pack: str  # a committed pack no backup refers to (what a killed backup leaves)

    def path(self, key: str) -> Path:
        return Path(self.storage.path_of(key))

    def wal_names(self) -> list[str]:
        return sorted(k.rsplit("/", 1)[-1] for k in self.storage.list(WAL))

    def segments(self) -> list[str]:
        return [n for n in self.wal_names() if len(n) == 24]


def verify(lifeboat: Lifeboat, *args: str) -> tuple[int, dict]:
    done = lifeboat.run("verify", "--output", "json", *args, check=False)
    return done.returncode, json.loads(done.stdout)


@pytest.fixture(scope="module")
def repo(workspace: Workspace) -> Iterator[Repo]:
    """One cluster with WAL archived before its one backup and after it, a restore point, a
    timeline history file, a partial segment, and a pack no backup refers to."""
    lifeboat = Lifeboat.create(workspace)
    try:
        lifeboat.cluster.start()
        lifeboat.run("init")
        source = lifeboat.cluster
        source.sql("CREATE TABLE data AS SELECT g, md5(g::text) AS h FROM generate_series(1, 50000) g")
        lifeboat.switch_and_archive()
        lifeboat.switch_and_archive()  # segments older than the backup
        lifeboat.run("backup")
        for _ in range(2):  # segments after it: its recovery window
            source.sql("INSERT INTO data SELECT g, md5(g::text) FROM generate_series(1, 3000) g")
            lifeboat.switch_and_archive()
        lifeboat.run("restore-point", "before-migration")
        lifeboat.switch_and_archive()
        pg_wal = Path(workspace.path("pushed"))
        history = pg_wal / "00000002.history"
        history.write_text("1\t0/1000000\tno recovery target specified\n")
        newest = sorted(p.name for p in (source.pgdata / "pg_wal").iterdir() if len(p.name) == 24)[0]
        partial = pg_wal / f"{newest}.partial"
        partial.write_bytes((source.pgdata / "pg_wal" / newest).read_bytes())
        for path in (history, partial):
            chown_postgres(path)
            lifeboat.run("wal-push", str(path))
        storage = PosixStorage(lifeboat.repo)
        packs = PackSet(storage, "main", pack_size=1 << 20)
        pack = packs.borrow()
        frames = [b"frame one of a backup that was killed", b"and its second frame"]
        pack.append(frames, [hashlib.sha256(f).digest() for f in frames])
        packs.give_back(pack)
        packs.finish()
        own_by_postgres(storage, pack.id)
        [backup] = json.loads(lifeboat.run("info", "--output", "json").stdout)["clusters"][0]["backups"]
        code, report = verify(lifeboat)
        assert code == 0, report["problems"]
        yield Repo(lifeboat, storage, backup, source.value("SELECT pg_relation_filepath('data')"),
                   pack.id)
    finally:
        lifeboat.cleanup()


def own_by_postgres(storage: PosixStorage, pack: str) -> None:
    """A pack written here (as root) as Lifeboat's os_user writes one."""
    path = Path(storage.path_of(layout.pack_key("main", pack)))
    for each in (path.parent, path):
        chown_postgres(each)


def _wal(name: Callable[[Repo], str]) -> Callable[[Repo], str]:
    return lambda r: layout.wal_key("main", name(r))


def _block(r: Repo) -> tuple[str, int]:
    block = blocks_of(read_manifest(r.storage, "main", r.backup["id"]), r.table)[2]
    return layout.pack_key("main", block.pack), block.offset + block.stored // 2


def _index(r: Repo) -> tuple[str, int]:
    key = _block(r)[0]
    return key, r.storage.size(key) - FOOTER.size - 7  # in the index: a frame's SHA-256


def _list(r: Repo) -> str:
    entry = entry_of(read_manifest(r.storage, "main", r.backup["id"]), r.table)
    assert entry.list_id is not None
    return layout.list_key("main", entry.list_id.hex())


# Each case: the object's key (and the byte to flip, else its middle), the kind the problem
# is reported as, and what it must say the damage affects ("" when another test owns that).
CASES: dict[str, tuple[Callable[[Repo], str | tuple[str, int]], str, Callable[[Repo], str]]] = {
    "wal older than the backup": (_wal(lambda r: r.segments()[0]), "wal", lambda r: NOT_NEEDED),
    "wal the backup needs to be consistent": (
        _wal(lambda r: r.backup["start_wal"]), "wal",
        lambda r: f"backup {r.backup['id']} cannot be restored (this segment is needed to reach "
                  "consistency)"),
    "wal of the recovery window": (
        _wal(lambda r: r.segments()[-1]), "wal",
        lambda r: "point-in-time recovery on timeline 1 past "),
    "partial segment": (_wal(lambda r: next(n for n in r.wal_names() if n.endswith(".partial"))),
                        "wal", lambda r: f"{NOT_NEEDED} (a partial segment: recovery does not read it)"),
    "backup history file": (
        _wal(lambda r: next(n for n in r.wal_names() if n.endswith(".backup"))), "backup-history",
        lambda r: f"{NOT_NEEDED} (the backup history file of backup {r.backup['id']}; recovery does "
                  "not read it)"),
    "timeline history file": (
        _wal(lambda r: "00000002.history"), "history",
        lambda r: f"recovery of backup {r.backup['id']} reads it (to follow timeline 2 or find the "
                  "newest timeline) and stops at it"),
    "pack region a backup uses": (_block, "block",
                                  lambda r: f"backups it breaks: {r.backup['id']} ({r.table} blocks 0.."),
    "pack index": (_index, "pack", lambda r: f"{NOT_NEEDED} (the pack's index"),
    "pack no backup uses": (lambda r: (layout.pack_key("main", r.orphan_pack), 5), "pack",
                            lambda r: NOT_NEEDED),
    "manifest": (lambda r: layout.manifest_key("main", r.backup["id"]), "manifest",
                 lambda r: f"backup {r.backup['id']} cannot be restored"),
    "block list": (_list, "list", lambda r: f"backups it breaks: {r.backup['id']} ({r.table})"),
    "cluster.json": (lambda r: layout.cluster_info_key("main"), "cluster",
                     lambda r: "every command of cluster 'main' refuses to run, wal-push included"),
    "restore point": (lambda r: layout.restore_point_key("main", "before-migration"), "restore-point",
                      lambda r: "restore --target-name before-migration cannot find its LSN"),
    "verified.json": (lambda r: layout.verify_state_key("main"), "verify-state",
                      lambda r: "--since-last cannot skip what earlier verifications proved"),
    "lifeboat.repo": (lambda r: layout.REPO_MARKER, "marker", lambda r: "init and copy refuse"),
}


@pytest.mark.parametrize("case", CASES)
def test_one_flipped_byte_in_any_object_is_named_with_what_it_breaks(repo: Repo, case: str) -> None:
    where, kind, affects = CASES[case]
    found = where(repo)
    key, at = found if isinstance(found, tuple) else (found, None)
    path = repo.path(key)
    original = path.read_bytes()
    damaged = bytearray(original)
    damaged[len(damaged) // 2 if at is None else at] ^= 0x10
    path.write_bytes(bytes(damaged))
    try:
        code, report = verify(repo.lifeboat)
        path.write_bytes(bytes(damaged))  # verified.json is written anew by each verify
        text = repo.lifeboat.run("verify", check=False)
    finally:
        path.write_bytes(original)
    assert code == 1 and not report["ok"]
    assert [(p["kind"], p["key"]) for p in report["problems"]] == [(kind, key)], report["problems"]
    [problem] = report["problems"]
    assert problem["affects"].startswith(affects(repo)), problem
    assert text.returncode == 1 and key in text.stdout and "affects: " in text.stdout


def test_an_object_lifeboat_did_not_write_is_named_unknown(repo: Repo) -> None:
    stray = repo.path("clusters/main/packs/notes.txt")
    stray.write_text("someone's notes")
    try:
        code, report = verify(repo.lifeboat)
    finally:
        stray.unlink()
    assert code == 1
    assert [(p["kind"], p["key"], p["detail"]) for p in report["problems"]] == [
        ("unknown", "clusters/main/packs/notes.txt", "not written by Lifeboat (an unknown object)")]
    assert verify(repo.lifeboat)[0] == 0  # the lock file and the rest are all known


def test_since_last_skips_what_was_proven_yet_checks_documents_and_new_objects(repo: Repo) -> None:
    lifeboat, storage = repo.lifeboat, repo.storage
    pack_count = len(storage.list(layout.packs_prefix("main")))  # the backup's, and the killed one's
    code, full = verify(lifeboat)
    assert code == 0 and full["frames"] > 0 and full["packs"] == pack_count and full["manifests"] == 1
    code, again = verify(lifeboat, "--since-last")
    wal_files = len(storage.list(WAL))
    assert code == 0 and (again["frames"], again["blocks"], again["manifests"]) == (0, 0, 0)
    assert (again["packs"], again["skipped_packs"], again["skipped_manifests"]) == (0, pack_count, 1)
    assert again["skipped_wal"] == wal_files and again["wal_segments"] == 0
    assert again["skipped_lists"] == full["lists"] > 0 and again["lists"] == 0
    assert again["documents"] == full["documents"] == 4  # marker, cluster.json, restore point, state

    # an old pack damaged since: --since-last skips it (proven), a full verify finds it
    old_key, at = _block(repo)
    old = repo.path(old_key)
    original = old.read_bytes()
    damaged = bytearray(original)
    damaged[at] ^= 0x01
    old.write_bytes(bytes(damaged))
    try:
        assert verify(lifeboat, "--since-last")[0] == 0
        code, report = verify(lifeboat)
        assert code == 1 and [p["key"] for p in report["problems"]] == [old_key]
    finally:
        old.write_bytes(original)
    assert verify(lifeboat)[0] == 0

    # a mutable document damaged since, a segment and a pack written since, damaged too
    point = repo.path(layout.restore_point_key("main", "before-migration"))
    point_bytes = point.read_bytes()
    point.write_bytes(point_bytes.replace(b"before-migration", b"before-migratioN"))
    before = set(repo.segments())
    lifeboat.cluster.sql("INSERT INTO data SELECT g, md5(g::text) FROM generate_series(1, 3000) g")
    lifeboat.switch_and_archive()
    new_segment = max(set(repo.segments()) - before)
    segment = repo.path(layout.wal_key("main", new_segment))
    segment_bytes = segment.read_bytes()
    segment.write_bytes(segment_bytes[:-1] + bytes([segment_bytes[-1] ^ 0x01]))
    packs = PackSet(storage, "main", pack_size=1 << 20)
    pack = packs.borrow()
    pack.append([b"new frame"], [hashlib.sha256(b"new frame").digest()])
    packs.give_back(pack)
    packs.finish()
    own_by_postgres(storage, pack.id)
    new_pack = repo.path(layout.pack_key("main", pack.id))
    new_pack.write_bytes(b"N" + new_pack.read_bytes()[1:])
    try:
        code, report = verify(lifeboat, "--since-last")
        assert code == 1
        assert sorted((p["kind"], p["key"]) for p in report["problems"]) == sorted([
            ("restore-point", layout.restore_point_key("main", "before-migration")),
            ("wal", layout.wal_key("main", new_segment)),
            ("pack", layout.pack_key("main", pack.id))])
        assert report["skipped_packs"] == pack_count and report["packs"] == 1 and report["wal_segments"] >= 1
    finally:
        point.write_bytes(point_bytes)
        segment.write_bytes(segment_bytes)
        new_pack.unlink()

