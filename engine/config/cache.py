"""Validated configuration for the WAL path, without paying for pydantic each time.

PostgreSQL runs ``archive_command`` once per 16 MB segment; importing pydantic and
validating costs ~35 ms of a ~50 ms budget. The configuration is still validated by
:mod:`engine.config.schema` in full, once per distinct file content: the plain result is
cached under the SHA-256 of the file's bytes (and of the validator's source), so any
edit of the file, or of Lifeboat, means a full validation again.
"""

from __future__ import annotations

import contextlib
import hashlib
import marshal
import os
from collections import namedtuple

from engine.config.file import read_config_bytes
from engine.errors import ConfigError

TYPE_CHECKING = False  # typing is not imported on the WAL path
if TYPE_CHECKING:
    from typing import Any

_HERE = os.path.dirname(os.path.abspath(__file__))
#: The sources whose change invalidates the cache: what validates, and what it validates with.
_VALIDATORS = tuple(os.path.join(_HERE, name) for name in ("schema.py", "sections.py", "units.py"))


def cache_dir() -> str:
    explicit = os.environ.get("LIFEBOAT_CACHE_DIR")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "lifeboat")


def _cache_file(raw: bytes) -> str:
    digest = hashlib.sha256(raw)
    for source in _VALIDATORS:
        stamp = os.stat(source)
        digest.update(f"{stamp.st_mtime_ns}:{stamp.st_size}".encode())
    return os.path.join(cache_dir(), f"config-{digest.hexdigest()[:40]}.marshal")


def validated_plain(path: str) -> dict[str, Any]:
    """The validated configuration at ``path`` as plain data (dicts, strings, numbers)."""
    raw = read_config_bytes(path)
    cache = _cache_file(raw)
    with contextlib.suppress(OSError, EOFError, ValueError, TypeError):
        with open(cache, "rb") as handle:
            data = marshal.load(handle)
        if isinstance(data, dict):
            return data
    from engine.config.schema import parse_config, plain

    data = plain(parse_config(raw, path))
    with contextlib.suppress(OSError):
        os.makedirs(os.path.dirname(cache), mode=0o700, exist_ok=True)
        tmp = f"{cache}.{os.getpid()}.tmp"
        with open(tmp, "wb") as handle:
            marshal.dump(data, handle)
        os.replace(tmp, cache)
    return data


class ArchiveSettings(namedtuple(
        "ArchiveSettings",
        "cluster repository algorithm level os_user archive_mode spool stream_dir credentials")):
    """What wal-push and wal-get need from the configuration."""

    __slots__ = ()

    cluster: str
    repository: str
    algorithm: str
    level: int
    os_user: str
    archive_mode: str  # sync or async
    spool: str  # the cluster's acknowledgements of segments the agent pushed ahead
    stream_dir: str | None  # pg_receivewal's directory when streaming is enabled
    credentials: dict[str, str] | None  # [repository.s3], for open_storage


def archive_settings(path: str, cluster: str | None) -> ArchiveSettings:
    data = validated_plain(path)
    clusters = data.get("clusters", {})
    if cluster is None:
        if len(clusters) != 1:
            raise ConfigError(f"--cluster is required (clusters in {path}: "
                              f"{', '.join(sorted(clusters)) or 'none'})")
        cluster = next(iter(clusters))
    elif cluster not in clusters:
        raise ConfigError(f"unknown cluster '{cluster}': {path} defines "
                          f"[clusters.*]: {', '.join(sorted(clusters)) or 'none'}")
    compression = data["compression"]
    paths = data["wal_paths"][cluster]
    return ArchiveSettings(cluster, data["repository_url"],
                           compression["algorithm"], compression["level"], data["os_user"],
                           clusters[cluster]["archive"]["mode"], paths["spool"], paths["stream_dir"],
                           data.get("repository_credentials"))
