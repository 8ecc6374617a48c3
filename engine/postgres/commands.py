"""The archive_command and restore_command lines Lifeboat asks PostgreSQL to run."""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path


def lifeboat_executable() -> str:
    """The ``lifeboat`` command of this installation (what archive_command should run)."""
    beside = Path(sys.executable).parent / "lifeboat"
    if beside.exists():
        return str(beside)
    return shutil.which("lifeboat") or "lifeboat"


def archive_command(config_path: Path, cluster: str) -> str:
    """The archive_command Lifeboat expects for ``cluster``."""
    return (f"{shlex.quote(lifeboat_executable())} --config {shlex.quote(str(config_path))} "
            f"--cluster {shlex.quote(cluster)} wal-push %p")


def restore_command(config_path: Path, cluster: str, region: str | None = None) -> str:
    """The restore_command of a restore of ``cluster``: from the copy in ``region`` when given
    (the same region the backup is restored from)."""
    where = f"--region {shlex.quote(region)} " if region else ""
    return (f"{shlex.quote(lifeboat_executable())} --config {shlex.quote(str(config_path))} "
            f"--cluster {shlex.quote(cluster)} wal-get {where}%f \"%p\"")
