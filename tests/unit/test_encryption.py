"""Encryption at rest: sealing (round trip, tampering, wrong key, nonces, moved objects),
keyed names, rotation, and an encrypted repository end to end without a server: nothing
of the content in any object, verify, restore and copies working, damage named."""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

import pytest

from engine.errors import ArchiveDamagedError, ChecksumError, CopyConflictError, EncryptionKeyError
from engine.repository import clusterinfo, encryption, layout, verify
from engine.repository.blocklist import list_id
from engine.repository.copies import copy_cluster
from engine.repository.encryption import KeySources, attach, keys_of
from engine.repository.manifest import read_manifest, read_summary
from engine.repository.storage.posix import PosixStorage
from engine.restore import points
from engine.restore.files import FileWriter, prepare_directory
from engine.wal import archive
from lifeboat.cli import main
from tests.unit import test_copies as repo_of
from tests.unit.conftest import fake_segment
from tests.unit.test_cli import write_config
from tests.unit.test_copies import repository as plain_repository

NAME = "000000010000000000000001"


def key_file(directory: Path, name: str = "repository.key", text: str | None = None,
             mode: int = 0o600) -> Path:
    path = directory / name
    path.write_text(encryption.format_key(encryption.generate_key()) if text is None else text)
    path.chmod(mode)
    return path


def sources(key: Path, *old: Path) -> KeySources:
    return KeySources(str(key), None, tuple(str(p) for p in old))


def opened(path: Path, keys: KeySources) -> PosixStorage:
    storage = PosixStorage(path)
    return attach(storage, encryption.open_keys(storage, keys))  # type: ignore[return-value]


def new_repository(path: Path, keys: KeySources) -> PosixStorage:
    """What 'lifeboat init' makes of an encrypted repository."""
    storage = PosixStorage(path)
    attach(storage, encryption.create_keys(storage, keys))
    storage.put(layout.REPO_MARKER, clusterinfo.marker(keys_of(storage)))
    clusterinfo.write(storage, "main", repo_of.INFO)
    return storage


def listing(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def key(tmp_path: Path) -> Path:
    return key_file(tmp_path)


@pytest.fixture
def source(tmp_path: Path, key: Path, monkeypatch: pytest.MonkeyPatch) -> PosixStorage:
    """test_copies' repository (WAL on two timelines, a full and an incremental backup, a
    restore point), encrypted."""
    monkeypatch.setattr(repo_of, "repository", lambda path: new_repository(path, sources(key)))
    storage = repo_of._source(tmp_path)
    points.save(storage, "main", points.RestorePoint("before-migration", "0/3000028", NAME[:-1] + "3",
                                                     "2026-11-25T01:30:00+00:00"))
    return storage


# sealing ----------------------------------------------------------------------------------

def test_sealing_round_trips_and_any_flipped_byte_fails_authentication(source: PosixStorage) -> None:
    keys = keys_of(source)
    assert keys is not None
    data = os.urandom(3000)
    sealed = keys.seal(data, b"clusters/main/x")
    assert len(sealed) == len(data) + encryption.OVERHEAD and data not in sealed
    assert keys.open(sealed, b"clusters/main/x", "x") == data
    for at in (0, 5, 10, 25, 40, len(sealed) - 1):
        damaged = bytearray(sealed)
        damaged[at] ^= 1
        with pytest.raises(ChecksumError, match="x: (fails authentication|not sealed|sealed with data key)"):
            keys.open(bytes(damaged), b"clusters/main/x", "x")
    with pytest.raises(ChecksumError, match="fails authentication"):  # moved to another name
        keys.open(sealed, b"clusters/main/y", "y")
    with pytest.raises(ChecksumError, match="not sealed, in an encrypted repository"):
        keys.open(data, b"clusters/main/x", "x")


def test_every_seal_draws_its_own_nonce(source: PosixStorage) -> None:
    keys = keys_of(source)
    assert keys is not None
    sealed = [keys.seal(b"the same bytes", b"k") for _ in range(2000)]
    nonces = {s[8:20] for s in sealed}
    assert len(nonces) == 2000 and len(set(sealed)) == 2000
    assert {s[4:8] for s in sealed} == {keys.current}  # each records the id of its data key


def test_names_are_keyed_so_they_reveal_nothing_of_the_content(source: PosixStorage) -> None:
    keys = keys_of(source)
    assert keys is not None
    block = os.urandom(8192)
    plain = hashlib.sha256(block).digest()[:16]
    keyed = layout.block_id(block, keys.name_key)
    assert keyed != plain and keyed == hmac.new(keys.name_key, block, hashlib.sha256).digest()[:16]
    assert layout.block_ids(block * 3, 8192, keys.name_key) == keyed * 3  # the C path agrees
    # every stored list is named by the HMAC of its content, never by its SHA-256
    for key in source.list(layout.lists_prefix("main")):
        content = keys.open(source.get(key), key.encode(), key)
        assert key.endswith(list_id(content, keys.name_key).hex())
        assert list_id(content).hex() not in key


def test_key_files_hold_base64_or_hex_readable_by_their_owner_only(tmp_path: Path) -> None:
    secret = encryption.generate_key()
    for text in (encryption.format_key(secret), secret.hex() + "\n"):
        path = key_file(tmp_path, "k", text)
        assert encryption.read_key_file(str(path), "key_file").secret == secret
        path.unlink()
    loose = key_file(tmp_path, "loose", mode=0o644)
    with pytest.raises(EncryptionKeyError, match=r"loose: readable by others than its owner \(mode 0644\)"):
        encryption.read_key_file(str(loose), "key_file")
    short = key_file(tmp_path, "short", "c2hvcnQ=\n")
    with pytest.raises(EncryptionKeyError, match="short: not a repository key"):
        encryption.read_key_file(str(short), "key_file")
    with pytest.raises(EncryptionKeyError, match="cannot read the repository key"):
        encryption.read_key_file(str(tmp_path / "absent"), "key_file")


# keys ---------------------------------------------------------------------------------------

def refused(tmp_path: Path, extra: str, capsys: pytest.CaptureFixture[str]) -> str:
    """What wal-push and info say (both exiting 2) with a configuration of the repository in
    ``tmp_path / "source"`` whose encryption is ``extra``."""
    config = write_config(tmp_path)
    config.write_text(config.read_text().replace(f'"{tmp_path}/repo"', f'"{tmp_path}/source"') + extra)
    segment = tmp_path / "pg_wal" / "000000020000000000000004"
    segment.write_bytes(fake_segment(2, 4))
    assert main(["--config", str(config), "wal-push", str(segment)]) == 2
    assert main(["--config", str(config), "info"]) == 2
    return capsys.readouterr().err


def test_a_wrong_key_is_refused_before_anything_is_written(source: PosixStorage, tmp_path: Path,
                                                           key: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "source"
    before = listing(root)
    wrong = key_file(tmp_path, "wrong.key")
    expected = encryption.read_key_file(str(key), "key_file").id
    with pytest.raises(EncryptionKeyError, match=rf"wrong key for repository .*wrapped under key {expected}, "
                                                 rf"and the configuration gives key [0-9a-f]{{8}} "
                                                 rf"\(key_file {wrong}\)"):
        encryption.open_keys(PosixStorage(root), sources(wrong))
    assert "wrong key for repository" in refused(tmp_path, f'[repository.encryption]\nkey_file = "{wrong}"\n',
                                                 capsys)
    assert listing(root) == before  # nothing written, nothing rewritten


def test_a_missing_key_or_a_key_for_a_plain_repository_is_refused(source: PosixStorage, tmp_path: Path,
                                                                  key: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "source"
    before = listing(root)
    plain = PosixStorage(root)  # no keys: what a configuration without [repository.encryption] opens
    with pytest.raises(EncryptionKeyError, match="the repository is encrypted, but the configuration "
                                                 "has no .repository.encryption."):
        clusterinfo.read(plain, "main")
    assert "the repository is encrypted" in refused(tmp_path, "", capsys)
    assert listing(root) == before
    unencrypted = plain_repository(tmp_path / "unencrypted")
    with pytest.raises(EncryptionKeyError, match="is not encrypted, but the configuration has "
                                                 r"\[repository.encryption\]"):
        encryption.open_keys(unencrypted, sources(key))
    with pytest.raises(EncryptionKeyError, match="is not encrypted"):
        encryption.create_keys(unencrypted, sources(key))
    assert not unencrypted.exists(layout.REPO_KEYS)


def test_rotation_seals_new_objects_with_the_new_key_and_old_ones_still_open(
        source: PosixStorage, tmp_path: Path, key: Path) -> None:
    root = tmp_path / "source"
    old = keys_of(source)
    assert old is not None
    new = key_file(tmp_path, "new.key")
    rotated = opened(root, sources(new, key))  # the configuration names the new key, lists the old
    keys = keys_of(rotated)
    assert keys is not None and keys.rotated_from == old.wrapped_under
    assert keys.current != old.current and keys.name_key == old.name_key  # ids, so dedup, unchanged
    repo_of.push(rotated, tmp_path, "000000020000000000000004", fake_segment(2, 4))
    repo_of.back_up(rotated, tmp_path / "pgdata", "20261125-030000I", repo_of.INCR, type="incr")
    new_wal = rotated.get(layout.wal_key("main", "000000020000000000000004"))
    assert new_wal[archive.HEADER.size + 4:archive.HEADER.size + 8] == keys.current
    # the old key is no longer needed: every data key is in lifeboat.keys, wrapped under the new one
    later = opened(root, sources(new))
    assert keys_of(later).wrapped_under == encryption.read_key_file(str(new), "key_file").id
    report = verify.run(later, "main")
    assert report.ok, [str(p) for p in report.problems]
    assert archive.get(later, "main", NAME, tmp_path / "restored-wal")  # written before the rotation
    for backup in (repo_of.FULL, "20261125-030000I"):
        restored = tmp_path / f"restored-{backup}"
        _restore(later, backup, restored)
        assert (restored / "base/5/16384").read_bytes() == (tmp_path / "pgdata/base/5/16384").read_bytes()
    with pytest.raises(EncryptionKeyError, match="wrong key"):  # and the old key alone opens nothing
        encryption.open_keys(PosixStorage(root), sources(key))


# an encrypted repository ----------------------------------------------------------------------

def _restore(storage: PosixStorage, backup: str, target: Path) -> None:
    manifest = read_manifest(storage, "main", backup)
    prepare_directory(target, force=False)
    FileWriter(storage, "main", manifest.summary, target, jobs=2).write(manifest, {})


def test_an_encrypted_repository_holds_nothing_of_the_content(source: PosixStorage, tmp_path: Path) -> None:
    root = tmp_path / "source"
    tree = tmp_path / "pgdata"
    samples = [(tree / "base/5/16384").read_bytes()[8192 * 7:8192 * 7 + 64],
               (tree / "global/pg_control").read_bytes()[:64],
               fake_segment(1, 2)[40:1040],  # the WAL's own bytes
               b"before-migration", b"base/5/16384", b"16385", str(repo_of.SYSID).encode(),
               b"backup_label", b"START WAL LOCATION"]
    for path, data in listing(root).items():
        for sample in samples:
            assert sample not in data, (path, sample)
        assert "before-migration" not in path  # a restore point's name is keyed too
    plain = plain_repository(tmp_path / "plain")  # the same backup unencrypted shows them
    repo_of.back_up(plain, tree, repo_of.FULL)
    shown = b"".join(listing(tmp_path / "plain").values())
    assert samples[0] in shown and samples[1] in shown
    assert sorted(os.listdir(root)) == ["clusters", "lifeboat.keys", "lifeboat.repo"]
    report = verify.run(source, "main")
    assert report.ok and report.packs and report.lists and report.manifests == 2
    restored = tmp_path / "restored"
    _restore(source, repo_of.INCR, restored)
    for name in ("global/pg_control", "base/5/16384", "base/5/16385"):
        assert (restored / name).read_bytes() == (tree / name).read_bytes()
    assert points.lookup_lsn(source, "main", "before-migration") == 0x3000028


def test_a_copy_of_an_encrypted_repository_opens_with_the_same_key(source: PosixStorage, tmp_path: Path,
                                                                   key: Path) -> None:
    report = copy_cluster(source, PosixStorage(tmp_path / "copy"), "main", "eu-west")
    assert report.backups_copied == 2 and not report.skipped
    copy = opened(tmp_path / "copy", sources(key))
    assert verify.run(copy, "main").ok
    assert read_summary(copy, "main", repo_of.INCR) == read_summary(source, "main", repo_of.INCR)
    new = key_file(tmp_path, "new.key")
    opened(tmp_path / "source", sources(new, key))  # the source rotates ...
    copy_cluster(source, PosixStorage(tmp_path / "copy"), "main", "eu-west")
    assert keys_of(opened(tmp_path / "copy", sources(new))).rotated_from is None  # ... and so does the copy
    other = new_repository(tmp_path / "other", sources(key))
    with pytest.raises(CopyConflictError, match="another encrypted repository's"):
        copy_cluster(source, other, "main", "eu-west")


def _flip(storage: PosixStorage, key: str, at: int) -> None:
    data = bytearray(storage.get(key))
    data[at] ^= 0x40
    storage.put(key, bytes(data))


def test_a_flipped_byte_in_any_sealed_object_is_named_by_verify_and_refused(source: PosixStorage,
                                                                           tmp_path: Path) -> None:
    manifest = read_manifest(source, "main", repo_of.FULL)
    entry = next(e for e in manifest.entries() if e.path == "base/5/16384")
    frame = manifest.block_list(entry).frames[1]
    pack = layout.pack_key("main", frame.pack)
    wal = layout.wal_key("main", NAME)
    [stored_list] = source.list(layout.lists_prefix("main"))
    incr = layout.manifest_key("main", repo_of.INCR)
    _flip(source, pack, frame.offset + 100)
    with pytest.raises(ChecksumError, match=rf"base/5/16384 blocks \d+\.\.\d+ \(pack {frame.pack}\): "
                                            "checksum mismatch"):
        _restore(source, repo_of.FULL, tmp_path / "restored")
    assert not (tmp_path / "restored/global/pg_control").exists()  # it cannot be started by mistake
    _flip(source, wal, archive.HEADER.size + 50)
    with pytest.raises(ArchiveDamagedError, match=f"{NAME}: checksum mismatch"):
        archive.get(source, "main", NAME, tmp_path / "wal")
    _flip(source, stored_list, 60)
    with pytest.raises(ChecksumError, match=f"{stored_list} .*fails authentication"):
        _restore(source, repo_of.INCR, tmp_path / "restored-incr")
    _flip(source, incr, source.size(incr) - 10)  # in its last sealed body piece
    report = verify.run(source, "main")
    named = {p.key for p in report.problems}
    assert {pack, wal, stored_list, incr} <= named, [str(p) for p in report.problems]
    _flip(source, layout.cluster_info_key("main"), -5)
    with pytest.raises(ChecksumError, match="cluster.json is damaged: its content fails its checksum"):
        clusterinfo.read(source, "main")


@pytest.mark.parametrize(("table", "message"), [
    ("", "give the repository's key as exactly one of key_file"),
    ('key_file = "/k"\nkey_env = "K"\n', "give the repository's key as exactly one of key_file"),
    ('key_file = "k"\n', "repository.encryption.key_file: must be an absolute path"),
    ('key_env = "K"\nold_key_files = ["old"]\n', "repository.encryption.old_key_files.0: must be an "
                                                 "absolute path"),
    ('key_file = "/k"\nkey = "c2VjcmV0"\n', "repository.encryption.key: unknown key"),
])
def test_the_encryption_table_is_checked_when_loaded(tmp_path: Path, table: str, message: str) -> None:
    from engine.config.schema import load_config
    from engine.errors import ConfigError

    config = write_config(tmp_path)
    config.write_text(config.read_text() + "[repository.encryption]\n" + table)
    with pytest.raises(ConfigError, match=message) as caught:
        load_config(config)
    assert "c2VjcmV0" not in str(caught.value)


def test_tiers_of_an_encrypted_repository_hold_it_sealed_and_restore_with_its_keys(
        source: PosixStorage, tmp_path: Path) -> None:
    """A backup moved to a warm tier (opened from the configuration, as the agent does) stays
    sealed there, verifies and restores through the tiers' view with the repository's keys."""
    from engine.config.schema import parse_config
    from engine.repository.manifest import list_backup_ids
    from engine.repository.tiers import job, open_tiers
    from tests.unit.test_tiers import DAY, STOPPED

    config = parse_config((f'[repository]\npath = "{tmp_path / "source"}"\n'
                           '[repository.tiers.hot]\nage = "7d"\n'
                           f'[repository.tiers.warm]\nage = "30d"\nstorage = "{tmp_path / "warm"}"\n'
                           f'[clusters.main]\npgdata = "{tmp_path / "pgdata"}"\n').encode(), "lifeboat.toml")
    tiers = open_tiers(config, source)
    report = job.run(tiers, "main", 0, now=STOPPED + 10 * DAY)
    assert [m["to"] for m in report.moved] == ["warm", "warm"] and report.ok, report
    warm = tiers.tier("warm").storages[0]
    assert list_backup_ids(warm, "main") == [repo_of.FULL, repo_of.INCR]
    assert list_backup_ids(source, "main") == []
    assert keys_of(warm) is keys_of(source) and keys_of(tiers.view()) is keys_of(source)
    checked = verify.run(warm, "main")
    assert checked.ok and checked.packs, checked.problems
    row = (tmp_path / "pgdata" / "base/5/16384").read_bytes()[8192 * 7:8192 * 7 + 64]
    assert all(row not in data for data in listing(tmp_path / "warm").values())
    restored = tmp_path / "restored"
    _restore(tiers.view(), repo_of.INCR, restored)  # type: ignore[arg-type]
    assert (restored / "base/5/16384").read_bytes() == (tmp_path / "pgdata" / "base/5/16384").read_bytes()


def test_a_regions_copy_of_an_encrypted_repository_is_copied_validated_and_verified_by_the_cli(
        source: PosixStorage, tmp_path: Path, key: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``lifeboat copy``, ``copy --validate`` and ``verify --region`` open the copy with the
    repository's keys (a copy holds its objects sealed alike)."""
    config = write_config(tmp_path)
    config.write_text(config.read_text().replace(f'"{tmp_path}/repo"', f'"{tmp_path}/source"')
                      .replace("[clusters.main]", f'[repository.encryption]\nkey_file = "{key}"\n'
                               f'[repository.copies.eu-west]\npath = "{tmp_path}/copy"\n'
                               'validate_sample = "100%"\n[clusters.main]'))
    for command in (["copy"], ["copy", "--validate"], ["verify", "--region", "eu-west"]):
        code = main(["--config", str(config), "--cluster", "main", *command])
        assert code == 0, (command, capsys.readouterr())
    capsys.readouterr()
    _flip(PosixStorage(tmp_path / "copy"), read_manifest(source, "main", repo_of.INCR).summary and
          layout.manifest_key("main", repo_of.INCR), 200)
    assert main(["--config", str(config), "--cluster", "main", "verify", "--region", "eu-west"]) == 1
    assert repo_of.INCR in capsys.readouterr().out + capsys.readouterr().err
