"""Tiers on S3 (a moto server on loopback): the storage class every PUT carries, a cold tier in
GLACIER whose objects cannot be read until a restore request made them readable, and the
restore's wait for them."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from engine.errors import ArchivedObjectError
from engine.repository import layout
from engine.repository.expire import collect_garbage
from engine.repository.manifest import list_backup_ids, read_manifest
from engine.repository.storage import open_storage
from engine.repository.tiers import Tier, TierSet, census, job, open_tier_storage, thaw
from engine.restore.recovery import RecoveryTarget
from tests.unit.conftest import SEGMENT_SIZE, allow_loopback, s3_url
from tests.unit.test_copies import FULL, INCR, _source
from tests.unit.test_tiers import DAY, STOPPED, restores


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    allow_loopback(monkeypatch)


def _class_of(store: Any, bucket: str, key: str) -> str:
    head = store._client.head_object(Bucket=bucket, Key=store.name_of(key))
    return str(head.get("StorageClass", "STANDARD"))


def test_every_put_carries_the_urls_storage_class(moto_endpoint: str, s3_bucket: str) -> None:
    store = open_storage(s3_url(moto_endpoint, s3_bucket, "warm", storage_class="standard_ia",
                                part_size=5 * 1024 * 1024))
    store.put("small", b"x")
    assert store.put_if_absent("new", b"y")
    store.put_stream_if_absent("big", iter([b"z" * (6 * 1024 * 1024)]))  # a multipart upload
    writer = store.open_writer("pack")
    writer.write(b"p" * 100)
    writer.commit()
    assert [_class_of(store, s3_bucket, k) for k in ("small", "new", "big", "pack")] == ["STANDARD_IA"] * 4

    tier = open_tier_storage(s3_url(moto_endpoint, s3_bucket, "cold", storage_class="GLACIER"))
    pack, manifest = layout.pack_key("main", "ab" * 16), layout.manifest_key("main", FULL)
    tier.put(pack, b"frames")
    tier.put(manifest, b"summary")
    tier.put(layout.wal_key("main", "00000002.history"), b"history")
    meta = tier.meta  # type: ignore[attr-defined]
    assert _class_of(meta, s3_bucket, pack) == "GLACIER"  # data in the archive class ...
    assert _class_of(meta, s3_bucket, manifest) == "STANDARD"  # ... what listings read, not
    assert _class_of(meta, s3_bucket, layout.wal_key("main", "00000002.history")) == "STANDARD"
    assert tier.get(manifest) == b"summary"
    with pytest.raises(ArchivedObjectError, match="archive storage class and must be restored"):
        tier.get(pack)
    assert tier.archive_state(pack) == "archived" and tier.archive_state(manifest) == "readable"


def test_a_backup_moved_to_glacier_is_restored_after_its_objects_are(
        moto_endpoint: str, s3_bucket: str, tmp_path: Path) -> None:
    from moto.moto_api import state_manager
    from moto.s3.models import s3_backends

    repo = _source(tmp_path)
    cold = open_tier_storage(s3_url(moto_endpoint, s3_bucket, "cold", storage_class="GLACIER"))
    tiers = TierSet([Tier("hot", [repo], [repo.root], age=7 * DAY),
                     Tier("cold", [cold], ["cold"], age=365 * DAY, archive_class="GLACIER",
                          wait_seconds=5 * 3600, restore_poll=0.01)])
    report = job.run(tiers, "main", 0, now=STOPPED + 10 * DAY)
    assert [(m["backup"], m["to"]) for m in report.moved] == [(FULL, "cold"), (INCR, "cold")], report.failed
    assert list_backup_ids(repo, "main") == []
    assert census(tiers, "main").by_id()[INCR].held == {"cold": [0]}
    collect_garbage(repo, "main", 0, SEGMENT_SIZE)  # what expire does to hot: its packs are gone
    assert repo.list(layout.packs_prefix("main")) == []

    view = tiers.view()
    manifest = read_manifest(view, "main", INCR)  # manifests stay readable
    with pytest.raises(ArchivedObjectError):
        view.get(layout.pack_key("main", manifest.summary.packs[0]))
    keys = thaw.restore_keys(view, "main", manifest.summary, manifest, RecoveryTarget("latest"))
    waits = thaw.plan(tiers, view, "main", keys)
    assert waits.tier == "cold" and waits.wait_seconds == 5 * 3600
    # its packs, its one block list, and its WAL from its start to the end (hot's was collected)
    assert waits.objects == len(manifest.summary.packs) + 1 + 3
    assert "must be restored before anything is written: expected wait up to 5h" in waits.describe()

    keys_of = s3_backends["123456789012"]["aws"].buckets[s3_bucket].keys
    calls: Counter[str] = Counter()
    cold.meta._client.meta.events.register(  # type: ignore[attr-defined]
        "before-call.s3", lambda model, **_: calls.update([model.name]))
    seen: list[tuple[float, float]] = []
    sleeps: list[float] = []

    def report_progress(done: float, total: float, phase: str) -> None:
        if not seen:  # S3 has taken the requests: the objects are being restored
            for name in keys_of:
                keys_of.get(name).status = "IN_PROGRESS"
        seen.append((done, total))
        assert "waiting for" in phase and "cold tier" in phase

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 2:
            for name in keys_of:
                keys_of.get(name).status = "RESTORED"

    state_manager.set_transition("s3::keyrestore", {"progression": "manual", "times": 10**9})
    try:
        assert thaw.thaw(tiers, view, "main", keys, report_progress, sleep) == waits.objects
    finally:
        state_manager.unset_transition("s3::keyrestore")
    assert calls["RestoreObject"] == waits.objects
    assert seen == [(0, waits.objects), (0, waits.objects), (waits.objects, waits.objects)]
    assert sleeps == [0.01, 0.01]
    restores(view, tmp_path, INCR)
    assert thaw.thaw(tiers, view, "main", keys, report_progress, sleep) == waits.objects  # readable now
    assert calls["RestoreObject"] == waits.objects  # nothing asked twice
