"""Copies in other regions: their configuration, retention on copies (the primary's or their
own, by the primary's expire code), validation finding a missing or damaged object, the
bandwidth limit's timing, WAL shipping and its delay, a copy on S3 (moto), and the errors of
a region that is unknown or unreachable."""

from __future__ import annotations

import math
import os
import threading
import time
from pathlib import Path

import pytest

from engine.config.schema import Config, parse_config
from engine.errors import ConfigError, LockBusyError, RegionUnavailableError, UsageError
from engine.repository import layout, verify
from engine.repository.copies import copy_cluster, copy_lags, ship_wal
from engine.repository.copy_validation import validate
from engine.repository.manifest import list_backup_ids, read_manifest
from engine.repository.region import copy_policy, expire_copy, open_copy
from engine.repository.retention import NOT_IN_PRIMARY
from engine.repository.storage.posix import PosixStorage
from engine.repository.throttle import ThrottledStorage, TokenBucket
from engine.restore.files import FileWriter
from tests.unit.conftest import allow_loopback, fake_segment, s3_url
from tests.unit.test_copies import (
    BLOCK,
    FULL,
    INCR,
    back_up,
    content,
    push,
    repository,
    set_mtime,
    source_with_point,
    write_tree,
)

NEWER = "20261125-030000F"


def config_of(tmp_path: Path, **copy: object) -> Config:
    """A configuration with the fixture's source as the repository and a copy in region dr."""
    return Config.model_validate({
        "repository": {"path": str(tmp_path / "source"), "region": "home",
                       "copies": {"dr": {"path": str(tmp_path / "dr"), **copy}}},
        "retention": {"gc_grace": "0s"}, "catalog": {"path": str(tmp_path / "catalog.sqlite3")},
        "clusters": {"main": {"pgdata": str(tmp_path / "pgdata")}}})


@pytest.fixture
def primary(tmp_path: Path) -> PosixStorage:
    return source_with_point(tmp_path)


def copied(primary: PosixStorage, tmp_path: Path) -> PosixStorage:
    copy = PosixStorage(tmp_path / "dr")
    copy_cluster(primary, copy, "main", "dr")
    return copy


# configuration --------------------------------------------------------------------------------

def test_a_copy_is_a_path_or_a_url_with_its_retention_limits_and_validation() -> None:
    config = parse_config(b'''
[repository]
path = "/srv/repo"
[repository.copies.us-west]
url = "s3://dr-bucket/lifeboat?endpoint=http://127.0.0.1:9000&region=us-west-2"
bandwidth_limit = "50MB/s"
max_delay = "30s"
validate_sample = "5%"
[repository.copies.eu-central]
path = "/mnt/dr"
validate_interval = "2h"
[repository.copies.eu-central.retention]
full = 4
max_recovery_window = "30d"
[clusters.main]
pgdata = "/d"
''', "x.toml")
    west, central = config.repository.copies["us-west"], config.repository.copies["eu-central"]
    assert west.url.startswith("s3://dr-bucket/") and west.path is None
    assert (west.bandwidth_limit, west.max_delay, west.retention) == (50_000_000, 30.0, "primary")
    assert west.validate_sample == ("share", 0.05) and west.validate_interval == 3600.0
    assert central.url == "/mnt/dr" and central.retention.rules() == {"full": ("count", 4.0)}
    assert central.wal_interval == 5.0 and central.bandwidth_limit is None


@pytest.mark.parametrize(("copy", "said"), [
    ('path = "/a"\nurl = "/b"', "exactly one of path"),
    ("interval = \"1m\"", "exactly one of path"),
    ('url = "ftp://host/x"', "unknown storage 'ftp://'"),
    ('url = "s3:///prefix"', "s3://BUCKET/PREFIX"),
    ('url = "s3://b/p?storage_class=GLACIER"', "without thawing every object"),
    ('path = "/srv/repo"', "cannot be the repository itself"),
    ('path = "/x"\nbandwidth_limit = "fast"', "not a rate"),
    ('path = "/x"\nvalidate_sample = "5"', "written with '%'"),
    ('path = "/x"\nretention = "mine"', "retention"),
])
def test_a_wrong_copy_is_refused_on_load_naming_the_key(copy: str, said: str) -> None:
    raw = f'[repository]\npath = "/srv/repo"\n[repository.copies.dr]\n{copy}\n'.encode()
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, "x.toml")
    assert "copies.dr" in str(caught.value) and said in str(caught.value)


# retention on copies --------------------------------------------------------------------------

def test_a_copy_keeps_what_the_primary_keeps_through_the_agent(primary: PosixStorage,
                                                                tmp_path: Path) -> None:
    from engine.agent.copier import RegionCopier

    older = "20261125-000000F"  # a full backup of other data: packs of its own
    write_tree(tmp_path / "other", {"PG_VERSION": b"15\n", "base/5/1": os.urandom(BLOCK * 3)})
    own = set(back_up(primary, tmp_path / "other", older))
    config = config_of(tmp_path, interval="1h", validate_interval="0s")
    events: list[tuple[str, str]] = []
    copier = RegionCopier(config, primary, "dr", lambda c: lambda kind, _s, text: events.append((kind, text)))
    copier.round()
    copy = PosixStorage(tmp_path / "dr")
    assert list_backup_ids(copy, "main") == [older, FULL, INCR]
    assert all(copy.exists(layout.pack_key("main", p)) for p in own)
    primary.delete(layout.manifest_key("main", older))  # the primary's expire removed it (manifest first)
    copier.round()
    assert list_backup_ids(copy, "main") == [FULL, INCR]
    assert [k for k, _ in events] == ["copy_expired"] and older in events[0][1]
    assert not any(copy.exists(layout.pack_key("main", p)) for p in own)  # its blocks went with it
    assert verify.run(copy, "main").ok  # what is left restores
    copier.round()
    assert [k for k, _ in events] == ["copy_expired"]  # nothing copied again, nothing expired again


def test_expire_of_a_copy_refuses_when_the_primary_is_lost(primary: PosixStorage, tmp_path: Path) -> None:
    config = config_of(tmp_path)
    copy = copied(primary, tmp_path)
    before = content(copy)
    for backup_id in list_backup_ids(primary, "main"):  # the primary region is lost
        primary.delete(layout.manifest_key("main", backup_id))
    with pytest.raises(RegionUnavailableError, match="holds no backup of cluster 'main' .*nothing is expi"):
        expire_copy(config, "main", "dr", primary, copy)
    with pytest.raises(RegionUnavailableError, match="not open"):
        expire_copy(config, "main", "dr", None, copy)
    assert content(copy) == before


def test_a_copy_with_its_own_policy_copies_and_keeps_only_what_it_keeps(primary: PosixStorage,
                                                                       tmp_path: Path) -> None:
    tree = tmp_path / "pgdata"
    write_tree(tree, {"base/5/16385": os.urandom(BLOCK * 5)})
    back_up(primary, tree, NEWER)
    config = config_of(tmp_path, retention={"full": 1, "gc_grace": "0s"})
    copy = PosixStorage(tmp_path / "dr")
    policy = copy_policy(config, "main", "dr", primary, copy)
    report = copy_cluster(primary, copy, "main", "dr", policy)
    assert list_backup_ids(copy, "main") == [INCR, NEWER]  # one full kept: the older one is not copied
    assert report.skipped == ["1 backups: not kept by the copy's retention",
                              "1 WAL files: older than the oldest backup the copy's retention keeps"]
    assert expire_copy(config, "main", "dr", primary, copy).plan.expire == []
    again = copy_cluster(primary, copy, "main", "dr", policy)
    assert (again.backups_copied, again.wal_copied, again.bytes_copied) == (0, 0, 0)
    assert copy_lags(primary, copy, "main")[0] == 0.0  # what it does not keep is no lag


def test_expire_of_a_copy_holds_the_copys_own_lock(primary: PosixStorage, tmp_path: Path) -> None:
    from engine.repository.locks import cluster_lock

    config = config_of(tmp_path)
    copy = copied(primary, tmp_path)
    primary.delete(layout.manifest_key("main", FULL))
    with cluster_lock(copy, "main", "a copy by hand"), pytest.raises(LockBusyError, match="a copy by hand"):
        expire_copy(config, "main", "dr", primary, copy)
    report = expire_copy(config, "main", "dr", primary, copy)
    assert [b.id for b in report.plan.expire] == [FULL] and report.plan.reasons[FULL] == NOT_IN_PRIMARY


# validation -----------------------------------------------------------------------------------

def test_validation_of_a_sound_copy_passes(primary: PosixStorage, tmp_path: Path) -> None:
    copy = copied(primary, tmp_path)
    report = validate(primary, copy, "main", "dr", sample=("share", 1.0))
    assert report.ok, report.problems
    assert report.compared and report.backups == 2 and report.packs > 0 and report.wal > 0
    kinds = ("wal", "history", "backup-history", "pack", "list", "manifest")
    sampled = [k for k in copy.list(layout.cluster_prefix("main")) if layout.classify("main", k) in kinds]
    assert report.sampled == sampled  # "100%": every WAL file, pack, list and manifest


def test_validation_finds_a_missing_pack_a_damaged_object_and_a_missing_backup(primary: PosixStorage,
                                                                               tmp_path: Path) -> None:
    copy = copied(primary, tmp_path)
    pack = read_manifest(copy, "main", FULL).summary.packs[0]
    copy.delete(layout.pack_key("main", pack))
    wal_key = layout.wal_key("main", "000000010000000000000002")
    damaged = bytearray(copy.get(wal_key))
    damaged[-10] ^= 0xFF
    copy.put(wal_key, bytes(damaged))
    tree = tmp_path / "pgdata"
    write_tree(tree, {"base/5/16385": os.urandom(BLOCK * 5)})
    back_up(primary, tree, NEWER)  # in the primary for an hour, never copied
    set_mtime(primary, layout.manifest_key("main", NEWER), time.time() - 3600)

    report = validate(primary, copy, "main", "dr", sample=("share", 1.0), grace=300)
    assert not report.ok and report.missing == [NEWER]
    said = [str(p) for p in report.problems]
    assert any(s.startswith(f"pack {layout.pack_key('main', pack)}: missing from the copy") and FULL in s
               for s in said), said
    assert any(s.startswith("wal ") and "000000010000000000000002: compressed data is damaged" in s
               and f"{FULL}, {INCR} cannot be restored" in s for s in said), said
    assert any(NEWER in s and "the copy lacks it" in s for s in said), said
    # a backup written a minute ago is copy lag, not a problem of the copy
    set_mtime(primary, layout.manifest_key("main", NEWER), time.time() - 60)
    assert validate(primary, copy, "main", "dr", sample=("count", 0), grace=300).missing == []


def test_validation_without_the_primary_still_checks_the_copy(primary: PosixStorage, tmp_path: Path) -> None:
    copy = copied(primary, tmp_path)
    lists = copy.list(layout.lists_prefix("main"))
    copy.delete(lists[0])
    report = validate(None, copy, "main", "dr", sample=("count", 0))
    assert not report.compared and "not compared" in report.primary
    assert [p.kind for p in report.problems] == ["list", "list"]  # both backups use the lost list


def test_copy_validate_on_the_command_line_exits_1_naming_the_problem(
        primary: PosixStorage, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lifeboat.cli import main

    copy = copied(primary, tmp_path)
    path = tmp_path / "lifeboat.toml"
    path.write_text(f'os_user = "root"\n[repository]\npath = "{tmp_path}/source"\n'
                    f'[repository.copies.dr]\npath = "{tmp_path}/dr"\nvalidate_sample = 0\n'
                    f'[catalog]\npath = "{tmp_path}/catalog.sqlite3"\n'
                    f'[clusters.main]\npgdata = "{tmp_path}/pgdata"\n')
    assert main(["--config", str(path), "copy", "--validate"]) == 0
    assert "copy of cluster 'main' in region dr: OK" in capsys.readouterr().out
    pack = read_manifest(copy, "main", INCR).summary.packs[-1]
    copy.delete(layout.pack_key("main", pack))
    assert main(["--config", str(path), "copy", "--validate", "--region", "dr"]) == 1
    out, err = capsys.readouterr()
    assert "FAILED (1 problems)" in out and f"{pack}: missing from the copy" in err
    assert main(["--config", str(path), "copy", "--validate", "--region", "mars"]) == 2
    assert "region 'mars': the configuration has no [repository.copies.mars] (regions: dr" in \
        capsys.readouterr().err
    from engine.catalog.store import Catalog

    with Catalog.open(parse_config(path.read_bytes(), path)) as catalog:
        _at, state = catalog.copy_states()[("main", "dr", "validation")]
    assert state["ok"] is False and state["problems"] == 1  # the metrics show it


def test_expire_verify_and_enqueue_take_a_region(primary: PosixStorage, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from engine import jobs
    from engine.catalog.store import Catalog
    from lifeboat.cli import main

    copied(primary, tmp_path)
    path = tmp_path / "lifeboat.toml"
    path.write_text(f'os_user = "root"\n[repository]\npath = "{tmp_path}/source"\n'
                    f'[repository.copies.dr]\npath = "{tmp_path}/dr"\n'
                    f'[catalog]\npath = "{tmp_path}/catalog.sqlite3"\n[retention]\ngc_grace = "0s"\n'
                    f'[clusters.main]\npgdata = "{tmp_path}/pgdata"\n')
    primary.delete(layout.manifest_key("main", FULL))
    assert main(["--config", str(path), "expire", "--region", "dr", "--dry-run", "--output", "json"]) == 0
    dry = json.loads(capsys.readouterr().out)
    assert [e["id"] for e in dry["expired"]] == [FULL] and dry["expired"][0]["reason"] == NOT_IN_PRIMARY
    assert list_backup_ids(PosixStorage(tmp_path / "dr"), "main") == [FULL, INCR]  # a dry run
    assert main(["--config", str(path), "verify", "--region", "dr"]) == 0
    assert "2 backups" in capsys.readouterr().out
    config = parse_config(path.read_bytes(), path)
    with Catalog.open(config) as catalog:
        restore = {"pgdata": str(tmp_path / "r"), "region": "dr"}
        job = jobs.enqueue(catalog, config, "restore", "main", restore, "test")
        assert catalog.job(job).params["region"] == "dr"
        with pytest.raises(UsageError, match="region 'mars'"):
            jobs.enqueue(catalog, config, "restore", "main", restore | {"region": "mars"}, "test")


# the bandwidth limit --------------------------------------------------------------------------

def test_the_token_bucket_paces_to_its_rate() -> None:
    clock = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    bucket = TokenBucket(1000, clock=lambda: clock[0], sleep=sleep)
    for _ in range(10):
        bucket.take(500)
    assert clock[0] == pytest.approx(5.0)  # 5000 bytes at 1000 B/s, from an empty bucket
    clock[0] += 100  # idle: no burst saved without one
    bucket.take(500)
    assert slept[-1] == pytest.approx(0.5)


def test_a_limited_copy_of_4_mb_at_8_mb_per_second_takes_half_a_second(tmp_path: Path) -> None:
    source = repository(tmp_path / "source")
    data = os.urandom(4 * 1024 * 1024)
    push(source, tmp_path, "000000010000000000000002", _segment_with(data))
    size = source.size(layout.wal_key("main", "000000010000000000000002"))
    assert size >= 4 * 1024 * 1024  # random data does not compress
    limit = 8 * 1024 * 1024
    target = ThrottledStorage(PosixStorage(tmp_path / "target"), TokenBucket(limit))
    started = time.monotonic()
    report = ship_wal(source, target, "main", "dr")
    elapsed = time.monotonic() - started
    assert report.wal_copied == 1
    assert size / limit <= elapsed < size / limit + 1.5
    moved, seconds = target.meter.take()
    assert moved >= size and moved / seconds <= limit * 1.02  # measured: at most the limit


def _segment_with(data: bytes) -> bytes:
    segment = bytearray(fake_segment(1, 2))
    segment[8192:8192 + len(data)] = data
    return bytes(segment)


def test_two_threads_share_one_limit() -> None:
    bucket = TokenBucket(4 * 1024 * 1024)
    started = time.monotonic()
    threads = [threading.Thread(target=lambda: [bucket.take(256 * 1024) for _ in range(4)])
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert time.monotonic() - started >= 0.5 - 0.01  # 2 MiB at 4 MiB/s, whoever sends it


# WAL shipping ---------------------------------------------------------------------------------

def test_shipping_copies_new_wal_and_measures_its_delay(primary: PosixStorage, tmp_path: Path) -> None:
    copy = copied(primary, tmp_path)
    assert ship_wal(primary, copy, "main", "dr").delay == 0.0
    push(primary, tmp_path, "000000020000000000000004", fake_segment(2, 4))
    key = layout.wal_key("main", "000000020000000000000004")
    set_mtime(primary, key, 1_000.0)
    assert copy_lags(primary, copy, "main", now=1_045.0) == (45.0, 45.0)
    report = ship_wal(primary, copy, "main", "dr", now=1_045.0)
    assert (report.wal_copied, report.delay) == (1, 45.0) and copy.exists(key)
    assert ship_wal(primary, copy, "main", "dr", now=1_050.0).delay == 0.0


def test_shipping_does_not_fill_what_the_copys_retention_expired(primary: PosixStorage,
                                                                 tmp_path: Path) -> None:
    copy = copied(primary, tmp_path)
    copy.delete(layout.wal_key("main", "000000010000000000000001"))  # before the oldest backup
    report = ship_wal(primary, copy, "main", "dr")
    assert (report.wal_copied, report.delay) == (0, 0.0)
    assert copy_lags(primary, copy, "main") == (0.0, 0.0)


# restoring from a region, and its errors --------------------------------------------------------

def test_a_regions_context_reads_the_copy_and_names_an_unknown_or_unreachable_region(
        primary: PosixStorage, tmp_path: Path) -> None:
    from engine.context import Context

    config = config_of(tmp_path)
    ctx = Context(config, tmp_path / "x.toml", "main")
    with pytest.raises(UsageError, match=r"region 'mars': .*\(regions: dr; the primary is 'home'\)"):
        ctx.in_region("mars")
    with pytest.raises(RegionUnavailableError, match=rf"region 'dr' \({tmp_path}/dr\): there is no Lifeboat"):
        ctx.in_region("dr").storage  # noqa: B018 (nothing copied there yet)
    if (tmp_path / "dr").exists():
        (tmp_path / "dr").rmdir()
    (tmp_path / "dr").write_text("an unmounted volume")
    with pytest.raises(RegionUnavailableError, match="region 'dr' .*unreachable"):
        open_copy(config, "dr", "main")
    (tmp_path / "dr").unlink()
    copied(primary, tmp_path)
    region = ctx.in_region("dr")
    assert region.storage.describe() == str(tmp_path / "dr")
    manifest = read_manifest(region.storage, "main", INCR)
    out = tmp_path / "restored"
    out.mkdir()
    FileWriter(region.storage, "main", manifest.summary, out, jobs=2).write(manifest, {})
    assert (out / "base/5/16384").read_bytes() == (tmp_path / "pgdata/base/5/16384").read_bytes()


def test_the_plan_of_a_restore_from_a_region_reads_the_copy_or_names_what_is_wrong(
        primary: PosixStorage, tmp_path: Path) -> None:
    from engine import jobs
    from engine.context import Context
    from engine.restore.plan import plan_restore

    ctx = Context(config_of(tmp_path), tmp_path / "x.toml", "main")
    asked = {"pgdata": str(tmp_path / "restored"), "region": "dr", "target": "name",
             "target_value": "before-migration"}
    plan = plan_restore(ctx, jobs.restore_params(asked))
    assert not plan.runnable and plan.region == "dr" and plan.backup_id is None
    assert any(p.startswith(f"region 'dr' ({tmp_path}/dr): there is no Lifeboat repository there")
               and p.endswith("(regions: dr)") for p in plan.problems), plan.problems
    copied(primary, tmp_path)
    plan = plan_restore(ctx, jobs.restore_params(asked))
    assert plan.source == f"the copy in region dr: {tmp_path}/dr"
    assert plan.backup_id == INCR  # the newest backup before the restore point, copied with it
    assert not plan.warnings or "was not recorded" not in " ".join(plan.warnings)
    assert not [p for p in plan.problems if "region" in p or "WAL" in p], plan.problems


def test_restore_from_a_region_fetches_its_wal_there(tmp_path: Path) -> None:
    from engine.postgres.commands import restore_command
    from lifeboat.wal_commands import parse_fast

    command = restore_command(tmp_path / "x.toml", "main", "eu-central")
    assert command.endswith('--cluster main wal-get --region eu-central %f "%p"')
    parsed = parse_fast(["--config", "x.toml", "--cluster", "main", "wal-get", "--region", "eu", "A", "B"])
    assert parsed is not None and (parsed.region, parsed.wal_name, parsed.destination) == ("eu", "A", "B")


# a copy on S3 ---------------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loopback only (the moto server); unit tests reach nothing else."""
    allow_loopback(monkeypatch)


def test_a_copy_on_s3_is_copied_expired_validated_and_restorable(
        primary: PosixStorage, tmp_path: Path, s3_bucket: str, moto_endpoint: str) -> None:
    url = s3_url(moto_endpoint, s3_bucket, "dr")
    config = Config.model_validate({
        "repository": {"path": str(tmp_path / "source"), "copies": {"us-west": {"url": url}}},
        "retention": {"gc_grace": "0s"},
        "clusters": {"main": {"pgdata": str(tmp_path / "pgdata")}}})
    # the copy's cluster lock is a lease in the bucket (copy, expire and validate take it)
    copy = open_copy(config, "us-west")
    limited = ThrottledStorage(copy, TokenBucket(64 * 1024 * 1024))
    report = copy_cluster(primary, limited, "main", "us-west",
                          copy_policy(config, "main", "us-west", primary, copy))
    assert report.backups_copied == 2
    assert validate(primary, copy, "main", "us-west", sample=("share", 1.0)).ok
    primary.delete(layout.manifest_key("main", FULL))
    expired = expire_copy(config, "main", "us-west", primary, copy)
    assert [b.id for b in expired.plan.expire] == [FULL]
    region = open_copy(config, "us-west", "main")
    assert list_backup_ids(region, "main") == [INCR]
    checked = verify.run(region, "main")
    assert checked.ok, checked.problems


# what the exporter shows ----------------------------------------------------------------------

def test_the_exporter_shows_what_the_agent_measured_of_each_copy(primary: PosixStorage,
                                                                 tmp_path: Path) -> None:
    from collectors import sources
    from collectors.snapshot import Snapshot
    from engine.agent.copier import RegionCopier
    from engine.catalog.store import Catalog

    config = Config.model_validate({
        "repository": {"path": str(tmp_path / "source"),
                       "copies": {"dr": {"path": str(tmp_path / "dr"), "bandwidth_limit": "64MiB/s",
                                         "validate_sample": 2}}},
        "catalog": {"path": str(tmp_path / "catalog.sqlite3")},
        "clusters": {"main": {"pgdata": str(tmp_path / "pgdata")}}})
    with Catalog.open(config) as catalog:
        snapshot = Snapshot()
        sources.copies(snapshot, config, catalog, time.time())
        key = ("main", "dr")
        values = snapshot.values
        assert values["lifeboat_copy_validation_last_timestamp_seconds"][key] == 0.0  # never
        assert math.isnan(values["lifeboat_copy_validation_ok"][key])
        assert values["lifeboat_copy_bandwidth_limit_bytes_per_second"][key] == 64 * 1024 * 1024
        assert values["lifeboat_wal_shipping_max_delay_seconds"][key] == 30.0

        copier = RegionCopier(config, primary, "dr", lambda c: lambda *event: None, catalog)
        copier.ship()
        copier.round()  # copies, expires, validates (due: never validated)
        snapshot = Snapshot()
        sources.copies(snapshot, config, catalog, time.time())
        values = snapshot.values
        copied_bytes = sum(len(v) for k, v in content(PosixStorage(tmp_path / "dr")).items()
                           if not k.endswith("cluster.json"))
        assert values["lifeboat_copy_bytes_total"][key] >= copied_bytes
        assert 0 < values["lifeboat_copy_throughput_bytes_per_second"][key] <= 64 * 1024 * 1024 * 1.02
        assert values["lifeboat_wal_shipping_delay_seconds"][key] > 0  # it found WAL to ship
        assert values["lifeboat_copy_validation_ok"][key] == 1.0
        assert values["lifeboat_copy_validation_problems"][key] == 0.0
        assert not copier.validation_due("main")  # hourly
        stale = Snapshot()
        sources.copies(stale, config, catalog, time.time() + 3600)
        assert math.isnan(stale.values["lifeboat_wal_shipping_delay_seconds"][key])
