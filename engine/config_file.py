"""Locating and reading the configuration file (no validation, no heavy imports)."""

from __future__ import annotations

import os
from pathlib import Path

from engine.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/lifeboat/lifeboat.toml")
CONFIG_ENV = "LIFEBOAT_CONFIG"


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The file to read: ``--config``, else ``$LIFEBOAT_CONFIG``, else the default path."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(CONFIG_ENV)
    return Path(env) if env else DEFAULT_CONFIG_PATH


def read_config_bytes(path: Path) -> bytes:
    """The raw bytes of the configuration file, with a clear error when unreadable."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: configuration file not found (use --config or ${CONFIG_ENV})"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read configuration: {exc.strerror}") from None
