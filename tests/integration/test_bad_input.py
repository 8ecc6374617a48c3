"""Bad input and damage: each gets a clear message naming what is wrong, and loses nothing."""

from __future__ import annotations

import json
import re
from pathlib import Path

from engine.repository import layout
from engine.repository.manifest import read_manifest
from engine.repository.storage.posix import PosixStorage
from tests.integration.pg import LIFEBOAT, Lifeboat, Workspace, as_postgres
from tests.manifests import blocks_of


def fill_wal(lifeboat: Lifeboat, segments: int) -> None:
    """Write into ``segments`` new WAL segments, each closed and archived."""
    lifeboat.cluster.sql("CREATE TABLE IF NOT EXISTS filler (n int, pad text)")
    for _ in range(segments):
        lifeboat.cluster.sql("INSERT INTO filler SELECT g, repeat('w', 200) "
                             "FROM generate_series(1, 2000) g")
        lifeboat.switch_and_archive()


def test_unreachable_server(lifeboat: Lifeboat) -> None:
    lifeboat.cluster.stop()
    for command in (["init"], ["check"], ["backup"], ["restore-point", "x"]):
        done = lifeboat.run(*command, check=False)
        assert done.returncode == 1, command
        assert f"cannot connect to cluster 'main' at 127.0.0.1:{lifeboat.cluster.port}" in done.stderr
        assert "Traceback" not in done.stderr


def test_init_refuses_a_cluster_that_does_not_archive_to_lifeboat(workspace: Workspace) -> None:
    env = Lifeboat.create(workspace, {"archive_command": "'/bin/true'"}, archive=False)
    try:
        env.cluster.start()
        done = env.run("init", check=False)
        assert done.returncode == 1
        assert "archive_command is '/bin/true'" in done.stderr
        assert env.archive_command() in done.stderr  # says what to write instead
        env.cluster.sql("ALTER SYSTEM SET archive_mode = off")
        env.cluster.stop()
        env.cluster.start()
        done = env.run("init", check=False)
        assert done.returncode == 1 and "archive_mode is 'off'" in done.stderr
        assert not (env.repo / "clusters" / "main" / "cluster.json").exists()
    finally:
        env.cleanup()


def test_init_refuses_an_archive_command_for_another_repository(workspace: Workspace) -> None:
    env = Lifeboat.create(workspace, archive=False)
    other = workspace.root / "other.toml"
    env.cluster.configure({"archive_command": f"'{LIFEBOAT} --config {other} --cluster main "
                                              "wal-push %p'"})
    try:
        env.cluster.start()
        done = env.run("init", check=False)
        assert done.returncode == 1
        assert f"reads the configuration {other}" in done.stderr
    finally:
        env.cleanup()


def test_check_explains_a_failing_archive_command(lifeboat: Lifeboat) -> None:
    broken = f"false && {lifeboat.archive_command()}"  # looks right, fails when it runs
    lifeboat.cluster.sql(f"ALTER SYSTEM SET archive_command = '{broken}'")
    lifeboat.cluster.sql("SELECT pg_reload_conf()")
    done = lifeboat.run("check", check=False)
    assert done.returncode == 1
    assert "did not reach the archive" in done.stderr
    assert "archive_command failed" in done.stderr
    # A backup cannot complete either, and leaves nothing that looks like a backup.
    done = lifeboat.run("backup", check=False)
    assert done.returncode == 1 and "was not recorded" in done.stderr
    report = json.loads(lifeboat.run("info", "--output", "json").stdout)
    assert report["clusters"][0]["backups"] == []
    assert not [p for p in (lifeboat.repo / "clusters" / "main").rglob("*") if p.is_file()
                and "packs" in p.parts]


def test_missing_segment_in_the_middle_stops_recovery(lifeboat: Lifeboat) -> None:
    lifeboat.run("backup")
    fill_wal(lifeboat, 4)
    storage = PosixStorage(lifeboat.repo)
    ranges = json.loads(lifeboat.run("info", "--output", "json").stdout)["clusters"][0]["archive"]
    last = ranges[0]["last"]
    victim = f"{last[:16]}{int(last[16:], 16) - 2:08X}"
    storage.delete(layout.wal_key("main", victim))
    restored, done = lifeboat.restore(check=False)
    assert done.returncode == 1
    assert f"WAL segment {victim} is missing from the archive" in done.stderr
    assert "gap" in done.stderr
    assert not (restored.pgdata / "postmaster.pid").exists()  # not promoted half-way


def test_damaged_block_refuses_the_restore_naming_the_file(lifeboat: Lifeboat) -> None:
    lifeboat.cluster.sql("CREATE TABLE victim AS SELECT g, md5(g::text) FROM generate_series(1, 20000) g")
    path = lifeboat.cluster.value("SELECT pg_relation_filepath('victim')")
    lifeboat.run("backup")
    storage = PosixStorage(lifeboat.repo)
    backup_id = json.loads(lifeboat.run("info", "--output", "json").stdout)["clusters"][0][
        "backups"][0]["id"]
    manifest = read_manifest(storage, "main", backup_id)
    block = blocks_of(manifest, path)[0]
    pack = Path(storage.path_of(layout.pack_key("main", block.pack)))
    data = bytearray(pack.read_bytes())
    data[block.offset + block.stored // 2] ^= 0x20
    pack.write_bytes(bytes(data))
    restored, done = lifeboat.restore(check=False)
    assert done.returncode == 1
    assert re.search(rf"{path} blocks? [\d.]+ \(pack \w+\): checksum mismatch", done.stderr)
    assert "Traceback" not in done.stderr
    assert not (restored.pgdata / "global" / "pg_control").exists()


def test_double_push_with_different_content_fails(lifeboat: Lifeboat, workspace: Workspace) -> None:
    fill_wal(lifeboat, 2)
    last = json.loads(lifeboat.run("info", "--output", "json").stdout)["clusters"][0]["archive"][0][
        "last"]
    scratch = workspace.path("scratch")
    same = scratch / last
    assert as_postgres([str(LIFEBOAT), "--config", str(lifeboat.config), "wal-get", last,
                        str(same)]).returncode == 0
    assert lifeboat.run("wal-push", str(same), check=False).returncode == 0  # same: no-op
    changed = bytearray(same.read_bytes())
    changed[len(changed) // 2] ^= 0x01
    different = scratch / "other" / last
    different.parent.mkdir()
    different.write_bytes(bytes(changed))
    done = lifeboat.run("wal-push", str(different), check=False)
    assert done.returncode == 1
    assert f"{last} is already archived" in done.stderr and "different content" in done.stderr


def test_corrupt_segment_is_refused_by_wal_get(lifeboat: Lifeboat, workspace: Workspace) -> None:
    fill_wal(lifeboat, 1)
    last = json.loads(lifeboat.run("info", "--output", "json").stdout)["clusters"][0]["archive"][0][
        "last"]
    stored = Path(PosixStorage(lifeboat.repo).path_of(layout.wal_key("main", last)))
    data = bytearray(stored.read_bytes())
    data[-100] ^= 0xFF
    stored.write_bytes(bytes(data))
    done = lifeboat.run("wal-get", last, str(workspace.path("x") / last), check=False)
    assert done.returncode == 128
    assert f"{last}: checksum mismatch" in done.stderr


def test_restore_refuses_a_non_empty_directory(lifeboat: Lifeboat, workspace: Workspace) -> None:
    lifeboat.run("backup")
    target = workspace.path("occupied")
    (target / "precious.txt").write_text("keep me")
    done = lifeboat.run("restore", "--pgdata", str(target), check=False)
    assert done.returncode == 1 and "is not empty" in done.stderr and "--force" in done.stderr
    assert (target / "precious.txt").read_text() == "keep me"
    done = lifeboat.run("restore", "--pgdata", str(lifeboat.cluster.pgdata), "--force",
                        check=False)
    assert done.returncode == 1 and "running server" in done.stderr


def test_restore_to_a_time_before_every_backup(lifeboat: Lifeboat) -> None:
    lifeboat.run("backup")
    done = lifeboat.run("restore", "--pgdata", "/var/tmp/never", "--backup", "20200101-000000F",
                        check=False)
    assert done.returncode == 1 and "backup '20200101-000000F' of cluster 'main' does not exist" \
        in done.stderr
    done = lifeboat.run("verify", "--backup", "nope", check=False)
    assert done.returncode == 2 and "does not exist" in done.stderr
    done = lifeboat.run("restore", "--pgdata", "/var/tmp/never", "--target-time",
                        "2000-01-01 00:00:00+00", check=False)
    assert done.returncode == 1 and "no backup finished before" in done.stderr
    assert not Path("/var/tmp/never").exists()


def test_a_bad_port_in_config_is_named(workspace: Workspace) -> None:
    """A port that is not a port: exit 2, naming the key, the value and the file; a TOML
    syntax error names the file and the line."""
    env = Lifeboat.create(workspace)
    good = f"port = {env.cluster.port}\n"
    text = env.config.read_text()
    assert good in text
    for bad, problem in (('"5432x"', "unable to parse string as an integer (got '5432x')"),
                         ("70000", "less than or equal to 65535 (got 70000)")):
        env.config.write_text(text.replace(good, f"port = {bad}\n"))
        done = env.run("check", check=False)
        assert done.returncode == 2, done.stderr
        assert f"{env.config}: invalid configuration" in done.stderr
        assert "clusters.main.port: " in done.stderr and problem in done.stderr
        assert "Traceback" not in done.stderr
    line = text[:text.index(good)].count("\n") + 1
    env.config.write_text(text.replace(good, f"port = {env.cluster.port}x\n"))
    done = env.run("check", check=False)
    assert done.returncode == 2
    assert f"{env.config}: TOML syntax error" in done.stderr and f"line {line}," in done.stderr
