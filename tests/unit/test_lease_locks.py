"""The lease lock of object storage: exclusive while renewed, taken over only once expired
(and said so), one winner among racing takers, and a holder that cannot renew learns it has
lost the lock before its lease expires. Over the S3 driver (a moto server on loopback) and,
the lease needing nothing but the storage contract, over posix as well."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from engine.errors import LockBusyError, LockLostError, StorageError
from engine.repository import layout
from engine.repository.locks import (
    LeaseLock,
    LeaseLocks,
    LockedStorage,
    cluster_lock,
    cluster_lock_holder,
    lock_space,
)
from engine.repository.storage import Storage, open_storage
from tests.unit.conftest import allow_loopback, s3_url

NAME = layout.lock_key("main")


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    allow_loopback(monkeypatch)


@pytest.fixture(params=["s3", "posix"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "posix":
        return open_storage(str(tmp_path / "repo"))
    endpoint = request.getfixturevalue("moto_endpoint")
    return open_storage(s3_url(endpoint, request.getfixturevalue("s3_bucket")))


@pytest.fixture
def s3(moto_endpoint: str, s3_bucket: str) -> Storage:
    return open_storage(s3_url(moto_endpoint, s3_bucket))


def _die(lock: LeaseLock) -> None:
    """The holder dies: it neither renews nor releases its lease any more."""
    lock._stop.set()
    lock._thread.join()


def test_a_live_lease_refuses_and_names_its_holder(store: Storage) -> None:
    space = LeaseLocks(store, ttl=30)
    first = space.acquire(NAME, "backup --type full (pid 1 on host a)")
    try:
        assert first.previous is None
        with pytest.raises(LockBusyError, match=r"held by backup --type full \(pid 1 on host a\), whose "
                                                r"lease runs until 20\d\d-.*Z \(renewed every 10s while it "
                                                r"runs; taken over only once it has expired\)"):
            LeaseLocks(store, ttl=30).acquire(NAME, "expire (pid 2 on host b)")
        assert space.holder(NAME).startswith("backup --type full (pid 1 on host a), whose lease runs until")
    finally:
        first.release()
    assert space.holder(NAME) is None
    second = space.acquire(NAME, "expire (pid 2 on host b)")
    assert second.previous is None  # released, not taken over
    second.release()
    keys = store.list(layout.lease_prefix(NAME))
    assert keys == [layout.lease_key(NAME, 2)]  # the newest stays (generations only grow)
    assert all(layout.classify("main", k) == "lock" for k in keys)  # verify knows them


def test_renewal_keeps_the_lease_while_it_is_held(store: Storage) -> None:
    space = LeaseLocks(store, ttl=0.7, renew_every=0.1)
    held = space.acquire(NAME, "backup (pid 1)")
    try:
        deadline = time.monotonic() + 1.5  # twice the TTL
        while time.monotonic() < deadline:
            with pytest.raises(LockBusyError, match=r"held by backup \(pid 1\)"):
                space.acquire(NAME, "backup (pid 2)")
            held.check()
            time.sleep(0.2)
    finally:
        held.release()


def test_an_expired_lease_is_taken_over_and_that_is_said(store: Storage,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.repository.locks as locks

    monkeypatch.setattr(locks, "LEASE_TTL", 0.5)
    monkeypatch.setattr(locks, "LEASE_RENEW", 0.1)
    dead = LeaseLocks(store).acquire(NAME, "backup --type incr (pid 7 on host a)")
    _die(dead)
    with pytest.raises(LockBusyError):
        LeaseLocks(store).acquire(NAME, "backup (pid 8)")
    time.sleep(0.6)
    taken = LeaseLocks(store).acquire(NAME, "backup (pid 8)")
    try:
        assert taken.previous == "backup --type incr (pid 7 on host a)"
        assert "whose lease expired at 20" in taken.why_free and "without being renewed" in taken.why_free
        with pytest.raises(LockLostError, match="could not be renewed in time"):
            dead.check()  # had it lived on, its next write would have stopped
        assert store.list(layout.lease_prefix(NAME)) == [layout.lease_key(NAME, 2)]
    finally:
        taken.release()
        dead.release()  # lost: leaves the new holder's lease alone
    assert LeaseLocks(store).holder(NAME) is None


def test_cluster_lock_on_s3_says_it_took_over_an_expired_lease(
        s3: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.repository.locks as locks

    monkeypatch.setattr(locks, "LEASE_TTL", 0.4)
    monkeypatch.setattr(locks, "LEASE_RENEW", 0.1)
    assert isinstance(lock_space(s3), LeaseLocks)
    _die(lock_space(s3).acquire(NAME, "backup --type full (pid 7 on host a, since then)"))
    assert cluster_lock_holder(s3, "main") is not None
    time.sleep(0.5)
    assert cluster_lock_holder(s3, "main") is None
    notices: list[str] = []
    with cluster_lock(s3, "main", "expire", notices) as guarded:
        assert isinstance(guarded, LockedStorage)
        assert cluster_lock_holder(s3, "main").startswith("expire (pid ")
        with pytest.raises(LockBusyError, match=r"cluster 'main' is busy: its lock is held by expire"), \
                cluster_lock(s3, "main", "backup"):
            pass
    assert notices == [
        "took over the lock of cluster 'main' left by backup --type full (pid 7 on host a, since then), "
        f"whose lease expired at {notices[0].split('expired at ')[1].split(' ')[0]} without being renewed "
        "(it died, or lost the store)"]
    assert cluster_lock_holder(s3, "main") is None


def _race(spaces: list[LeaseLocks]) -> tuple[list[LeaseLock], list[str]]:
    """Each of ``spaces`` takes the lock at once, from its own thread."""
    barrier = threading.Barrier(len(spaces))
    won: list[LeaseLock] = []
    refused: list[str] = []

    def take(i: int) -> None:
        barrier.wait()
        try:
            won.append(spaces[i].acquire(NAME, f"taker {i}"))
        except LockBusyError as exc:
            refused.append(str(exc))

    threads = [threading.Thread(target=take, args=(i,)) for i in range(len(spaces))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return won, refused


def _expire(store: Storage, lock: LeaseLock) -> None:
    """Its holder died long ago: the lease's expiry is past."""
    _die(lock)
    store.put(lock.key, b'{"holder": "%s", "token": "t", "expires_at": %f}' % (
        lock._holder.encode(), time.time() - 1))


def test_racing_takers_of_an_expired_lease_never_both_win(store: Storage) -> None:
    # each taker its own storage and client, as processes or hosts would have
    spaces = [LeaseLocks(open_storage(store.capabilities.local_path) if store.capabilities.local_path
                         else type(store)(store.settings), ttl=30, renew_every=30)  # type: ignore
              for _ in range(8)]
    _expire(store, spaces[0].acquire(NAME, "dead holder"))
    for _ in range(3):
        won, refused = _race(spaces)
        assert len(won) == 1, (won, refused)
        assert len(refused) == 7 and all(f"held by {won[0]._holder}," in r for r in refused)
        won[0].check()
        _expire(store, won[0])  # the winner dies too: the next round races for its lease


def test_a_holder_that_cannot_renew_learns_it_before_the_lease_expires(
        s3: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    space = LeaseLocks(s3, ttl=1.2, renew_every=0.1)
    held = space.acquire(NAME, "backup (pid 1)")
    guarded = held.guard(s3)
    guarded.put("clusters/main/packs/aa/first", b"written while held")

    def unreachable(*_: object, **__: object) -> None:
        raise StorageError("s3://bucket/repo: the endpoint http://127.0.0.1:1 cannot be reached")

    monkeypatch.setattr(s3, "put", unreachable)  # renewals fail from now on
    lost_at = None
    while lost_at is None:
        try:
            held.check()
        except LockLostError as exc:
            lost_at = time.time()
            message = str(exc)
        time.sleep(0.02)
    assert lost_at < held.expires_at - 0.2  # well before anyone may take it over
    assert "its lease could not be renewed in time (last error: s3://bucket/repo: the endpoint" in message
    assert "stopped rather than go on without it" in message
    monkeypatch.undo()  # the store is back: the lost lease stays lost, and writes stay refused
    with pytest.raises(LockLostError):
        guarded.put("clusters/main/packs/aa/second", b"never")
    writer = s3.open_writer("clusters/main/packs/aa/third")
    writer.write(b"x")
    with pytest.raises(LockLostError):
        LockedStorage(s3, held.check).open_writer("clusters/main/packs/aa/third")
    writer.abort()
    with pytest.raises(LockLostError):
        guarded.delete("clusters/main/packs/aa/first")
    assert s3.list("clusters/main/packs") == ["clusters/main/packs/aa/first"]
    held.release()


def test_a_taken_over_holder_learns_it_at_its_next_renewal(s3: Storage) -> None:
    space = LeaseLocks(s3, ttl=30, renew_every=30)
    held = space.acquire(NAME, "backup (pid 1)")
    # another process that (wrongly, by its clock) saw the lease expired supersedes it
    s3.put(layout.lease_key(NAME, held.generation + 1),
           b'{"holder": "backup (pid 2 on host b)", "token": "t", "expires_at": 9999999999}')
    with pytest.raises(LockLostError, match=r"it was taken over by backup \(pid 2 on host b\)"):
        held.renew()
    with pytest.raises(LockLostError):
        held.check()
    held.release()  # not ours any more: left alone
    assert space.holder(NAME).startswith("backup (pid 2 on host b)")


def test_a_writer_commit_checks_the_lock(s3: Storage) -> None:
    space = LeaseLocks(s3, ttl=30, renew_every=30)
    held = space.acquire(NAME, "backup (pid 1)")
    guarded = held.guard(s3)
    writer = guarded.open_writer("clusters/main/packs/bb/pack")
    writer.write(b"frames")
    held._lose("a test")
    with pytest.raises(LockLostError, match="lost the lock .*: a test; stopped"):
        writer.commit()
    assert not s3.exists("clusters/main/packs/bb/pack")
    with pytest.raises(LockLostError):
        guarded.put_stream_if_absent("clusters/main/backups/x.manifest", iter([b"a"]))
    assert not s3.exists("clusters/main/backups/x.manifest")
    held.release()


def test_object_storage_without_conditional_writes_has_no_lock(moto_endpoint: str, s3_bucket: str) -> None:
    store = open_storage(s3_url(moto_endpoint, s3_bucket, conditional_writes="false"))
    with pytest.raises(StorageError, match=r"without conditional writes \(conditional_writes=false\), so its "
                                           r"lease lock could not keep two backups"), \
            cluster_lock(store, "main", "backup"):
        pass
