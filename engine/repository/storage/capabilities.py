"""What differs between storage drivers (a namedtuple: this module is on the WAL path)."""

from __future__ import annotations

from collections import namedtuple


class Capabilities(namedtuple("Capabilities", "local_path atomic_create readable",
                              defaults=(None, True, True))):
    """What a driver can do beyond the :class:`~engine.repository.storage.base.Storage`
    contract, so callers ask rather than drivers fake.

    - ``local_path``: the objects are files under this directory on a local (or mounted)
      file system, so an ``flock`` there excludes other processes (see
      :mod:`engine.repository.locks`) and messages can name real paths. None on object
      storage, which needs leases instead.
    - ``atomic_create``: the store itself makes ``put_if_absent`` atomic (a hard link on
      posix, a conditional write where the store has one); where False the driver
      serialises creators another way.
    - ``readable``: what is written can be read back at once. False where objects are written
      in an archive storage class (GLACIER, DEEP_ARCHIVE: a read needs a restore first), which
      therefore cannot hold a lease lock.
    """

    __slots__ = ()
    local_path: str | None
    atomic_create: bool
    readable: bool
