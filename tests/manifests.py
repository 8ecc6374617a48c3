"""Reading what a manifest says about one file (shared by unit and integration tests)."""

from __future__ import annotations

from engine.repository.blocklist import BlockRef
from engine.repository.manifest import FileEntry, Manifest


def entry_of(manifest: Manifest, path: str) -> FileEntry:
    return next(e for e in manifest.entries() if e.path == path)


def blocks_of(manifest: Manifest, path: str) -> list[BlockRef]:
    """Every block of the file ``path`` in the backup, in file order."""
    blocks = manifest.block_list(entry_of(manifest, path))
    return [ref for _, ref in blocks.refs(0, blocks.count)]
