"""Delta restore: an old or half-written data directory brought to a backup's exact state."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

from engine.config.units import format_size, parse_size
from engine.repository.manifest import read_manifest
from engine.repository.storage.posix import PosixStorage
from tests.integration.pg import LIFEBOAT, Cluster, Lifeboat, Workspace, free_port
from tests.trees import tree

DELTA_LINE = re.compile(r"; delta: (?P<rewritten>.+) rewritten, (?P<unread>.+) compared without "
                        r"reading \(untouched since the last restore\), (?P<removed>\d+) extra "
                        r"files removed")


def newest_backup(lifeboat: Lifeboat) -> str:
    return json.loads(lifeboat.run("info", "--output", "json").stdout)["clusters"][0][
        "backups"][-1]["id"]


def differing_bytes(lifeboat: Lifeboat, backup_id: str, old: Path) -> tuple[int, int]:
    """(bytes a delta restore of ``backup_id`` into ``old`` must write, the backup's size):
    every block whose SHA-256 differs from the bytes at its place in ``old`` (a file cut or
    padded with zeros to the backup's size, as the restore does), whole files ``old`` lacks,
    and global/pg_control, which a delta restore removes first and writes last."""
    manifest = read_manifest(PosixStorage(lifeboat.repo), "main", backup_id)
    differing = 0
    for entry in manifest.entries():
        path = old / entry.path
        if entry.kind != "file" or entry.size == 0:
            continue
        if entry.path == "global/pg_control" or path.is_symlink() or not path.is_file():
            differing += entry.size
            continue
        data = path.read_bytes()[:entry.size].ljust(entry.size, b"\0")
        offset = 0
        blocks = manifest.block_list(entry)
        for _, ref in blocks.refs(0, blocks.count):
            if hashlib.sha256(data[offset:offset + ref.raw]).digest()[:len(ref.digest)] != ref.digest:
                differing += ref.raw
            offset += ref.raw
    return differing, manifest.summary.size_bytes


def test_delta_restore_of_an_old_copy_equals_a_clean_restore(lifeboat: Lifeboat,
                                                              workspace: Workspace) -> None:
    source = lifeboat.cluster
    assert source.pgbench("-i", "-s", "5", "-q").returncode == 0
    lifeboat.run("backup")
    port = free_port()
    old = workspace.path("old-copy", create=False)
    lifeboat.run("restore", "--pgdata", str(old), "--port", str(port), "--archive-mode", "off")
    copy = Cluster(old, port, old.parent / "old-copy.log")
    copy.start()  # the copy lives on: promoted, written to, stopped
    copy.wait_promoted()
    copy.sql("CREATE TABLE only_in_the_copy AS SELECT g FROM generate_series(1, 10000) g")
    copy.pgbench("-c", "2", "-t", "200")
    copy.stop()

    assert source.pgbench("-c", "2", "-t", "300").returncode == 0
    lifeboat.run("backup", "--type", "incr")
    backup_id = newest_backup(lifeboat)
    clean = workspace.path("clean", create=False)
    common = ["--backup", backup_id, "--port", str(port), "--archive-mode", "off"]
    lifeboat.run("restore", "--pgdata", str(clean), *common)
    differing, size = differing_bytes(lifeboat, backup_id, old)
    assert 0 < differing < size / 2  # the copy still shares most of its blocks with the backup
    done = lifeboat.run("restore", "--pgdata", str(old), "--delta", *common)
    assert tree(old) == tree(clean)
    rewritten = DELTA_LINE.search(done.stdout)
    assert rewritten is not None, done.stdout
    assert rewritten["rewritten"] == format_size(differing)  # exactly the blocks that differed
    assert int(rewritten["removed"]) > 0  # only_in_the_copy's files, at least
    copy.start()
    copy.wait_promoted()
    assert copy.value("SELECT to_regclass('only_in_the_copy')") is None
    assert copy.value("SELECT count(*) FROM pgbench_history") == 600


def test_killed_restore_is_completed_by_delta(lifeboat: Lifeboat, workspace: Workspace) -> None:
    source = lifeboat.cluster
    assert source.pgbench("-i", "-s", "30", "-q").returncode == 0
    lifeboat.run("backup")
    expected = source.table_checksums()
    lifeboat.switch_and_archive()
    target = workspace.path("half", create=False)
    killed = subprocess.Popen([str(LIFEBOAT), "--config", str(lifeboat.config), "restore",
                               "--pgdata", str(target), "--jobs", "1"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not (target / "base").exists() or sum(1 for _ in target.rglob("*")) < 200:
        assert killed.poll() is None and time.monotonic() < deadline, "the restore ended too soon"
        time.sleep(0.01)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert not (target / "global" / "pg_control").exists()  # cannot be started half-written
    again = lifeboat.run("restore", "--pgdata", str(target), check=False)
    assert again.returncode == 1 and "--delta" in again.stderr
    port = free_port()
    lifeboat.run("restore", "--pgdata", str(target), "--delta", "--start", "--port", str(port),
                 "--archive-mode", "off")
    restored = Cluster(target, port, target.parent / f"{target.name}.log", started=True)
    lifeboat.restored.append(restored)
    assert restored.table_checksums() == expected


def test_files_untouched_since_the_last_restore_are_not_read_but_a_changed_one_is(
        lifeboat: Lifeboat, workspace: Workspace) -> None:
    """A delta restore trusts a file whose size, times and inode are as the last restore left
    them: it compares the block ids of the list it was written from with the backup's instead
    of reading it (also when it grew or shrank by whole blocks). A file rewritten in place
    with its size and mtime put back has a new ctime, and is read, hashed and repaired."""
    source = lifeboat.cluster
    assert source.pgbench("-i", "-s", "5", "-q").returncode == 0
    lifeboat.run("backup")
    full_id = newest_backup(lifeboat)
    copy = workspace.path("copy", create=False)
    lifeboat.run("restore", "--pgdata", str(copy), "--backup", full_id)
    accounts, tellers = (source.value(f"SELECT pg_relation_filepath('{t}')")
                         for t in ("pgbench_accounts", "pgbench_tellers"))
    assert source.pgbench("-c", "2", "-t", "300").returncode == 0
    lifeboat.run("backup", "--type", "incr")
    incr_id = newest_backup(lifeboat)
    clean = workspace.path("clean", create=False)
    lifeboat.run("restore", "--pgdata", str(clean), "--backup", incr_id)
    # the updates grew pgbench_accounts: its new blocks are added to a file that is not read
    assert (clean / accounts).stat().st_size > (copy / accounts).stat().st_size

    tampered = copy / tellers
    before = tampered.stat()
    with open(tampered, "r+b") as handle:  # in place, same size, old mtime put back
        handle.write(b"\xa5" * 4096)
    os.utime(tampered, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert tree(copy) != tree(clean)

    done = lifeboat.run("restore", "--pgdata", str(copy), "--backup", incr_id, "--delta")
    assert tree(copy) == tree(clean)  # pgbench_accounts, and the tampered file too
    line = DELTA_LINE.search(done.stdout)
    assert line is not None, done.stdout
    total = read_manifest(PosixStorage(lifeboat.repo), "main", incr_id).summary.size_bytes
    unread = parse_size(line["unread"])
    # nearly everything was compared without reading: all but the tampered file is as the
    # first restore left it (changed files under 8 MiB and pg_control are read all the same)
    assert 0.8 * total < unread <= total - before.st_size, (unread, total)

    # unchanged since that delta restore: nothing to rewrite and nothing read ...
    again = DELTA_LINE.search(lifeboat.run("restore", "--pgdata", str(copy), "--backup", incr_id,
                                           "--delta").stdout)
    assert again is not None and parse_size(again["rewritten"]) <= 8192  # pg_control at most
    assert parse_size(again["unread"]) >= total - 8192 - 64 * 1024  # shown to 0.1 MiB
    # ... unless asked to read everything
    hashed = DELTA_LINE.search(lifeboat.run("restore", "--pgdata", str(copy), "--backup", incr_id,
                                            "--delta", "--checksum").stdout)
    assert hashed is not None and hashed["unread"] == "0 B", hashed
    assert tree(copy) == tree(clean)
