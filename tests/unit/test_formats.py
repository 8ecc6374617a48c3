"""Every object the repository holds carries its format, and a reader refuses another one
with a message naming the object, its format and the one this Lifeboat reads; a sealed
document that is damaged is refused naming its key."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from engine.errors import ChecksumError, FormatError
from engine.repository import clusterinfo, layout, sealed, verify
from engine.repository.codec import Codec
from engine.repository.copies import copy_cluster
from engine.repository.storage.posix import PosixStorage
from engine.restore import points
from engine.wal import archive
from lifeboat.cli import main
from tests.unit.conftest import fake_segment
from tests.unit.test_cli import write_config

NAME = "000000010000000000000001"


def reseal(storage: PosixStorage, key: str, fmt: int) -> None:
    """Rewrite the sealed document ``key`` as if written in format ``fmt``."""
    head, _, body = storage.get(key).partition(b"\n")
    kind = head.split(b" ")[0]
    storage.put(key, b"%s %d %s\n" % (kind, fmt, hashlib.sha256(body).hexdigest().encode()) + body)


def body_of(storage: PosixStorage, key: str) -> dict:
    return json.loads(storage.get(key).partition(b"\n")[2])


def test_cluster_identity_of_another_format_is_refused_by_every_command(
        storage: PosixStorage, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = layout.cluster_info_key("main")
    assert storage.get(key).startswith(b"LIFEBOAT-CLUSTER 3 ")
    reseal(storage, key, 5)  # (4 is an encrypted repository's: test_encryption)
    with pytest.raises(FormatError, match=r"cluster\.json is in format 5, written by a newer Lifeboat; "
                                          "this Lifeboat reads format 3: upgrade Lifeboat"):
        clusterinfo.read(storage, "main")
    config = str(write_config(tmp_path))
    code = main(["--config", config, "info"])
    _, err = capsys.readouterr()
    assert code == 1 and "cluster.json is in format 5, written by a newer Lifeboat" in err
    segment = tmp_path / NAME
    segment.write_bytes(fake_segment(1, 1))
    assert main(["--config", config, "wal-push", str(segment)]) == 1  # nothing is archived
    assert storage.list(layout.wal_prefix("main")) == []


def test_an_unsealed_cluster_identity_is_an_older_repository(storage: PosixStorage) -> None:
    key = layout.cluster_info_key("main")
    data = body_of(storage, key)
    storage.put(key, json.dumps(data | {"format": 2}).encode())  # what format 2 wrote
    with pytest.raises(FormatError, match="is in format 2, written by an older Lifeboat; "
                                          "this Lifeboat reads format 3 only"):
        clusterinfo.read(storage, "main")
    storage.put(key, json.dumps(data).encode())
    with pytest.raises(FormatError, match="is in no format recorded, written by an older Lifeboat"):
        clusterinfo.read(storage, "main")


@pytest.mark.parametrize("flip", [0, 17, -30, -1])
def test_a_damaged_cluster_identity_is_refused_naming_it(
        storage: PosixStorage, tmp_path: Path, capsys: pytest.CaptureFixture[str], flip: int) -> None:
    key = layout.cluster_info_key("main")
    data = bytearray(storage.get(key))
    data[flip] ^= 0x01  # the seal, the format, the checksum or the body
    storage.put(key, bytes(data))
    with pytest.raises((ChecksumError, FormatError), match=r"clusters/main/cluster\.json is "):
        clusterinfo.read(storage, "main")
    segment = tmp_path / NAME
    segment.write_bytes(fake_segment(1, 1))
    assert main(["--config", str(write_config(tmp_path)), "wal-push", str(segment)]) == 1
    assert "clusters/main/cluster.json is " in capsys.readouterr().err
    assert storage.list(layout.wal_prefix("main")) == []  # nothing archived beside a damaged identity


def test_a_copy_into_a_repository_of_another_format_writes_nothing(storage: PosixStorage,
                                                                   tmp_path: Path) -> None:
    storage.put(layout.REPO_MARKER, clusterinfo.marker())
    target = PosixStorage(tmp_path / "target")
    target.put(layout.REPO_MARKER, clusterinfo.marker())
    reseal(target, layout.REPO_MARKER, 5)
    with pytest.raises(FormatError, match=r"repository .*target \(lifeboat.repo\) is in format 5, "
                                          "written by a newer Lifeboat"):
        copy_cluster(storage, target, "main", "eu")
    assert target.list("clusters") == []


def test_an_archived_wal_file_of_another_format_is_refused(
        storage: PosixStorage, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    segment = tmp_path / NAME
    segment.write_bytes(fake_segment(1, 1))
    archive.push(storage, "main", segment, Codec("zstd", 3))
    key = layout.wal_key("main", NAME)
    obj = storage.get(key)
    assert obj.startswith(b"LBWAL1")
    storage.put(key, b"LBWAL2" + obj[6:])
    with pytest.raises(FormatError, match=f"archived WAL file {NAME} is in format 2, written by a newer"):
        archive.decode(storage.get(key), NAME)
    config = str(write_config(tmp_path))
    code = main(["--config", config, "wal-get", NAME, str(tmp_path / "restored")])
    assert code == 128  # PostgreSQL stops recovery, rather than take it for the archive's end
    assert f"archived WAL file {NAME} is in format 2" in capsys.readouterr().err
    assert not (tmp_path / "restored").exists()


def test_a_restore_point_of_another_format_is_refused(storage: PosixStorage) -> None:
    points.save(storage, "main", points.RestorePoint("before", "0/3000028", NAME, "2026-11-25"))
    assert points.lookup_lsn(storage, "main", "before") == 0x3000028
    key = layout.restore_point_key("main", "before")
    assert body_of(storage, key) == {"name": "before", "lsn": "0/3000028", "wal": NAME,
                                     "created_at": "2026-11-25"}
    reseal(storage, key, 3)
    with pytest.raises(FormatError, match=r"restore point .*before\.json is in format 3"):
        points.lookup_lsn(storage, "main", "before")
    storage.put(key, json.dumps(body_of(storage, key) | {"format": 1}).encode())
    with pytest.raises(FormatError, match=r"restore point .*before\.json is in format 1, written by an "
                                          "older"):
        points.lookup_lsn(storage, "main", "before")


def test_verify_state_of_another_format_is_refused(storage: PosixStorage) -> None:
    assert verify.run(storage, "main").ok
    key = layout.verify_state_key("main")
    assert storage.get(key).startswith(b"LIFEBOAT-VERIFIED 2 ")
    reseal(storage, key, 3)
    with pytest.raises(FormatError, match=r"verified\.json is in format 3, written by a newer Lifeboat"):
        verify.run(storage, "main", since_last=True)


def test_sealed_documents_round_trip_and_refuse_another_kind() -> None:
    data = sealed.seal(sealed.RESTORE_POINT, {"name": "x"})
    assert sealed.unseal(data, sealed.RESTORE_POINT, "k") == {"name": "x"}
    with pytest.raises(ChecksumError, match="k is damaged: its first line is not that of a Lifeboat cluster"):
        sealed.unseal(data, sealed.CLUSTER, "k")
    with pytest.raises(ChecksumError, match="k is damaged: it is not a sealed Lifeboat document"):
        sealed.unseal(b"\x00garbage", sealed.CLUSTER, "k")
