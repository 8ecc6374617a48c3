"""Incremental and differential backups on a real cluster; locks; a killed backup."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from tests.integration.pg import LIFEBOAT, Lifeboat


def backups(lifeboat: Lifeboat) -> list[dict]:
    return json.loads(lifeboat.run("info", "--output", "json").stdout)["clusters"][0]["backups"]


def test_incremental_and_differential_restore_on_their_own(lifeboat: Lifeboat) -> None:
    source = lifeboat.cluster
    assert source.pgbench("-i", "-s", "5", "-q").returncode == 0
    lifeboat.run("backup")
    idle = lifeboat.run("backup", "--type", "incr")
    assert source.pgbench("-c", "2", "-t", "500").returncode == 0
    lifeboat.run("backup", "--type", "incr")
    source.sql("CREATE TABLE added AS SELECT g FROM generate_series(1, 50000) g")
    lifeboat.run("backup", "--type", "diff")
    full, nothing, incr, diff = backups(lifeboat)
    assert [b["type"] for b in (full, nothing, incr, diff)] == ["full", "incr", "incr", "diff"]
    assert "on " + full["id"] in idle.stdout
    assert nothing["stored_bytes"] < full["stored_bytes"] / 50  # nothing changed: almost nothing
    assert incr["stored_bytes"] < full["stored_bytes"]
    assert diff["size_bytes"] > full["size_bytes"]
    report = json.loads(lifeboat.run("info", "--output", "json").stdout)
    assert report["clusters"][0]["backups"][3]["status"] == "ok"
    lifeboat.switch_and_archive()
    expected = source.table_checksums()
    # Each backup restores on its own: from the diff, and from the immediate point of the incr.
    restored, _ = lifeboat.restore("--backup", diff["id"])
    assert restored.table_checksums() == expected
    restored.stop("immediate")
    at_incr, _ = lifeboat.restore("--backup", incr["id"], "--target", "immediate")
    assert at_incr.value("SELECT count(*) FROM pgbench_history") == 1000
    assert at_incr.value("SELECT to_regclass('added')") is None


def test_incremental_without_a_base_is_a_full_backup(lifeboat: Lifeboat) -> None:
    done = lifeboat.run("backup", "--type", "incr")
    assert "notice: no earlier backup to build a incr backup on" in done.stderr
    assert [b["type"] for b in backups(lifeboat)] == ["full"]


def test_a_second_backup_is_refused_naming_the_holder(lifeboat: Lifeboat) -> None:
    holder = subprocess.Popen(
        ["runuser", "-u", "postgres", "--", sys.executable, "-c",
         "import sys, time; from engine.repository.storage.posix import PosixStorage; "
         "from engine.repository.locks import cluster_lock; "
         f"lock = cluster_lock(PosixStorage({str(lifeboat.repo)!r}), 'main', 'backup --type full'); "
         "import os; lock.__enter__(); print(os.getpid(), flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None
    pid = holder.stdout.readline().strip()
    try:
        done = lifeboat.run("backup", check=False)
        assert done.returncode == 1
        assert f"cluster 'main' is busy: its lock is held by backup --type full (pid {pid} on host" \
            in done.stderr
    finally:
        os.kill(int(pid), signal.SIGKILL)  # the holder dies without releasing its lock
        holder.wait()
    done = lifeboat.run("backup")
    assert "took over the lock of cluster 'main'" in done.stderr


def test_killed_backup_leaves_no_backup_and_the_next_succeeds(lifeboat: Lifeboat) -> None:
    lifeboat.write_config(lifeboat.cluster, extra='\n[retention]\ngc_grace = "0s"\n')
    source = lifeboat.cluster
    assert source.pgbench("-i", "-s", "30", "-q").returncode == 0
    packs = lifeboat.repo / "clusters" / "main" / "packs"
    killed = subprocess.Popen([str(LIFEBOAT), "--config", str(lifeboat.config), "backup",
                               "--jobs", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not (packs.exists() and any(p.is_file() for p in packs.rglob("*"))):
        assert killed.poll() is None and time.monotonic() < deadline, "the backup ended too soon"
        time.sleep(0.01)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert backups(lifeboat) == []  # nothing that looks like a backup
    for _ in range(50):  # the server ends the killed session, and the backup with it
        if not source.value("SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
                            "AND application_name = 'lifeboat'"):
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the killed backup's session is still open")
    orphans = {p for p in packs.rglob("*") if p.is_file()}
    assert orphans  # what the killed backup wrote is still there ...
    done = lifeboat.run("backup")
    assert "complete" in done.stdout
    assert len(backups(lifeboat)) == 1
    lifeboat.run("expire")  # ... until garbage collection removes it
    left = {p for p in packs.rglob("*") if p.is_file()}
    assert not orphans & left
    assert lifeboat.run("verify", check=False).returncode == 0
