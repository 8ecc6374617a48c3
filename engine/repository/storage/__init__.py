"""Repository storage: one small protocol (:mod:`engine.repository.storage.base`), one driver
per kind of store, and :func:`open_storage`, the one place a driver is constructed.

Keys are '/'-separated relative names built only by :mod:`engine.repository.layout`; a
driver maps them onto its store and never interprets them. This package imports nothing
heavy: the WAL path loads only the driver it uses.
"""

from __future__ import annotations

import os

from engine.errors import UsageError

TYPE_CHECKING = False  # typing is not imported on the WAL path
if TYPE_CHECKING:
    from collections.abc import Mapping

    from engine.repository.storage.base import Capabilities, ObjectWriter, Storage

__all__ = ["Capabilities", "ObjectWriter", "Storage", "open_storage"]

#: URL schemes a repository can be named with, and the driver module of each.
SCHEMES = {"file": "posix", "s3": "s3"}


def open_storage(url: str | os.PathLike[str], credentials: Mapping[str, str] | None = None) -> Storage:
    """The storage a repository URL names: an absolute path or ``file:///path`` (posix), or
    ``s3://BUCKET/PREFIX?endpoint=URL&region=R&addressing=path`` (S3; the options are described
    in :mod:`engine.repository.storage.s3`). S3 credentials come from ``credentials`` (the
    plain form of ``[repository.s3]``: ``access_key_id`` with ``secret_access_key_file`` or
    ``_env``, or ``profile``) when given, else from the AWS chain; never from the URL.

    Every repository, copy and tier is opened here, so a new driver is one entry in
    :data:`SCHEMES` and one module. A driver's module is imported only when a URL names it:
    opening a path never imports boto3.
    """
    text = os.fspath(url)
    try:
        scheme, rest = _split(text)
    except UsageError as exc:
        raise UsageError(f"repository '{text}': {exc}") from None
    if scheme == "s3":
        from engine.repository.storage.s3 import S3Storage

        return S3Storage.from_url(text, credentials)
    if not rest.startswith("/"):
        raise UsageError(f"repository '{text}': a posix repository must be an absolute path")
    from engine.repository.storage.posix import PosixStorage

    return PosixStorage(rest)


def check_url(url: str) -> None:
    """Refuse (UsageError) a repository URL :func:`open_storage` could not open, without
    opening it: an unknown scheme, a relative path, an S3 URL with a bad bucket or option."""
    scheme, rest = _split(url)
    if scheme == "s3":
        from engine.repository.storage.s3 import S3Settings

        S3Settings(url)
    elif not rest.startswith("/"):
        raise UsageError(f"'{url}': a posix repository must be an absolute path")


def local_path(url: str) -> str | None:
    """The directory ``url`` names when it is one of this machine (a path or ``file://``)."""
    if url.startswith("file://"):
        return url[len("file://"):]
    return url if url.startswith("/") else None


def is_local(url: str) -> bool:
    """Whether ``url`` names a directory of this machine (so Lifeboat may create it)."""
    return local_path(url) is not None


def __getattr__(name: str) -> object:
    if name in ("Capabilities", "ObjectWriter", "Storage"):
        from engine.repository.storage import base

        return getattr(base, name)
    raise AttributeError(name)


def _split(url: str) -> tuple[str, str]:
    """``(scheme, the rest)`` of a storage URL (a bare path is ``file``); UsageError for a
    scheme no driver takes."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "file", url
    if scheme not in SCHEMES:
        raise UsageError(f"unknown storage '{scheme}://' (this Lifeboat knows: an absolute path, "
                         f"{', '.join(s + '://' for s in SCHEMES)})")
    return scheme, rest
