"""What killed writers leave behind, found and removed without touching anything needed.

Three places collect remains when a process dies mid-write:

- the repository: temp objects (``.<name>.tmp-*``, :func:`engine.repository.layout.classify`
  ``temp``) of a put or a pack that never completed, and writability probes a killed check
  left (``probe``). A temp name is never a key, so no
  manifest can reference one; they are removed only when older than the staleness age and
  while nobody holds the cluster's lock (a backup, expire or GC in flight writes them);
- the async archiving spool: acknowledgements of segments PostgreSQL has archived, and temp
  files of a killed agent (:func:`engine.wal.async_archive.stale_spool`). The spool holds
  no WAL, and ``pg_wal`` is never touched;
- drill scratch directories (:func:`engine.drill.scratch.abandoned`) of a killed drill: only
  when no drill of any cluster sharing the scratch directory is running, and the
  directory is untouched for the staleness age. Its server, if it still runs, is stopped.

:func:`find` plans, :func:`remove` removes and says what happened to each.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from engine.config.schema import Config
from engine.errors import LifeboatError, StorageError
from engine.repository import layout
from engine.repository.storage import Storage
from engine.vocabulary import SCRATCH_JOB_KINDS

if TYPE_CHECKING:
    from engine.catalog.store import Catalog

REPOSITORY, SPOOL, SCRATCH = "repository temp object", "spool leftover", "drill scratch directory"


@dataclass(frozen=True)
class Leftover:
    kind: str  # REPOSITORY, SPOOL or SCRATCH
    where: str  # a repository key, or a path
    bytes: int
    age: float  # seconds since last written
    why: str


@dataclass
class Plan:
    cluster: str
    leftovers: list[Leftover] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was not looked at, and why

    @property
    def bytes(self) -> int:
        return sum(item.bytes for item in self.leftovers)


@dataclass(frozen=True)
class Removal:
    leftover: Leftover
    error: str | None = None  # None: removed


def repository_temps(storage: Storage, cluster: str, older_than: float,
                     now: float | None = None) -> list[Leftover]:
    """Temp objects (and leftover probes) of the cluster older than ``older_than`` seconds
    (local repositories: the driver's listing leaves dot-files out, so the directory is walked)."""
    root = storage.capabilities.local_path
    if root is None:
        return []
    now = time.time() if now is None else now
    base = os.path.join(root, *layout.cluster_prefix(cluster).split("/"))
    found = []
    for directory, _dirs, files in os.walk(base):
        for name in files:
            path = os.path.join(directory, name)
            key = os.path.relpath(path, root).replace(os.sep, "/")
            kind = layout.classify(cluster, key)
            if kind not in ("temp", "probe"):
                continue
            try:
                stat = os.lstat(path)
            except FileNotFoundError:
                continue
            age = now - stat.st_mtime
            if age >= older_than:
                found.append(Leftover(REPOSITORY, key, stat.st_size, age,
                                      "the remains of a write that never completed (a temp name: no "
                                      "manifest refers to it)" if kind == "temp" else
                                      "a writability probe whose writer did not delete it (no data)"))
    return sorted(found, key=lambda item: item.where)


def _drills_running(config: Config, catalog: Catalog, scratch_dir: Path) -> list[str]:
    from engine.catalog.store import RUNNING

    sharing = [name for name, settings in config.clusters.items()
               if settings.drills.scratch_dir == scratch_dir]
    running = []
    for name in sharing:
        for kind in SCRATCH_JOB_KINDS:
            running += [f"{kind} job {job.id} of cluster '{name}'"
                        for job in catalog.jobs(name, states=(RUNNING,), kind=kind)]
    return running


def find(config: Config, cluster: str, storage: Storage, catalog: Catalog | None,
         older_than: float, now: float | None = None) -> Plan:
    """Plan the removal of ``cluster``'s leftovers older than ``older_than`` seconds.
    ``catalog`` None: scratch directories are left (a running drill cannot be ruled out)."""
    from engine.drill import scratch
    from engine.repository.locks import cluster_lock_holder
    from engine.wal.async_archive import stale_spool

    now = time.time() if now is None else now
    plan = Plan(cluster)
    settings = config.cluster(cluster)
    if storage.capabilities.local_path is None:
        plan.notes.append(f"repository {storage.describe()}: object storage has no temp objects (a "
                          "killed writer leaves an incomplete multipart upload, which expire aborts "
                          "once older than gc_grace)")
    else:
        try:
            holder = cluster_lock_holder(storage, cluster)
        except StorageError as exc:
            holder = f"unknown ({exc})"
        if holder is not None:
            plan.notes.append(f"repository temp objects left: the lock of cluster '{cluster}' is "
                              f"held by {holder}, whose writes may be in flight")
        else:
            plan.leftovers += repository_temps(storage, cluster, older_than, now)
    spool = config.spool_directory(cluster)
    plan.leftovers += [Leftover(SPOOL, path, size, age, why) for path, size, age, why
                       in stale_spool(str(spool), str(settings.pgdata), older_than, now)]
    scratch_dir = settings.drills.scratch_dir
    if catalog is None:
        plan.notes.append(f"drill scratch directories in {scratch_dir} left: the catalog cannot "
                          "be read, so a running drill cannot be ruled out")
    else:
        try:
            running = _drills_running(config, catalog, scratch_dir)
        except LifeboatError as exc:
            running = [f"unknown ({exc})"]
        if running:
            plan.notes.append(f"drill scratch directories in {scratch_dir} left: "
                              f"{', '.join(running)} is running")
        else:
            plan.leftovers += [
                Leftover(SCRATCH, str(path), size, age, "scratch cluster of a drill that did not "
                         "remove it (killed); no drill is running")
                for path, size, age in scratch.abandoned(scratch_dir, older_than, now)]
    return plan


def remove(storage: Storage, plan: Plan) -> list[Removal]:
    """Remove what ``plan`` found; each removal's outcome (a failure does not stop the rest)."""
    from engine.drill import scratch

    done = []
    for item in plan.leftovers:
        try:
            if item.kind == REPOSITORY:
                if layout.classify(plan.cluster, item.where) not in ("temp", "probe"):
                    raise StorageError(f"{item.where} is not a temp object")  # never anything else
                storage.delete(item.where)
            elif item.kind == SPOOL:
                os.unlink(item.where)
            else:
                problem = scratch.remove(scratch.Scratch(Path(item.where), 0))
                if problem:
                    raise StorageError(problem)
        except FileNotFoundError:
            pass  # gone meanwhile
        except (LifeboatError, OSError) as exc:
            done.append(Removal(item, str(exc)))
            continue
        done.append(Removal(item))
    return done
