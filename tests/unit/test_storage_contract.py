"""The Storage contract, run over every driver."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from engine.errors import NotFoundError, StorageError
from engine.repository.storage import Storage, open_storage
from tests.unit.conftest import allow_loopback, s3_url


def _s3(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    """A bucket on the moto server on loopback, opened by its URL like any repository."""
    endpoint = request.getfixturevalue("moto_endpoint")
    return open_storage(s3_url(endpoint, request.getfixturevalue("s3_bucket")))


DRIVERS: dict[str, Callable[[pytest.FixtureRequest, Path], Storage]] = {
    "posix": lambda request, p: open_storage(p / "repo"),
    "s3": _s3,
}


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Overrides the unit tests' ban on connections: loopback only, for the moto server."""
    allow_loopback(monkeypatch)


@pytest.fixture(params=sorted(DRIVERS))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    return DRIVERS[request.param](request, tmp_path)


def test_put_then_get(store: Storage) -> None:
    store.put("a/b/c.bin", b"hello")
    assert store.get("a/b/c.bin") == b"hello"
    store.put("a/b/c.bin", b"replaced")
    assert store.get("a/b/c.bin") == b"replaced"
    assert store.exists("a/b/c.bin") and store.size("a/b/c.bin") == 8


def test_put_if_absent_never_overwrites(store: Storage) -> None:
    assert store.put_if_absent("x/seg", b"first") is True
    assert store.put_if_absent("x/seg", b"second") is False
    assert store.get("x/seg") == b"first"


def test_missing_keys(store: Storage) -> None:
    with pytest.raises(NotFoundError):
        store.get("nope")
    with pytest.raises(NotFoundError):
        store.read_range("nope", 0, 1)
    assert not store.exists("nope")
    store.delete("nope")  # not an error


def test_read_range(store: Storage) -> None:
    store.put("r", bytes(range(100)))
    assert store.read_range("r", 10, 5) == bytes([10, 11, 12, 13, 14])
    with pytest.raises(StorageError, match="truncated"):
        store.read_range("r", 95, 10)


def test_list(store: Storage) -> None:
    for key in ("p/2", "p/1", "p/d/3", "q/4"):
        store.put(key, b"")
    assert store.list("p") == ["p/1", "p/2", "p/d/3"]
    assert store.list("p", recursive=False) == ["p/1", "p/2", "p/d/"]
    assert store.list("missing") == []


def test_usage_counts_bytes_under_a_prefix(store: Storage) -> None:
    store.put("u/a", b"x" * 100)
    store.put("u/d/b", b"y" * 23)
    store.put("v/c", b"z" * 1000)
    assert store.usage("u") == 123
    assert store.usage("u/d") == 23
    assert store.usage("missing") == 0


def test_writer_is_invisible_until_commit(store: Storage) -> None:
    writer = store.open_writer("packs/aa/pack1")
    assert writer.write(b"abc") == 0
    assert writer.write(b"defg") == 3
    assert not store.exists("packs/aa/pack1")
    writer.commit()
    assert store.get("packs/aa/pack1") == b"abcdefg"
    aborted = store.open_writer("packs/bb/pack2")
    aborted.write(b"x")
    aborted.abort()
    assert not store.exists("packs/bb/pack2")
    assert store.list("packs/bb") == []


def test_delete(store: Storage) -> None:
    store.put("d/k", b"1")
    store.delete("d/k")
    assert not store.exists("d/k")


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "a//b", "."])
def test_invalid_keys_are_refused(store: Storage, key: str) -> None:
    with pytest.raises(StorageError):
        store.put(key, b"")


def test_abandoned_writes_are_removed_after_their_grace(store: Storage) -> None:
    import time

    writer = store.open_writer("packs/cc/pack3")
    writer.write(b"partial")  # the writer is killed: never committed, never aborted
    store.put("packs/cc/done", b"complete")
    assert store.remove_abandoned("packs", older_than=3600) == 0
    assert store.remove_abandoned("packs", older_than=0) == 1
    assert store.list("packs") == ["packs/cc/done"]
    assert abs(store.mtime("packs/cc/done") - time.time()) < 60


def test_streamed_put_and_read(store: Storage) -> None:
    chunks = [bytes([i]) * 100_000 for i in range(5)]
    assert store.put_stream_if_absent("m/x.manifest", iter(chunks)) is True
    assert store.put_stream_if_absent("m/x.manifest", iter([b"other"])) is False
    with store.open_stream("m/x.manifest") as stream:
        assert stream.read() == b"".join(chunks)
    with pytest.raises(NotFoundError):
        store.open_stream("m/missing")


def test_capabilities_name_a_local_path_only_for_files(store: Storage, tmp_path: Path) -> None:
    local = store.capabilities.local_path
    assert local is None or Path(local) == tmp_path / "repo"
