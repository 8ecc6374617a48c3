"""Locating and reading the configuration file (no validation, no heavy imports)."""

from __future__ import annotations

import os

from engine.errors import ConfigError

DEFAULT_CONFIG_PATH = "/etc/lifeboat/lifeboat.toml"
CONFIG_ENV = "LIFEBOAT_CONFIG"


def config_path(explicit: str | os.PathLike[str] | None = None) -> str:
    """The file to read: ``--config``, else ``$LIFEBOAT_CONFIG``, else the default path."""
    if explicit:
        return os.fspath(explicit)
    return os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH


def read_config_bytes(path: str | os.PathLike[str]) -> bytes:
    """The raw bytes of the configuration file, with a clear error when unreadable."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        raise ConfigError(
            f"{os.fspath(path)}: configuration file not found (use --config or ${CONFIG_ENV})"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{os.fspath(path)}: cannot read configuration: {exc.strerror}") from None
