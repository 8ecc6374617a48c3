"""Unit tests run without any server: network connections are refused."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from engine.repository import clusterinfo, layout
from engine.repository.storage.posix import PosixStorage


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    real_connect = socket.socket.connect

    def refuse(self: socket.socket, address: object) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6) or ".s.PGSQL" in str(address):
            raise ConnectionRefusedError(f"unit tests may not connect to {address!r}")
        real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIFEBOAT_CACHE_DIR", str(tmp_path / "cache"))


SYSID = 7400000000000000001
SEGMENT_SIZE = 16 * 1024 * 1024


@pytest.fixture
def storage(tmp_path: Path) -> PosixStorage:
    repo = PosixStorage(tmp_path / "repo")
    repo.put(layout.REPO_MARKER, clusterinfo.marker())  # as 'lifeboat init' writes it
    clusterinfo.write(repo, "main", clusterinfo.ClusterInfo(SYSID, 150020, SEGMENT_SIZE, 8192,
                                                            "2026-11-25T00:00:00+00:00"))
    return repo


def fake_segment(timeline: int, segno: int, sysid: int = SYSID, fill: int = 0) -> bytes:
    """A 16 MB segment whose first page has a long header carrying ``sysid``."""
    header = bytearray(40)
    header[0:2] = (0xD110).to_bytes(2, "little")
    header[2:4] = (0x0002).to_bytes(2, "little")
    header[4:8] = timeline.to_bytes(4, "little")
    header[8:16] = (segno * SEGMENT_SIZE).to_bytes(8, "little")
    header[24:32] = sysid.to_bytes(8, "little")
    body = bytes([fill]) * 1000 + bytes(range(256)) * 64
    data = bytes(header) + body
    return data + bytes(SEGMENT_SIZE - len(data))
