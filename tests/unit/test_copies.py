"""Copies to another region: the target ends up holding what the source holds, restores
(verify passes), and never holds a backup whose packs or WAL are missing."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

import pytest

from engine.backup.blockcopy import BaseFiles, BlockCopier, PackSet
from engine.errors import CopyConflictError, NotFoundError, StorageError
from engine.postgres import pgdata
from engine.repository import blocklist, clusterinfo, layout, verify
from engine.repository.codec import Codec
from engine.repository.copies import copy_cluster, copy_lag
from engine.repository.encryption import keys_of
from engine.repository.manifest import ManifestWriter, list_backup_ids, read_manifest, read_summary
from engine.repository.storage.posix import PosixStorage
from engine.restore import points
from engine.restore.files import FileWriter
from engine.wal import archive
from tests.unit.conftest import SEGMENT_SIZE, SYSID, fake_segment
from tests.unit.helpers import summary

BLOCK = 64 * 1024
FRAME = 4 * BLOCK
CODEC = Codec("zstd", 3)
FULL, INCR = "20261125-010000F", "20261125-020000I"
INFO = clusterinfo.ClusterInfo(SYSID, 150020, SEGMENT_SIZE, 8192, "2026-11-25T00:00:00+00:00")


def repository(path: Path, cls: type[PosixStorage] = PosixStorage) -> PosixStorage:
    storage = cls(path)
    storage.put(layout.REPO_MARKER, clusterinfo.marker())  # as 'lifeboat init' writes it
    clusterinfo.write(storage, "main", INFO)
    return storage


def push(storage: PosixStorage, tmp_path: Path, name: str, data: bytes) -> None:
    path = tmp_path / "pg_wal" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    archive.push(storage, "main", path, CODEC)


def back_up(storage: PosixStorage, tree: Path, backup_id: str, base_id: str | None = None,
            **changes: object) -> list[str]:
    """A real backup of ``tree`` (packs, then the manifest); the ids of the packs it references."""
    packs = PackSet(storage, "main", pack_size=256 * 1024)
    base = None
    if base_id:
        base = BaseFiles(read_manifest(storage, "main", base_id), time.time() + 3600, True)
    copier = BlockCopier(packs, CODEC, BLOCK, FRAME, jobs=2, base=base)
    writer = ManifestWriter(keys_of(storage), layout.manifest_key("main", backup_id))
    for entry in copier.copy(pgdata.walk(tree, 15)):
        writer.add(entry)
    ids = packs.finish()
    values: dict[str, object] = {"packs": ids, "block_size": BLOCK, "frame_size": FRAME,
                                 "system_identifier": SYSID} | changes
    storage.put_stream_if_absent(layout.manifest_key("main", backup_id),
                                 writer.finish(summary(backup_id, **values)))
    return ids


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


@pytest.fixture
def source(tmp_path: Path) -> PosixStorage:
    return source_with_point(tmp_path)


def source_with_point(tmp_path: Path) -> PosixStorage:
    """The source of :func:`_source` with a named restore point."""
    repo = _source(tmp_path)
    points.save(repo, "main", points.RestorePoint("before-migration", "0/3000028", "000000010000000000000003",
                                                  "2026-11-25T01:30:00+00:00"))
    return repo


def _source(tmp_path: Path) -> PosixStorage:
    """WAL on two timelines (a history file, a .partial) and a full and an incremental backup
    that share packs."""
    repo = repository(tmp_path / "source")
    for name, data in [("000000010000000000000001", fake_segment(1, 1)),
                       ("000000010000000000000002", fake_segment(1, 2)),
                       ("000000010000000000000003.partial", fake_segment(1, 3)),
                       ("00000002.history", b"1\t0/3000100\tno recovery target specified\n"),
                       ("000000020000000000000003", fake_segment(2, 3))]:
        push(repo, tmp_path, name, data)
    tree = tmp_path / "pgdata"
    write_tree(tree, {"PG_VERSION": b"15\n", "global/pg_control": os.urandom(8192),
                      "base/5/16384": os.urandom(BLOCK * 30), "base/5/16385": os.urandom(BLOCK * 5)})
    full = back_up(repo, tree, FULL)
    write_tree(tree, {"base/5/16385": os.urandom(BLOCK * 5)})
    incr = back_up(repo, tree, INCR, FULL, type="incr")
    assert set(full) & set(incr) and set(incr) - set(full)  # shared packs, and new ones
    return repo


def content(storage: PosixStorage) -> dict[str, bytes]:
    """The cluster's WAL, packs, lists, manifests and identity, key -> bytes."""
    keys = [layout.cluster_info_key("main")]
    for prefix in (layout.wal_prefix("main"), layout.packs_prefix("main"), layout.lists_prefix("main"),
                   layout.backups_prefix("main"), layout.restore_points_prefix("main")):
        keys += storage.list(prefix)
    return {key: storage.get(key) for key in keys if storage.exists(key)}


def test_the_target_holds_what_the_source_holds_and_restores(source: PosixStorage,
                                                             tmp_path: Path) -> None:
    target = PosixStorage(tmp_path / "target")
    report = copy_cluster(source, target, "main", "eu-west")
    expected = content(source)
    assert content(target) == expected
    packs = len(source.list(layout.packs_prefix("main")))
    lists = source.list(layout.lists_prefix("main"))
    assert len(lists) == 1  # the large file's list, shared by both backups (its blocks are unchanged)
    assert (report.wal_copied, report.packs_copied, report.lists_copied, report.backups_copied) == \
        (5, packs, 1, 2)
    assert report.bytes_copied >= sum(len(v) for v in expected.values())
    assert report.skipped == [] and report.to_json()["region"] == "eu-west"
    for backup_id in (FULL, INCR):
        copied = read_summary(target, "main", backup_id)
        assert copied == read_summary(source, "main", backup_id)
        assert all(target.get(layout.pack_key("main", p)) == source.get(layout.pack_key("main", p))
                   for p in copied.packs)
    checked = verify.run(target, "main")
    assert checked.ok, checked.problems
    assert checked.backups == 2 and checked.blocks > 0 and checked.wal_segments >= 2
    assert checked.lists == 1  # read once, though both backups refer to it
    restored = tmp_path / "restored"
    manifest = read_manifest(target, "main", INCR)
    restored.mkdir()
    FileWriter(target, "main", manifest.summary, restored, jobs=2).write(manifest, {})
    assert (restored / "base/5/16384").read_bytes() == (tmp_path / "pgdata/base/5/16384").read_bytes()

    again = copy_cluster(source, target, "main", "eu-west")
    assert (again.wal_copied, again.packs_copied, again.backups_copied, again.bytes_copied) == (0, 0, 0, 0)
    assert again.skipped == []


class ManifestPutFailsOnce(PosixStorage):
    """A target whose first manifest write fails (the network drops while copying it)."""

    failures = 1

    def put_stream_if_absent(self, key: str, chunks: Iterable[bytes]) -> bool:
        if layout.backup_id_of(key) is not None and self.failures:
            self.failures -= 1
            for _ in chunks:  # half-sent, then the connection drops
                break
            raise StorageError(f"cannot write {key}: connection reset by peer")
        return super().put_stream_if_absent(key, chunks)


def test_an_interrupted_copy_leaves_no_manifest_and_the_next_copy_completes_it(
        source: PosixStorage, tmp_path: Path) -> None:
    flaky = ManifestPutFailsOnce(tmp_path / "target")
    with pytest.raises(StorageError, match=f"{FULL}.manifest: connection reset"):
        copy_cluster(source, flaky, "main", "eu-west")
    assert list_backup_ids(flaky, "main") == []  # packs may be orphans; no manifest without them
    full_packs = read_summary(source, "main", FULL).packs
    assert all(flaky.exists(layout.pack_key("main", p)) for p in full_packs)

    report = copy_cluster(source, PosixStorage(tmp_path / "target"), "main", "eu-west")
    assert report.backups_copied == 2 and report.wal_copied == 0
    target = PosixStorage(tmp_path / "target")
    assert content(target) == content(source)
    assert verify.run(target, "main").ok


def test_a_backup_whose_list_is_damaged_in_the_source_is_not_copied(source: PosixStorage,
                                                                    tmp_path: Path) -> None:
    key = source.list(layout.lists_prefix("main"))[0]
    data = bytearray(source.get(key))
    data[-1] ^= 1
    source.put(key, bytes(data))
    target = PosixStorage(tmp_path / "target")
    report = copy_cluster(source, target, "main", "eu-west")
    assert report.backups_copied == 0 and list_backup_ids(target, "main") == []
    assert report.skipped == [f"backup {b}: {key}: the source's block list fails its checksum "
                              "(damaged); the backup was not copied" for b in (FULL, INCR)]
    assert target.list(layout.lists_prefix("main")) == []


def test_a_target_of_another_cluster_is_refused_and_nothing_is_copied(source: PosixStorage,
                                                                      tmp_path: Path) -> None:
    target = PosixStorage(tmp_path / "target")
    clusterinfo.write(target, "main", INFO._replace(system_identifier=42))
    before = target.get(layout.cluster_info_key("main"))
    with pytest.raises(CopyConflictError, match=r"cluster\.json belongs to database system 42.*wrong target"):
        copy_cluster(source, target, "main", "eu-west")
    assert content(target) == {layout.cluster_info_key("main"): before}


def test_a_wal_file_of_another_size_in_the_target_is_a_conflict(source: PosixStorage,
                                                                tmp_path: Path) -> None:
    target = repository(tmp_path / "target")
    key = layout.wal_key("main", "000000010000000000000002")
    target.put(key, b"something else")
    with pytest.raises(CopyConflictError, match="000000010000000000000002 is 14 bytes"):
        copy_cluster(source, target, "main", "eu-west")
    assert target.get(key) == b"something else"  # not overwritten
    assert set(content(target)) == {layout.cluster_info_key("main"), key}  # nothing else written


def set_mtime(storage: PosixStorage, key: str, when: float) -> None:
    os.utime(storage.path_of(key), (when, when))


def test_copy_lag_is_the_age_of_the_oldest_object_the_target_lacks(source: PosixStorage,
                                                                   tmp_path: Path) -> None:
    target = PosixStorage(tmp_path / "target")
    assert copy_lag(source, target, "main", now=time.time() + 100) >= 100  # nothing copied yet
    copy_cluster(source, target, "main", "eu-west")
    assert copy_lag(source, target, "main", now=10_000.0) == 0.0

    push(source, tmp_path, "000000020000000000000004", fake_segment(2, 4))
    tree = tmp_path / "pgdata"
    write_tree(tree, {"base/5/16384": os.urandom(BLOCK * 6)})
    back_up(source, tree, "20261125-030000I", INCR, type="incr")
    new_wal = layout.wal_key("main", "000000020000000000000004")
    new_manifest = layout.manifest_key("main", "20261125-030000I")
    set_mtime(source, new_wal, 7_000.0)
    set_mtime(source, new_manifest, 8_000.0)
    assert copy_lag(source, target, "main", now=10_000.0) == 3_000.0  # the WAL is the oldest
    set_mtime(source, new_manifest, 6_500.0)
    assert copy_lag(source, target, "main", now=10_000.0) == 3_500.0
    assert copy_lag(source, target, "main", now=6_000.0) == 0.0  # never negative

    report = copy_cluster(source, target, "main", "eu-west")
    assert (report.wal_copied, report.backups_copied) == (1, 1) and report.packs_copied >= 1
    assert copy_lag(source, target, "main", now=10_000.0) == 0.0


class ExpiresDuringCopy(PosixStorage):
    """A source where expire removes backup ``victim`` (manifest first, then its packs) just
    as the copy starts reading its first pack."""

    victim = FULL

    def open_stream(self, key: str) -> BinaryIO:
        manifest = layout.manifest_key("main", self.victim)
        if key.startswith(layout.packs_prefix("main")) and self.exists(manifest):
            packs = read_summary(self, "main", self.victim).packs
            if key.rsplit("/", 1)[-1] in packs:
                self.delete(manifest)
                for pack in packs:
                    self.delete(layout.pack_key("main", pack))
        return super().open_stream(key)


def test_a_backup_expired_from_the_source_while_copying_is_skipped(tmp_path: Path) -> None:
    source = repository(tmp_path / "source", ExpiresDuringCopy)
    push(source, tmp_path, "000000010000000000000002", fake_segment(1, 2))
    old, new = tmp_path / "old", tmp_path / "new"
    write_tree(old, {"PG_VERSION": b"15\n", "base/5/1": os.urandom(BLOCK * 3)})
    write_tree(new, {"PG_VERSION": b"15\n", "base/5/1": os.urandom(BLOCK * 3)})
    back_up(source, old, FULL)
    back_up(source, new, "20261125-020000F")  # a full of its own: no pack shared
    target = PosixStorage(tmp_path / "target")
    report = copy_cluster(source, target, "main", "eu-west")
    assert report.backups_copied == 1
    assert len(report.skipped) == 1
    assert report.skipped[0].startswith(f"backup {FULL}: expired from the source while copying (pack ")
    assert list_backup_ids(target, "main") == ["20261125-020000F"]
    assert verify.run(target, "main").ok
    with pytest.raises(NotFoundError):
        read_summary(target, "main", FULL)


def test_a_backup_whose_wal_is_not_archived_is_not_copied(source: PosixStorage, tmp_path: Path) -> None:
    tree = tmp_path / "pgdata"
    back_up(source, tree, "20261125-030000F", start_lsn="0/9000028", stop_lsn="0/9000100",
            start_wal="000000010000000000000009", stop_wal="000000010000000000000009")
    target = PosixStorage(tmp_path / "target")
    report = copy_cluster(source, target, "main", "eu-west")
    assert list_backup_ids(target, "main") == [FULL, INCR]
    assert report.skipped == ["backup 20261125-030000F: its WAL 000000010000000000000009 is not in "
                              "the target yet"]
    set_mtime(source, layout.manifest_key("main", "20261125-030000F"), 1_000.0)
    assert copy_lag(source, target, "main", now=2_000.0) == 1_000.0  # it shows as lag


def test_a_damaged_manifest_is_not_copied(source: PosixStorage, tmp_path: Path) -> None:
    path = Path(source.path_of(layout.manifest_key("main", INCR)))
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x01  # in the body: the summary still reads
    path.write_bytes(bytes(data))
    target = PosixStorage(tmp_path / "target")
    report = copy_cluster(source, target, "main", "eu-west")
    assert list_backup_ids(target, "main") == [FULL]
    assert report.skipped[0].startswith(f"backup {INCR}: ") and "fails its checksum" in report.skipped[0]
    assert os.listdir(target.path_of(layout.backups_prefix("main"))) == [f"{FULL}.manifest"]


def test_the_agents_copier_records_a_failure_once_and_its_recovery(source: PosixStorage,
                                                                     tmp_path: Path) -> None:
    from engine.agent.copier import RegionCopier
    from engine.config.schema import Config

    target = tmp_path / "dr"
    target.write_text("not a directory")  # e.g. the copy's volume is not mounted
    config = Config.model_validate({
        "repository": {"path": str(tmp_path / "source"),
                       "copies": {"dr": {"path": str(target), "interval": "1h"}}},
        "clusters": {"main": {"pgdata": str(tmp_path / "pgdata")}}})
    recorded: list[tuple[str | None, str, str]] = []
    copier = RegionCopier(config, source, "dr",
                          lambda cluster: lambda kind, severity, _message: recorded.append(
                              (cluster, kind, severity)))
    copier.round()
    copier.round()  # the same failure again: not recorded twice
    assert recorded == [("main", "copy_failed", "error")]
    target.unlink()
    copier.round()
    assert recorded[1:] == [("main", "copy_recovered", "info")]
    # it keeps what the primary keeps: not the WAL before the oldest backup, which no restore reads
    before = layout.wal_key("main", "000000010000000000000001")
    assert content(PosixStorage(target)) == {k: v for k, v in content(source).items() if k != before}


def test_a_list_is_copied_with_the_base_it_takes_ids_from(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(blocklist, "BASE_MIN_BLOCKS", 16)
    repo = repository(tmp_path / "source")
    push(repo, tmp_path, "000000010000000000000002", fake_segment(1, 2))
    tree = tmp_path / "pgdata"
    grown = os.urandom(BLOCK * 30)
    write_tree(tree, {"PG_VERSION": b"15\n", "global/pg_control": os.urandom(8192),
                      "base/5/16384": grown})
    back_up(repo, tree, FULL)
    grown += os.urandom(BLOCK * 2)
    write_tree(tree, {"base/5/16384": grown})
    back_up(repo, tree, INCR, FULL, type="incr")
    entry = next(e for e in read_manifest(repo, "main", INCR).entries() if e.path == "base/5/16384")
    assert entry.list_id is not None and entry.base is not None
    repo.delete(layout.manifest_key("main", FULL))  # expired: only the incremental names the base
    target = PosixStorage(tmp_path / "target")
    report = copy_cluster(repo, target, "main", "eu-west")
    assert report.backups_copied == 1 and report.lists_copied == 2
    assert target.exists(layout.list_key("main", entry.base.hex()))
    checked = verify.run(target, "main")
    assert checked.ok, checked.problems
    restored = tmp_path / "restored"
    manifest = read_manifest(target, "main", INCR)
    restored.mkdir()
    FileWriter(target, "main", manifest.summary, restored, jobs=2).write(manifest, {})
    assert (restored / "base/5/16384").read_bytes() == grown
