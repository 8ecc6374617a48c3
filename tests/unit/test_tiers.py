"""Tiers on posix storages: which tier a backup belongs in by age, the move's order (copy,
verify, then drop), a kill at each step leaving the backup restorable from some tier, the
replication count and its repair, and the tiers seen together by a restore."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

import pytest

from engine.config.schema import parse_config
from engine.errors import ConfigError, StorageError
from engine.repository import layout, verify
from engine.repository.manifest import list_backup_ids, read_manifest
from engine.repository.storage.posix import PosixStorage
from engine.repository.tiers import Tier, TierSet, census, job
from engine.restore.files import FileWriter
from tests.unit.test_copies import FULL, INCR, _source, back_up

DAY = 86400.0
STOPPED = datetime.fromisoformat("2026-11-25T01:00:04+00:00").timestamp()  # tests.unit.helpers.summary


def tierset(tmp_path: Path, repo: PosixStorage, warm: type[PosixStorage] = PosixStorage) -> TierSet:
    return TierSet([
        Tier("hot", [repo], [repo.root], age=7 * DAY),
        Tier("warm", [warm(tmp_path / "warm-a"), PosixStorage(tmp_path / "warm-b")],
             ["a", "b"], replication=2, age=30 * DAY),
        Tier("cold", [PosixStorage(tmp_path / "cold")], ["c"], age=365 * DAY),
    ])


def restores(storage: object, tmp_path: Path, backup_id: str) -> None:
    """The backup's files, read through ``storage``, are the source tree's."""
    manifest = read_manifest(storage, "main", backup_id)  # type: ignore[arg-type]
    out = tmp_path / f"restored-{os.urandom(4).hex()}"
    out.mkdir()
    FileWriter(storage, "main", manifest.summary, out, jobs=2).write(manifest, {})  # type: ignore[arg-type]
    assert (out / "base/5/16384").read_bytes() == (tmp_path / "pgdata/base/5/16384").read_bytes()


def where(tiers: TierSet, backup_id: str) -> dict[str, list[int]]:
    return census(tiers, "main").by_id()[backup_id].held


def test_backups_move_to_the_tier_their_age_says_and_restore_from_there(tmp_path: Path) -> None:
    repo = _source(tmp_path)
    tiers = tierset(tmp_path, repo)
    assert tiers.for_age(DAY).name == "hot" and tiers.for_age(8 * DAY).name == "warm"
    assert tiers.for_age(31 * DAY).name == "cold" and tiers.for_age(400 * DAY).name == "cold"

    assert job.run(tiers, "main", 0, now=STOPPED + 3 * DAY).moved == []  # young: stays hot
    report = job.run(tiers, "main", 0, now=STOPPED + 10 * DAY)
    assert [(m["backup"], m["from"], m["to"], m["copies"]) for m in report.moved] == \
        [(FULL, "hot", "warm", 2), (INCR, "hot", "warm", 2)]
    assert report.ok and report.failed == [] and report.below_replication == []
    assert list_backup_ids(repo, "main") == []  # dropped from hot, after warm verified both copies
    for storage in tiers.tier("warm").storages:
        assert list_backup_ids(storage, "main") == [FULL, INCR]
        checked = verify.run(storage, "main")
        assert checked.ok, checked.problems
        wal = {k.rsplit("/", 1)[-1] for k in storage.list(layout.wal_prefix("main"))}
        assert {"000000010000000000000002", "00000002.history"} <= wal  # the WAL follows
    assert where(tiers, INCR) == {"warm": [0, 1]}
    restores(tiers.view(), tmp_path, INCR)

    report = job.run(tiers, "main", 0, now=STOPPED + 40 * DAY)  # on to cold; warm collects
    assert [m["to"] for m in report.moved] == ["cold", "cold"]
    assert where(tiers, FULL) == {"cold": [0]}
    assert tiers.tier("warm").storages[0].list(layout.packs_prefix("main")) == []  # garbage collected
    restores(tiers.view(), tmp_path, FULL)

    report = job.run(tiers, "main", 0, now=STOPPED + 400 * DAY)
    assert report.moved == [] and report.past_last_tier == [FULL, INCR]  # retention decides now


class Crash(BaseException):
    """A kill: nothing after it runs."""


@pytest.mark.parametrize("step", ["pack", "manifest", "verify", "drop"])
def test_a_kill_at_any_step_leaves_the_backup_restorable_and_the_next_run_completes_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str) -> None:
    repo = _source(tmp_path)

    class Killed(PosixStorage):
        def put_stream_if_absent(self, key: str, chunks: Iterable[bytes]) -> bool:
            kind = layout.classify("main", key)
            if (step, kind) in (("pack", "pack"), ("manifest", "manifest")):
                raise Crash(key)
            return super().put_stream_if_absent(key, chunks)

    tiers = tierset(tmp_path, repo, warm=Killed)
    if step == "verify":
        monkeypatch.setattr(job, "_readable_problems", lambda *a: (_ for _ in ()).throw(Crash()))
    if step == "drop":
        real_delete = PosixStorage.delete

        def delete(self: PosixStorage, key: str) -> None:
            if layout.classify("main", key) == "manifest" and self is repo:
                raise Crash(key)
            real_delete(self, key)

        monkeypatch.setattr(PosixStorage, "delete", delete)
    with pytest.raises(Crash):
        job.run(tiers, "main", 0, now=STOPPED + 10 * DAY)
    assert where(tiers, FULL).get("hot") == [0]  # still in hot, whatever else happened
    for backup_id in (FULL, INCR):
        restores(tiers.view(), tmp_path, backup_id)
        restores(repo, tmp_path, backup_id)
    monkeypatch.undo()
    tiers = tierset(tmp_path, repo)
    report = job.run(tiers, "main", 0, now=STOPPED + 10 * DAY)
    assert report.ok, report.failed
    assert where(tiers, FULL) == where(tiers, INCR) == {"warm": [0, 1]}
    for storage in tiers.tier("warm").storages:
        assert verify.run(storage, "main").ok


def test_a_tier_below_its_replication_is_reported_and_repaired(tmp_path: Path) -> None:
    repo = _source(tmp_path)
    tiers = tierset(tmp_path, repo)
    job.run(tiers, "main", 0, now=STOPPED + 10 * DAY)
    lost = tiers.tier("warm").storages[1]
    lost.delete(layout.manifest_key("main", INCR))
    planned = job.run(tiers, "main", 0, now=STOPPED + 10 * DAY, dry_run=True)
    assert planned.below_replication == [{"backup": INCR, "tier": "warm", "copies": 1, "replication": 2}]
    assert planned.planned == [{"backup": INCR, "action": "repair", "from": "warm", "to": "warm",
                                "storages": [f"warm storage {lost.describe()}"]}]
    assert not planned.ok and list_backup_ids(lost, "main") == [FULL]  # a dry run writes nothing
    report = job.run(tiers, "main", 0, now=STOPPED + 10 * DAY)
    assert report.repaired == [{"backup": INCR, "tier": "warm", "copies": 2, "replication": 2}]
    assert report.ok and list_backup_ids(lost, "main") == [FULL, INCR]
    assert verify.run(lost, "main").ok


def test_a_copy_that_fails_verification_is_not_counted_and_the_backup_stays(tmp_path: Path) -> None:
    repo = _source(tmp_path)

    class Rotten(PosixStorage):
        """Flips a byte of every pack it stores (a disk that lies)."""

        def put_stream_if_absent(self, key: str, chunks: Iterable[bytes]) -> bool:
            if layout.classify("main", key) == "pack":
                data = bytearray(b"".join(chunks))
                data[len(data) // 2] ^= 0xFF
                chunks = [bytes(data)]
            return super().put_stream_if_absent(key, chunks)

    tiers = tierset(tmp_path, repo, warm=Rotten)
    report = job.run(tiers, "main", 0, now=STOPPED + 10 * DAY)
    assert report.moved == [] and not report.ok
    assert "fails verification" in report.failed[0] and "stays in hot" in report.failed[1]
    assert list_backup_ids(repo, "main") == [FULL, INCR]
    assert list_backup_ids(tiers.tier("warm").storages[0], "main") == []  # not a copy
    restores(tiers.view(), tmp_path, INCR)


def test_the_tiered_view_reads_each_object_from_the_hottest_tier_holding_it(tmp_path: Path) -> None:
    repo = _source(tmp_path)
    tiers = tierset(tmp_path, repo)
    job.run(tiers, "main", 0, now=STOPPED + 10 * DAY)
    view = tiers.view()
    assert list_backup_ids(view, "main") == [FULL, INCR]
    with pytest.raises(StorageError, match="read-only"):
        view.put("x", b"")
    broken = tiers.tier("warm").storages[0]
    os.rename(broken.root, broken.root + ".gone")  # one warm copy lost: the other serves
    restores(tierset(tmp_path, repo).view(), tmp_path, FULL)


def _config(tiers: str) -> str:
    return f'[repository]\npath = "/srv/repo"\n{tiers}\n[clusters.main]\npgdata = "/srv/pg"\n'


@pytest.mark.parametrize("tiers, error", [
    ('[repository.tiers.hot]\nage = "7d"\n[repository.tiers.warm]\nage = "30d"\nstorage = "/w"\n'
     'replication = 2\n', "warm.replication: 2 copies need 2 independent storages, but warm has 1"),
    ('[repository.tiers.warm]\nage = "30d"\nstorage = "/w"\n', "hot: required"),
    ('[repository.tiers.hot]\nage = "7d"\n[repository.tiers.warm]\nage = "3d"\nstorage = "/w"\n',
     "warm.age: must be more than hot.age"),
    ('[repository.tiers.hot]\nage = "7d"\n[repository.tiers.warm]\nage = "30d"\n'
     'storage = "s3://b/w?storage_class=GLACIER"\n[repository.tiers.cold]\nage = "90d"\nstorage = "/c"\n',
     "only the coldest tier may use one"),
    ('[repository.tiers.hot]\nage = "7d"\n[repository.tiers.cold]\nage = "30d"\n'
     'storage = "s3://b/c?storage_class=FROZEN"\n', "storage_class must be one of"),
    ('[repository.tiers.hot]\nage = "7d"\n[repository.tiers.cold]\nage = "30d"\n'
     'storage = "s3://b/c?storage_class=DEEP_ARCHIVE"\nretrieval = "Expedited"\n',
     "DEEP_ARCHIVE does not offer Expedited"),
    ('[repository.tiers.hot]\nage = "7d"\n[repository.tiers.warm]\nage = "30d"\nstorage = "/srv/repo"\n',
     "is the repository itself"),
    ('[repository.tiers.hot]\nage = "7d"\n[repository.tiers.warm]\nage = "30d"\n'
     'storage = "s3://b/t?storage_class=STANDARD_IA"\n[repository.tiers.cold]\nage = "90d"\n'
     'storage = "s3://b/t/?storage_class=GLACIER"\n', "cold: storage s3://b/t/?storage_class=GLACIER is "
     "also a storage of warm"),
    ('[repository.tiers.hot]\nage = "7d"\n[repository.tiers.lukewarm]\nage = "30d"\nstorage = "/w"\n',
     "repository.tiers.lukewarm: unknown key"),
])
def test_impossible_tiers_are_refused_naming_the_key(tiers: str, error: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(error)):
        parse_config(_config(tiers).encode(), "lifeboat.toml")


def test_the_seeds_tiers_load() -> None:
    config = parse_config(_config(
        '[repository.tiers.hot]\nage = "7d"\nstorage = "/srv/hot-replica"\nreplication = 2\n'
        '[repository.tiers.warm]\nage = "30d"\nstorages = ["/srv/warm-a", "s3://b/warm?storage_class='
        'STANDARD_IA"]\nreplication = 2\n'
        '[repository.tiers.cold]\nage = "365d"\nstorages = ["s3://b/cold-1?storage_class=GLACIER", '
        '"s3://c/cold-2?storage_class=GLACIER", "s3://d/cold-3?storage_class=DEEP_ARCHIVE"]\n'
        'replication = 3\n').encode(), "lifeboat.toml")
    tiers = config.repository.tiers
    assert [n for n, _t in tiers.configured()] == ["hot", "warm", "cold"]
    assert tiers.cold is not None and tiers.cold.archive_class() == "GLACIER"
    assert tiers.cold.wait_seconds() == 5 * 3600 and tiers.interval == 3600


def _configured(tmp_path: Path, repo: PosixStorage, retention: str = "") -> object:
    return parse_config(
        (f'[repository]\npath = "{repo.root}"\n'
         f'[repository.tiers.hot]\nage = "7d"\n'
         f'[repository.tiers.warm]\nage = "30d"\nstorages = ["{tmp_path}/warm-a", "{tmp_path}/warm-b"]\n'
         f'replication = 2\n[retention]\ngc_grace = "0s"\n{retention}'
         f'[clusters.main]\npgdata = "{tmp_path}/pgdata"\n').encode(), "lifeboat.toml")


def test_hot_wal_expiry_keeps_what_a_warm_backup_needs_until_warm_holds_it(tmp_path: Path) -> None:
    from engine.repository import expire
    from engine.repository.tiers import open_tiers

    repo = _source(tmp_path)
    young = datetime.fromtimestamp(STOPPED + 9.5 * DAY).astimezone().isoformat()
    back_up(repo, tmp_path / "pgdata", "20261203-130000F", start_lsn="0/9000028", stop_lsn="0/9000100",
            start_wal="000000010000000000000009", stop_wal="000000010000000000000009", stopped_at=young)
    config = _configured(tmp_path, repo)
    tiers = open_tiers(config, repo)  # type: ignore[arg-type]
    job.run(tiers, "main", 0, now=STOPPED + 10 * DAY)  # the two old ones to warm, the young stays
    assert list_backup_ids(repo, "main") == ["20261203-130000F"]
    segment = layout.wal_key("main", "000000010000000000000002")  # both backups' own WAL
    for storage in tiers.tier("warm").storages:
        storage.delete(segment)  # as if warm's copy of it were lost
    report = expire.run(config, "main", repo)  # type: ignore[arg-type]
    assert repo.exists(segment)
    assert any("backup 20261125-010000F in the warm tier needs it" in n for n in report.notices)
    report = job.run(tiers, "main", 0, now=STOPPED + 10 * DAY)  # brings warm's WAL up to date
    assert report.wal_topped_up == 2 and all(s.exists(segment) for s in tiers.tier("warm").storages)
    expire.run(config, "main", repo)  # type: ignore[arg-type]
    assert not repo.exists(segment)  # warm holds it now: hot lets it go


def test_the_agents_tiering_records_moves_and_shortfalls(tmp_path: Path) -> None:
    from engine.agent.tierer import Tierer

    repo = _source(tmp_path)
    config = _configured(tmp_path, repo)
    events: list[tuple[str, str, str, str]] = []
    tierer = Tierer(config, repo, lambda cluster: lambda kind, severity, message: events.append(  # type: ignore[arg-type]
        (str(cluster), kind, severity, message)))
    tierer.round()  # the backups are old (2026-11-25): on to warm
    assert [(e[1], e[2]) for e in events] == [("backup_tiered", "info")] * 2
    assert "moved from hot to warm (2 copies verified)" in events[0][3]
    events.clear()
    backups = tmp_path / "warm-b" / "clusters" / "main" / "backups"
    for name in os.listdir(backups):
        os.unlink(backups / name)
    backups.rmdir()
    backups.write_text("not a directory")  # warm-b lost its manifests and cannot take new ones
    tierer.round()
    tierer.round()  # recorded once, not every round
    assert [(e[1], e[2]) for e in events] == [("tiering_failed", "warning"), ("below_replication", "warning")]
    assert f"backup {FULL} has 1 of the 2 copies warm needs" in events[1][3]
    events.clear()
    backups.unlink()
    backups.mkdir()
    tierer.round()
    assert [e[1] for e in events] == ["tier_repaired", "tier_repaired", "tiering_recovered"], events


def test_retention_expires_backups_in_every_tier(tmp_path: Path) -> None:
    from engine.repository import expire
    from engine.repository.tiers import open_tiers

    repo = _source(tmp_path)
    config = _configured(tmp_path, repo, 'full = "1d"\n')
    tiers = open_tiers(config, repo)  # type: ignore[arg-type]
    job.run(tiers, "main", 0, now=STOPPED + 10 * DAY)
    dry = expire.run(config, "main", repo, dry_run=True)  # type: ignore[arg-type]
    assert [b.id for b in dry.plan.expire] == [FULL]
    assert dry.plan.reasons[FULL] == "older than the full retention of 1 days (in the warm tier)"
    assert all(list_backup_ids(s, "main") == [FULL, INCR] for s in tiers.tier("warm").storages)
    expire.run(config, "main", repo)  # type: ignore[arg-type]
    for storage in tiers.tier("warm").storages:
        assert list_backup_ids(storage, "main") == [INCR]  # gone from both copies
    job.run(tiers, "main", 0, now=STOPPED + 10 * DAY)  # the tiers' garbage is collected
    for storage in tiers.tier("warm").storages:
        checked = verify.run(storage, "main")
        assert checked.ok, checked.problems
    restores(tiers.view(), tmp_path, INCR)
