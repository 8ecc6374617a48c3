"""One way in: from a configuration file to what every command works with.

The CLI, the agent, ``run-job``, the exporter and the console all open the configuration,
the repository's storage, its copies and the catalog through :class:`Context`, so each is
opened one way, in one place. Opening is lazy: a command that never touches the catalog
never opens it, and the storage is opened after the CLI has switched to ``os_user``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from engine.config.file import config_path

if TYPE_CHECKING:
    from engine.catalog.store import Catalog
    from engine.config.schema import Config
    from engine.repository.storage.base import Storage
    from engine.repository.tiers import TierSet


@dataclass
class Context:
    """A loaded configuration and the things it names, opened on first use."""

    config: Config
    config_path: Path
    cluster: str | None = None  # the cluster asked for (None: every cluster, or none needed)
    region: str | None = None  # a copy's region to work on instead of the primary (restore --region)
    _catalog: Catalog | None = field(default=None, init=False, repr=False)
    _parent: Context | None = field(default=None, init=False, repr=False)  # in_region's: its catalog

    @cached_property
    def storage(self) -> Storage:
        """The repository: its primary region's, or the copy in ``region`` when one was asked
        for (then it must hold the cluster's copy: RegionUnavailableError names the region).
        With its keys when it is encrypted: a key that is not the repository's (or one given
        for a repository that has none, or none for one that has) is refused here, before
        anything is read or written."""
        if self.region is not None:
            from engine.repository.region import open_copy

            return open_copy(self.config, self.region, self.require_cluster(),
                             keys=lambda copy: self._with_keys(copy, create=False))
        return self.primary_storage

    @cached_property
    def primary_storage(self) -> Storage:
        """The repository in its primary region, whatever ``region`` is."""
        from engine.repository.storage import open_storage

        repository = self.config.repository
        return self._with_keys(open_storage(repository.url, repository.credentials), create=False)

    def create_storage(self) -> Storage:
        """:attr:`storage` for ``init``: an encrypted repository's keys are made if it has
        none yet."""
        from engine.repository.storage import open_storage

        repository = self.config.repository
        storage = self._with_keys(open_storage(repository.url, repository.credentials), create=True)
        self.__dict__["primary_storage"] = storage
        return storage

    def _with_keys(self, storage: Storage, create: bool) -> Storage:
        """``storage`` (the repository or a region's copy of it) with the repository's keys."""
        from engine.repository import encryption

        settings = self.config.repository.encryption
        if settings is None:
            from engine.repository import clusterinfo

            clusterinfo.refuse_if_encrypted(storage)  # the configuration lacks its key: say so
            return storage
        sources = encryption.KeySources.from_plain(settings.model_dump(mode="json"))
        assert sources is not None
        opened = encryption.create_keys if create else encryption.open_keys
        return encryption.attach(storage, opened(storage, sources))

    @cached_property
    def tiers(self) -> TierSet:
        """The repository's tiers (hot: the repository itself; warm, cold), each opened. A
        region's copy is a repository of its own, without the primary's tiers: it alone."""
        from engine.repository.tiers import Tier, TierSet, open_tiers
        from engine.vocabulary import FIRST_TIER

        if self.region is not None:
            return TierSet([Tier(FIRST_TIER, [self.storage], [self.storage.describe()])])
        return open_tiers(self.config, self.storage)

    @cached_property
    def tiered(self) -> Storage:
        """Every tier read as one, hottest first: what restores, their plans and the recovery
        windows read (a backup and its WAL are found in whichever tier holds them). The
        repository itself when no tiers are configured."""
        return self.tiers.view() if self.tiers.enabled else self.storage

    def copy_storage(self, region: str) -> Storage:
        """The repository's copy in ``region`` (UsageError naming the regions when unknown),
        with the repository's keys when it is encrypted (a copy holds its objects sealed alike)."""
        from engine.repository.region import open_copy

        return open_copy(self.config, region, keys=lambda copy: self._with_keys(copy, create=False))

    def in_region(self, region: str | None) -> Context:
        """This context reading the copy in ``region`` as its repository (itself for None):
        restore, its plan, verify and expire of a region go through it. The region is
        checked now: UsageError when unknown."""
        if region is None or region == self.region:
            return self
        from engine.repository.region import settings_of

        settings_of(self.config, region)
        other = Context(self.config, self.config_path, self.cluster, region)
        other._parent = self._parent or self  # one catalog, opened and closed by the first
        if "primary_storage" in self.__dict__:
            other.__dict__["primary_storage"] = self.primary_storage
        return other

    @property
    def catalog(self) -> Catalog:
        """The catalog, opened on first use (CatalogError when it cannot be)."""
        if self._parent is not None:
            return self._parent.catalog
        if self._catalog is None:
            from engine.catalog.store import Catalog

            self._catalog = Catalog.open(self.config)
        return self._catalog

    def require_cluster(self) -> str:
        """The cluster this context was opened for (a command that needs one)."""
        if self.cluster is None:
            self.cluster = self.config.cluster_name(None, self.config_path)
        return self.cluster

    def clusters(self) -> list[str]:
        """The cluster asked for, else every configured cluster."""
        return [self.cluster] if self.cluster else sorted(self.config.clusters)

    def close(self) -> None:
        if self._catalog is not None:
            self._catalog.close()
            self._catalog = None

    def __enter__(self) -> Context:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_context(path: str | os.PathLike[str] | None = None, cluster: str | None = None,
                 need_cluster: bool = False, region: str | None = None) -> Context:
    """Load and validate the configuration (``--config``, ``$LIFEBOAT_CONFIG`` or the
    default path) and resolve ``cluster`` against it; ``need_cluster`` picks the only
    cluster when none is named (and refuses when there are several)."""
    from engine.config.schema import load_config

    resolved = Path(config_path(path)).absolute()
    config = load_config(resolved)
    if cluster is not None or need_cluster:
        cluster = config.cluster_name(cluster, resolved)
    context = Context(config, resolved, cluster)
    return context.in_region(region)
