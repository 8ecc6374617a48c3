"""Plain results derived from a file's bytes, kept on disk under the digest of those bytes.

PostgreSQL starts ``wal-push`` (and ``wal-get``) afresh for every WAL file. What such a
process derives from a file whose content rarely changes (the configuration, validated
with pydantic; the cluster's identity, parsed from JSON) is derived in full once per
distinct content and kept as ``marshal`` data, which Python reads without importing
anything. The key covers the bytes and the size and mtime of each source file of the
code that derives the result, so an edit of either derives it again. A cache that cannot
be read or written is passed over: it saves time and never changes a result.
"""

from __future__ import annotations

import hashlib
import marshal
import os

TYPE_CHECKING = False  # typing is not imported on the WAL path
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def cache_dir() -> str:
    """``$LIFEBOAT_CACHE_DIR``, else ``$XDG_CACHE_HOME/lifeboat``, else ``~/.cache/lifeboat``."""
    explicit = os.environ.get("LIFEBOAT_CACHE_DIR")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "lifeboat")


def cache_file(kind: str, raw: bytes, sources: tuple[str, ...]) -> str:
    """Where the result of ``kind`` derived from ``raw`` by the code in ``sources`` is kept."""
    digest = hashlib.sha256(raw)
    for source in sources:
        stamp = os.stat(source)
        digest.update(f"{stamp.st_mtime_ns}:{stamp.st_size}".encode())
    return os.path.join(cache_dir(), f"{kind}-{digest.hexdigest()[:40]}.marshal")


def derived(kind: str, raw: bytes, sources: tuple[str, ...],
            derive: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``derive()``, the result for ``raw``, from the cache when an earlier call kept it.
    ``derive`` raising (invalid content) keeps nothing, so the next call raises again."""
    path = cache_file(kind, raw, sources)
    try:
        with open(path, "rb") as handle:
            data = marshal.load(handle)
        if isinstance(data, dict):
            return data
    except (OSError, EOFError, ValueError, TypeError):
        pass
    data = derive()
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as handle:
            marshal.dump(data, handle)
        os.replace(tmp, path)
    except OSError:
        pass
    return data
