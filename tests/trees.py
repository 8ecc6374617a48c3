"""Comparing directory trees (a delta restore must equal a clean one)."""

from __future__ import annotations

from pathlib import Path

from engine.restore.written_state import RECORD


def tree(root: Path) -> dict[str, tuple[bytes | None, int]]:
    """Every path under ``root`` with its content (files) and permission bits."""
    found: dict[str, tuple[bytes | None, int]] = {}
    for path in sorted(root.rglob("*")):
        if path.name == RECORD:  # what a restore wrote, by inode and ctime: differs by design
            continue
        mode = path.lstat().st_mode & 0o7777
        found[str(path.relative_to(root))] = (path.read_bytes() if path.is_file() else None, mode)
    return found
