"""Cluster locks: exclusive, released, taken over from a holder that died (SIGKILL)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from engine.errors import LockBusyError
from engine.repository.locks import cluster_lock, lock_space
from engine.repository.storage import open_storage


def test_lock_is_exclusive_and_released(tmp_path: Path) -> None:
    space = lock_space(open_storage(str(tmp_path / "repo")))
    first = space.acquire("clusters/main/lock", "backup (pid 1)")
    assert first.previous is None
    with pytest.raises(LockBusyError, match=r"backup \(pid 1\)"):
        space.acquire("clusters/main/lock", "expire (pid 2)")
    first.release()
    second = space.acquire("clusters/main/lock", "expire (pid 2)")
    assert second.previous is None  # a clean release leaves nothing behind
    second.release()


def test_lock_of_a_killed_holder_is_taken_over(tmp_path: Path) -> None:
    repo = str(tmp_path / "repo")
    code = ("import time; from engine.repository.locks import lock_space; "
            "from engine.repository.storage import open_storage; "
            f"lock_space(open_storage({repo!r})).acquire('clusters/main/lock', 'backup (pid X)'); "
            "print('locked', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    storage = open_storage(repo)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(LockBusyError, match="cluster 'main' is busy: .*backup \\(pid X\\)"), \
                cluster_lock(storage, "main", "backup (pid Y)"):
            pass
    finally:
        holder.kill()
        holder.wait()
    notices: list[str] = []
    with cluster_lock(storage, "main", "backup (pid Y)", notices):
        pass
    assert notices == ["took over the lock of cluster 'main' left by backup (pid X), which is "
                       "no longer running"]


def test_open_storage_knows_paths_and_file_urls_and_refuses_the_rest(tmp_path: Path) -> None:
    assert open_storage(str(tmp_path)).describe() == str(tmp_path)
    assert open_storage(f"file://{tmp_path}").describe() == str(tmp_path)
    with pytest.raises(Exception, match="unknown storage 'ftp://'"):
        open_storage("ftp://host/x")
    with pytest.raises(Exception, match="must be an absolute path"):
        open_storage("relative/repo")
