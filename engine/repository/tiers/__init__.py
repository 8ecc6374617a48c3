"""Tiers of a repository: hot (the repository itself, and its replicas), warm and cold, each a
list of storages, and where each backup is among them.

:func:`open_tiers` opens every tier's storages (through
:func:`engine.repository.storage.open_storage`, the one opener); :func:`census` says which
storages of which tier hold each backup's manifest (a backup exists where its manifest does).
The tiering job is :mod:`.job`; restoring from an archive class is :mod:`.thaw`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from engine.config.schema import Config
from engine.errors import LifeboatError, StorageError
from engine.repository import encryption
from engine.repository.manifest import BackupSummary, list_backup_ids, read_summary
from engine.repository.retention import stopped_at
from engine.repository.storage import Storage, open_storage
from engine.repository.storage.classes import url_storage_class, without_storage_class
from engine.repository.storage.tiered import ClassedStorage, TieredView
from engine.vocabulary import FIRST_TIER


@dataclass
class Tier:
    """One tier: its storages (hot: the repository first), how many must hold each backup, how
    long a backup stays, and the archive class its data is written in (None: readable)."""

    name: str
    storages: list[Storage]
    urls: list[str]
    replication: int = 1
    age: float = math.inf
    archive_class: str | None = None
    retrieval: str = "Standard"
    restore_days: int = 7
    wait_seconds: float = 0.0  # a restore request's expected wait (0: no archive class)
    restore_poll: float = 60.0

    def describe(self, index: int) -> str:
        return f"{self.name} storage {self.storages[index].describe()}"


@dataclass
class TierSet:
    """Every tier of a repository, hottest first; the hot tier's first storage is the repository."""

    tiers: list[Tier]

    @property
    def repository(self) -> Storage:
        return self.tiers[0].storages[0]

    @property
    def enabled(self) -> bool:
        """More than the repository alone: backups can be elsewhere."""
        return len(self.tiers) > 1 or len(self.tiers[0].storages) > 1

    def tier(self, name: str) -> Tier:
        return next(t for t in self.tiers if t.name == name)

    def rank(self, name: str) -> int:
        return next(i for i, t in enumerate(self.tiers) if t.name == name)

    def for_age(self, age: float) -> Tier:
        """The tier a backup ``age`` seconds old belongs in: the first whose age it has not
        reached; past the last tier's age, the last tier (retention decides then)."""
        return next((t for t in self.tiers if age < t.age), self.tiers[-1])

    def storages(self) -> list[tuple[Tier, int, Storage]]:
        return [(t, i, s) for t in self.tiers for i, s in enumerate(t.storages)]

    def at(self, index: int) -> tuple[Tier, int]:
        """The tier and its storage's index of the view's storage ``index``."""
        tier, position, _storage = self.storages()[index]
        return tier, position

    def view(self) -> TieredView:
        """Every storage of every tier read as one, hottest first (with the repository's keys
        when it is encrypted: every tier holds its objects as they are, sealed alike)."""
        view = TieredView([s for _t, _i, s in self.storages()],
                          [t.describe(i) for t, i, _s in self.storages()])
        return encryption.attach(view, encryption.keys_of(self.repository))


def open_tier_storage(url: str, credentials: Mapping[str, str] | None = None) -> Storage:
    """A tier's storage: an S3 URL with a storage class writes its data in that class and its
    documents in the bucket's default class (:class:`ClassedStorage`). ``credentials``: those
    of ``[repository.s3]``, which every S3 storage of the repository uses."""
    if url_storage_class(url) is None:
        return open_storage(url, credentials)
    return ClassedStorage(open_storage(url, credentials),
                          open_storage(without_storage_class(url), credentials))


def open_tiers(config: Config, repository: Storage) -> TierSet:
    """The configured tiers, or the repository alone as the hot tier when none are."""
    settings = config.repository.tiers
    configured = settings.configured()
    if not configured:
        return TierSet([Tier(FIRST_TIER, [repository], [config.repository.url])])
    tiers = []
    keys = encryption.keys_of(repository)
    for name, tier in configured:
        urls = tier.urls
        storages = [encryption.attach(open_tier_storage(u, config.repository.credentials), keys)
                    for u in urls]
        if name == FIRST_TIER:
            urls, storages = [config.repository.url, *urls], [repository, *storages]
        tiers.append(Tier(name, storages, urls, tier.replication, tier.age, tier.archive_class(),
                          tier.retrieval, tier.restore_days, tier.wait_seconds(), tier.restore_poll))
    return TierSet(tiers)


@dataclass
class Placement:
    """Where one backup is: per tier, the indices of the storages holding its manifest."""

    summary: BackupSummary
    held: dict[str, list[int]] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.summary.id

    def hottest(self, tiers: TierSet) -> Tier:
        """The tier it is in (the hottest holding it: during a move, the source)."""
        return next(t for t in tiers.tiers if self.held.get(t.name))

    def copies(self, tier: str) -> int:
        return len(self.held.get(tier, ()))

    def to_json(self, tiers: TierSet) -> dict[str, object]:
        tier = self.hottest(tiers)
        return {"tier": tier.name, "copies": self.copies(tier.name), "replication": tier.replication,
                "below_replication": self.copies(tier.name) < tier.replication,
                "tiers": {name: len(held) for name, held in self.held.items() if held}}


@dataclass
class Census:
    """Every backup of a cluster in every tier, oldest (by stop time) first."""

    backups: list[Placement] = field(default_factory=list)
    damaged: list[tuple[str, str]] = field(default_factory=list)  # backup id, why unreadable
    unreachable: list[str] = field(default_factory=list)  # storages that could not be listed

    def by_id(self) -> dict[str, Placement]:
        return {p.id: p for p in self.backups}

    def next_after(self, placement: Placement) -> Placement | None:
        """The backup that stopped after it, in any tier."""
        ids = [p.id for p in self.backups]
        index = ids.index(placement.id)
        return self.backups[index + 1] if index + 1 < len(self.backups) else None


def census(tiers: TierSet, cluster: str) -> Census:
    """List every storage of every tier once, read each backup's summary once (from the first
    storage holding it that can)."""
    found = Census()
    holders: dict[str, list[tuple[Tier, int, Storage]]] = {}
    for tier, index, storage in tiers.storages():
        try:
            ids = list_backup_ids(storage, cluster)
        except StorageError as exc:
            found.unreachable.append(f"{tier.describe(index)}: {exc}")
            continue
        for backup_id in ids:
            holders.setdefault(backup_id, []).append((tier, index, storage))
    for backup_id, where in holders.items():
        summary, errors = None, []
        for _tier, _index, storage in where:
            try:
                summary = read_summary(storage, cluster, backup_id)
                break
            except LifeboatError as exc:
                errors.append(str(exc))
        if summary is None:
            found.damaged.append((backup_id, errors[0]))
            continue
        placement = Placement(summary)
        for tier, index, _storage in where:
            placement.held.setdefault(tier.name, []).append(index)
        found.backups.append(placement)
    found.backups.sort(key=lambda p: (stopped_at(p.summary), p.id))
    return found
