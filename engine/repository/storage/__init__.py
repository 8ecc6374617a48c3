"""Repository storage: one small protocol (:mod:`engine.repository.storage.base`), one driver per
kind of store.

Keys are '/'-separated relative names built only by :mod:`engine.repository.layout`; a driver
maps them onto its store and never interprets them. This package imports nothing
heavy: the WAL path loads only the driver it uses.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing is not imported on the WAL path
if TYPE_CHECKING:
    from engine.repository.storage.base import ObjectWriter, Storage

__all__ = ["ObjectWriter", "Storage", "open_posix"]


def open_posix(path: str | os.PathLike[str]) -> Storage:
    """The posix driver rooted at ``path``."""
    from engine.repository.storage.posix import PosixStorage

    return PosixStorage(path)


def __getattr__(name: str) -> object:
    if name in ("ObjectWriter", "Storage"):
        from engine.repository.storage import base

        return getattr(base, name)
    raise AttributeError(name)
