"""Format numbers of the repository and of each kind of object in it.

Every object that Lifeboat reads back carries the format it was written in, and every
reader checks it before trusting a byte: an object of another format is refused with
a :class:`FormatError` naming it, so the next change of a format is detected rather
than misread. Each kind has its own number, raised when that kind changes:

- the repository (``lifeboat.repo``, written by ``init``) and each cluster's
  ``cluster.json``: :data:`REPOSITORY` (3: sealed documents, packs with an index), or
  :data:`ENCRYPTED_REPOSITORY` (4) in a repository encrypted at rest
  (:mod:`engine.repository.encryption`): every command reads ``cluster.json`` first, so a
  Lifeboat that predates encryption refuses such a repository as newer, never misreads it;
- the repository's wrapped keys (``lifeboat.keys``, encrypted repositories): :data:`KEYS`;
- backup manifests (their first line): :data:`MANIFEST`;
- block lists, inline or stored (their header): :data:`BLOCK_LIST`;
- archived WAL files (the digit of their magic ``LBWAL1``): :data:`WAL`;
- named restore points and ``verified.json``: :data:`RESTORE_POINT`, :data:`VERIFY_STATE`;
  these and the two above are sealed documents (:mod:`engine.repository.sealed`);
- packs (the footer after their frames and index, :mod:`engine.repository.packs`): :data:`PACK`.

This module is imported on the WAL path: it imports nothing heavy.
"""

from __future__ import annotations

from engine.errors import FormatError

REPOSITORY = 3
ENCRYPTED_REPOSITORY = 4
KEYS = 1
MANIFEST = 2
BLOCK_LIST = 2
WAL = 1
RESTORE_POINT = 2
VERIFY_STATE = 2
PACK = 1


def problem(what: str, found: object, supported: int) -> str | None:
    """Why ``what`` in format ``found`` cannot be read, or None when it can."""
    if found == supported and isinstance(found, int):
        return None
    if isinstance(found, int) and not isinstance(found, bool) and found > supported:
        return (f"{what} is in format {found}, written by a newer Lifeboat; this Lifeboat reads "
                f"format {supported}: upgrade Lifeboat to read it")
    shown = "no format recorded" if found is None else f"format {found!r}"
    return (f"{what} is in {shown}, written by an older Lifeboat; this Lifeboat reads format "
            f"{supported} only: start a new repository (or cluster name) and take a full backup")


def check(what: str, found: object, supported: int) -> None:
    """Raise :class:`engine.errors.FormatError` unless ``found`` is ``supported``."""
    message = problem(what, found, supported)
    if message is not None:
        raise FormatError(message)
