"""python-zstandard's compiled backend, loaded without the package's Python layer.

``import zstandard`` runs the package's ``__init__``, which imports ``typing`` and
``platform`` (with ``re``, ``functools``, ``collections``...) only to pick a backend and to
define helpers Lifeboat does not use: about 5 ms of CPU in every ``wal-push`` process,
which PostgreSQL starts once per segment. On CPython that ``__init__`` always takes its
compiled module ``zstandard.backend_c`` (the same classes: ``ZstdCompressor``,
``ZstdDecompressor``...), so the WAL path loads that module directly. Anything unusual
(another interpreter, ``PYTHON_ZSTANDARD_IMPORT_POLICY`` set, a layout this code does not
recognise) falls back to ``import zstandard``.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing is not imported on the WAL path
if TYPE_CHECKING:
    from types import ModuleType

BACKEND = "zstandard.backend_c"


def module() -> ModuleType:
    """The module with zstd's classes and constants (``zstandard`` itself when loaded)."""
    loaded = sys.modules.get("zstandard") or sys.modules.get(BACKEND)
    if loaded is not None:
        return loaded
    if sys.implementation.name == "cpython" and "PYTHON_ZSTANDARD_IMPORT_POLICY" not in os.environ:
        backend = _load_backend()
        if backend is not None:
            return backend
    import zstandard

    return zstandard


def _load_backend() -> ModuleType | None:
    """``zstandard.backend_c`` loaded from the installed package, registered under its
    name (so a later ``import zstandard`` reuses it); None when it cannot be found."""
    from importlib.machinery import ExtensionFileLoader, PathFinder

    try:
        package = PathFinder.find_spec("zstandard")
        if package is None or not package.submodule_search_locations:
            return None
        spec = PathFinder.find_spec(BACKEND, package.submodule_search_locations)
        if spec is None or not isinstance(spec.loader, ExtensionFileLoader):
            return None
        backend = spec.loader.create_module(spec)
        spec.loader.exec_module(backend)
        backend.__spec__, backend.__loader__ = spec, spec.loader
    except ImportError:
        return None
    if not hasattr(backend, "ZstdCompressor"):
        return None
    sys.modules[BACKEND] = backend
    return backend
