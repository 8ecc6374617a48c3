"""Files and directories in the work directory: owned by postgres, and their sizes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from bench.environment import Bench, OsUser


def chown_tree(path: Path, user: OsUser) -> None:
    """Give ``path`` and everything under it to ``user``."""
    os.chown(path, user.uid, user.gid)
    for directory, dirs, files in os.walk(path):
        for name in dirs + files:
            os.lchown(os.path.join(directory, name), user.uid, user.gid)


def make_dir(bench: Bench, path: Path, mode: int = 0o700) -> Path:
    """An empty directory owned by postgres (parents too, below the work directory)."""
    for parent in reversed(path.relative_to(bench.paths.root).parents):
        directory = bench.paths.root / parent
        if not directory.exists():
            directory.mkdir(mode=0o750)
            os.chown(directory, bench.user.uid, bench.user.gid)
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(mode=mode)
    os.chown(path, bench.user.uid, bench.user.gid)
    return path


def write_file(bench: Bench, path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` and give the file to postgres."""
    path.write_text(text)
    os.chown(path, bench.user.uid, bench.user.gid)
    return path


def tree_bytes(path: Path) -> int:
    """Apparent size of every regular file under ``path`` (or of ``path`` itself)."""
    if path.is_file():
        return path.stat().st_size
    return sum(os.lstat(os.path.join(d, n)).st_size
               for d, _dirs, files in os.walk(path) for n in files)


def file_sizes(path: Path) -> dict[str, int]:
    """Apparent size of each file under ``path``, by path (empty if it is no directory)."""
    if not path.is_dir():
        return {}
    return {os.path.join(d, n): os.lstat(os.path.join(d, n)).st_size
            for d, _dirs, files in os.walk(path) for n in files}


#: Lifeboat's record of what its last restore wrote (inodes and ctimes): differs by design.
RESTORE_RECORD = ".lifeboat-restored"


def _relative_files(root: Path) -> dict[str, Path]:
    return {os.path.relpath(os.path.join(d, n), root): Path(d, n)
            for d, _dirs, files in os.walk(root) for n in files if n != RESTORE_RECORD}


def _same_content(a: Path, b: Path, chunk: int = 1 << 20) -> bool:
    if os.path.islink(a) or os.path.islink(b):
        return os.path.islink(a) and os.path.islink(b) and os.readlink(a) == os.readlink(b)
    if a.stat().st_size != b.stat().st_size:
        return False
    with open(a, "rb") as left, open(b, "rb") as right:
        while True:
            block = left.read(chunk)
            if block != right.read(chunk):
                return False
            if not block:
                return True


def tree_differences(left: Path, right: Path) -> list[str]:
    """The files that are only in one of two trees or differ in content (sorted)."""
    a, b = _relative_files(left), _relative_files(right)
    diffs = [f"only in {left.name}: {p}" for p in sorted(a.keys() - b.keys())]
    diffs += [f"only in {right.name}: {p}" for p in sorted(b.keys() - a.keys())]
    diffs += [f"differs: {p}" for p in sorted(a.keys() & b.keys()) if not _same_content(a[p], b[p])]
    return diffs
