"""Delta restore: an old or half-written data directory brought to a backup's exact state."""

from __future__ import annotations

import json
import signal
import subprocess
import time

from tests.integration.pg import LIFEBOAT, Cluster, Lifeboat, Workspace, free_port
from tests.trees import tree


def newest_backup(lifeboat: Lifeboat) -> str:
    return json.loads(lifeboat.run("info", "--output", "json").stdout)["clusters"][0][
        "backups"][-1]["id"]


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
    done = lifeboat.run("restore", "--pgdata", str(old), "--delta", *common)
    assert "delta:" in done.stdout and "extra files removed" in done.stdout
    assert tree(old) == tree(clean)
    rewritten = done.stdout.split("delta: ")[1].split(" rewritten")[0]
    assert "GiB" not in rewritten  # far less than the whole database was written
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
