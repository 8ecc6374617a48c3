"""Unit tests run without any server: network connections are refused."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from engine.repository import clusterinfo, layout
from engine.repository.storage.posix import PosixStorage
from tests.s3_fake import ACCESS_KEY_ID, SECRET_ACCESS_KEY, new_bucket, s3_url, start_moto

__all__ = ["s3_url"]  # the S3 tests' URLs, from here as before


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


def allow_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let a module's tests connect to loopback only (the moto server, local receivers); a
    module overrides ``_no_network`` with a fixture that calls this."""
    real_connect = socket.socket.connect

    def loopback_only(self: socket.socket, address: object) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6) and not (
                isinstance(address, tuple) and address[0] in ("127.0.0.1", "::1", "localhost")):
            raise ConnectionRefusedError(f"unit tests may not connect to {address!r}")
        real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", loopback_only)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def moto_endpoint() -> object:
    """The S3 API of a moto server on loopback, for the session (started on first use)."""
    endpoint, server = start_moto()
    yield endpoint
    server.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Credentials for moto from the environment, and no real AWS configuration."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def s3_bucket(moto_endpoint: str, aws_env: None) -> str:
    """A new, empty bucket on the moto server (one per test)."""
    return new_bucket(moto_endpoint)
