"""Tiers on a real cluster: two backups aged out of hot, one into a warm directory and one
on into a cold bucket in GLACIER (a moto server on loopback), the repository's own copies
collected; each restored from its tier (the cold one after its restore requests), checked by
content; info and the metrics showing where each backup is."""

from __future__ import annotations

import json
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.agent import configure
from tests.integration.pg import Lifeboat


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def bucket(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    """A moto S3 server on loopback with one bucket; its credentials in the environment the
    CLI (and the servers it starts, whose restore_command reads the cold tier) inherit."""
    import boto3
    from moto.server import ThreadedMotoServer

    for name, value in {"AWS_ACCESS_KEY_ID": "lifeboat-test", "AWS_SECRET_ACCESS_KEY": "secret",
                        "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(name, value)
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="cold")
    try:
        yield endpoint, "cold"
    finally:
        server.stop()


def _tiers(env: Lifeboat, warm: Path, warm_age: float, endpoint: str, hot_age: float = 1) -> None:
    cold = (f"s3://cold/lifeboat?endpoint={endpoint}&region=us-east-1&addressing=path"
            "&storage_class=GLACIER")
    configure(env, cluster_extra='[retention]\ngc_grace = "0s"\n', top_extra=(
        f'\n[repository.tiers.hot]\nage = {hot_age}\n'
        f'\n[repository.tiers.warm]\nage = {warm_age}\nstorage = "{warm}"\n'
        f'\n[repository.tiers.cold]\nage = "2000d"\nstorage = "{cold}"\nrestore_poll = "0.2s"\n'))


def _tier(env: Lifeboat) -> dict[str, Any]:
    done = env.run("tier", "--output", "json", check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return dict(json.loads(done.stdout)[0])


def _info(env: Lifeboat) -> dict[str, dict[str, Any]]:
    cluster = json.loads(env.run("info", "--output", "json").stdout)["clusters"][0]
    return {b["id"]: b for b in cluster["backups"]}


def test_backups_age_into_warm_and_cold_and_restore_from_there(lifeboat: Lifeboat,
                                                              bucket: tuple[str, str]) -> None:
    endpoint, _name = bucket
    source = lifeboat.cluster
    warm = lifeboat.workspace.path("warm")
    source.sql("CREATE TABLE notes (id int primary key, note text)")
    source.sql("INSERT INTO notes VALUES (1, 'before the first backup')")
    first = lifeboat.run("backup").stdout.split()[1]
    time.sleep(1.1)
    _tiers(lifeboat, warm, 1000 * 86400, endpoint)  # past hot's age (1s): into warm
    moved = _tier(lifeboat)
    assert [(m["backup"], m["from"], m["to"]) for m in moved["moved"]] == [(first, "hot", "warm")]
    assert moved["ok"] is True and _info(lifeboat)[first]["tier"] == "warm"
    _tiers(lifeboat, warm, 1, endpoint, hot_age=0.5)  # past warm's age too: on to cold
    moved = _tier(lifeboat)
    assert [(m["backup"], m["from"], m["to"]) for m in moved["moved"]] == [(first, "warm", "cold")]

    source.sql("INSERT INTO notes VALUES (2, 'before the second')")
    second = lifeboat.run("backup", "--type", "incr").stdout.split()[1]
    source.sql("INSERT INTO notes VALUES (3, 'after both')")
    lifeboat.switch_and_archive()
    time.sleep(1.1)
    _tiers(lifeboat, warm, 1000 * 86400, endpoint)  # the second into warm; cold never goes back
    moved = _tier(lifeboat)
    assert [(m["backup"], m["to"]) for m in moved["moved"]] == [(second, "warm")]
    assert moved["wal_topped_up"] >= 1  # what was archived after the first moved, up to the second
    info = _info(lifeboat)
    assert (info[first]["tier"], info[first]["copies"], info[first]["replication"]) == ("cold", 1, 1)
    assert (info[second]["tier"], info[second]["below_replication"]) == ("warm", False)
    text = lifeboat.run("info").stdout
    assert f"backup {first}" in text and "tier cold, 1/1 copies" in text

    lifeboat.run("expire")  # hot has no backups left: its packs are collected (gc_grace 0)
    repo_wal = lifeboat.repo / "clusters" / "main" / "wal"
    for directory in repo_wal.iterdir():  # and, as hot's expiry would, the WAL the tiers now hold
        if directory.name != "history":
            shutil.rmtree(directory)
    assert not [p for p in (lifeboat.repo / "clusters" / "main" / "packs").rglob("*") if p.is_file()]

    plan = json.loads(lifeboat.run("restore", "--pgdata", "/tmp/unused", "--backup", first,
                                   "--target", "immediate", "--plan", "--output", "json",
                                   check=False).stdout)
    assert plan["tier"] == "cold" and plan["archive_objects"] > 0
    assert plan["archive_wait_seconds"] == 5 * 3600 and plan["expected_seconds"] > 5 * 3600
    assert any("expected wait up to 5h (Standard retrieval)" in w for w in plan["warnings"])

    for backup, rows in ((second, [1, 2]), (first, [1])):
        restored, done = lifeboat.restore("--backup", backup, "--target", "immediate")
        assert done.returncode == 0, done.stderr
        assert [r[0] for r in restored.sql("SELECT id FROM notes ORDER BY id")] == rows
        restored.stop("immediate")

    from collectors.snapshot import Snapshot
    from collectors.sources import repository
    from engine.context import open_context

    snapshot = Snapshot()
    with open_context(lifeboat.config, "main") as ctx:
        repository(snapshot, ctx.config, ctx.storage, "main")
    size = snapshot.values["lifeboat_repository_bytes"]
    assert size[("main", "warm", "local")] > 0 and size[("main", "cold", "local")] > 0
    backups = snapshot.values["lifeboat_tier_backups"]
    assert (backups[("main", "hot")], backups[("main", "warm")], backups[("main", "cold")]) == (0, 1, 1)
    assert snapshot.values["lifeboat_backups_below_replication"][("main", "cold")] == 0

