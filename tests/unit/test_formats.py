"""Every object the repository holds carries its format, and a reader refuses another one
with a message naming the object, its format and the one this Lifeboat reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.errors import FormatError
from engine.repository import clusterinfo, layout, verify
from engine.repository.codec import Codec
from engine.repository.copies import copy_cluster
from engine.repository.storage.posix import PosixStorage
from engine.restore import points
from engine.wal import archive
from lifeboat.cli import main
from tests.unit.conftest import fake_segment
from tests.unit.test_cli import write_config

NAME = "000000010000000000000001"


def rewrite_json(storage: PosixStorage, key: str, **changes: object) -> None:
    storage.put(key, json.dumps(json.loads(storage.get(key)) | changes).encode())


def test_cluster_identity_of_another_format_is_refused_by_every_command(
        storage: PosixStorage, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = layout.cluster_info_key("main")
    assert json.loads(storage.get(key))["format"] == 2
    rewrite_json(storage, key, format=3)
    with pytest.raises(FormatError, match=r"cluster\.json is in format 3, written by a newer Lifeboat; "
                                          "this Lifeboat reads format 2: upgrade Lifeboat"):
        clusterinfo.read(storage, "main")
    config = str(write_config(tmp_path))
    code = main(["--config", config, "info"])
    _, err = capsys.readouterr()
    assert code == 1 and "cluster.json is in format 3, written by a newer Lifeboat" in err
    segment = tmp_path / NAME
    segment.write_bytes(fake_segment(1, 1))
    assert main(["--config", config, "wal-push", str(segment)]) == 1  # nothing is archived
    assert storage.list(layout.wal_prefix("main")) == []


def test_a_cluster_identity_without_a_format_is_an_older_repository(storage: PosixStorage) -> None:
    key = layout.cluster_info_key("main")
    data = json.loads(storage.get(key))
    del data["format"]
    storage.put(key, json.dumps(data).encode())
    with pytest.raises(FormatError, match="is in no format recorded, written by an older Lifeboat; "
                                          "this Lifeboat reads format 2 only"):
        clusterinfo.read(storage, "main")


def test_a_copy_into_a_repository_of_another_format_writes_nothing(storage: PosixStorage,
                                                                   tmp_path: Path) -> None:
    storage.put(layout.REPO_MARKER, clusterinfo.marker())
    target = PosixStorage(tmp_path / "target")
    target.put(layout.REPO_MARKER, b'{"format": 3}\n')
    with pytest.raises(FormatError, match=r"repository .*target \(lifeboat.repo\) is in format 3, "
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
    rewrite_json(storage, layout.restore_point_key("main", "before"), format=2)
    with pytest.raises(FormatError, match=r"restore point .*before\.json is in format 2"):
        points.lookup_lsn(storage, "main", "before")


def test_verify_state_of_another_format_is_refused(storage: PosixStorage) -> None:
    assert verify.run(storage, "main").ok
    key = layout.verify_state_key("main")
    assert json.loads(storage.get(key))["format"] == 1
    rewrite_json(storage, key, format=2)
    with pytest.raises(FormatError, match=r"verified\.json is in format 2, written by a newer Lifeboat"):
        verify.run(storage, "main", since_last=True)
