"""Validated configuration for the WAL path, without paying for pydantic each time.

PostgreSQL runs ``archive_command`` once per 16 MB segment; importing pydantic and
validating costs ~35 ms of a ~50 ms budget. The configuration is still validated by
:mod:`engine.config.schema` in full, once per distinct file content: the plain result is
cached under the SHA-256 of the file's bytes (and of the validator's source), so any
edit of the file, or of Lifeboat, means a full validation again (:mod:`engine.memo`).
"""

from __future__ import annotations

import os
from collections import namedtuple

from engine.config.file import read_config_bytes
from engine.errors import ConfigError
from engine.memo import derived

TYPE_CHECKING = False  # typing is not imported on the WAL path
if TYPE_CHECKING:
    from typing import Any

_HERE = os.path.dirname(os.path.abspath(__file__))
#: The sources whose change invalidates the cache: what validates, and what it validates with.
_VALIDATORS = tuple(os.path.join(_HERE, name) for name in (
    "schema.py", "sections.py", "units.py", "tiers.py", "encryption.py", "regions.py", "retention.py",
    os.path.join("..", "repository", "storage", "classes.py")))


def validated_plain(path: str) -> dict[str, Any]:
    """The validated configuration at ``path`` as plain data (dicts, strings, numbers)."""
    raw = read_config_bytes(path)

    def validate() -> dict[str, Any]:
        from engine.config.schema import parse_config, plain

        return plain(parse_config(raw, path))

    return derived("config", raw, _VALIDATORS, validate)


class ArchiveSettings(namedtuple(
        "ArchiveSettings",
        "cluster repository algorithm level os_user archive_mode spool stream_dir tiers encryption "
        "copies credentials", defaults=((), None, {}, None))):
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
    tiers: tuple[str, ...]  # storages of the tiers, hottest first: wal-get looks there after the repository
    encryption: dict | None  # [repository.encryption]: where the keys are (never a key)
    copies: dict[str, str]  # region -> the URL of the repository's copy there (wal-get --region)
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
                           tuple(data.get("tier_urls", ())), data["repository"].get("encryption"),
                           data.get("copy_urls", {}), data.get("repository_credentials"))
