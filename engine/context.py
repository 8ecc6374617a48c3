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
from engine.errors import UsageError

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
    _catalog: Catalog | None = field(default=None, init=False, repr=False)

    @cached_property
    def storage(self) -> Storage:
        """The repository (its primary region), with its keys when it is encrypted: a key
        that is not the repository's (or one given for a repository that has none, or none
        for one that has) is refused here, before anything is read or written."""
        return self._open_repository(create=False)

    def create_storage(self) -> Storage:
        """:attr:`storage` for ``init``: an encrypted repository's keys are made if it has
        none yet."""
        storage = self.__dict__["storage"] = self._open_repository(create=True)
        return storage

    def _open_repository(self, create: bool) -> Storage:
        from engine.repository import encryption
        from engine.repository.storage import open_storage

        storage = open_storage(self.config.repository.url, self.config.repository.credentials)
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
        """The repository's tiers (hot: the repository itself; warm, cold), each opened."""
        from engine.repository.tiers import open_tiers

        return open_tiers(self.config, self.storage)

    @cached_property
    def tiered(self) -> Storage:
        """Every tier read as one, hottest first: what restores, their plans and the recovery
        windows read (a backup and its WAL are found in whichever tier holds them). The
        repository itself when no tiers are configured."""
        return self.tiers.view() if self.tiers.enabled else self.storage

    def copy_storage(self, region: str) -> Storage:
        """The repository's copy in ``region``."""
        from engine.repository.storage import open_storage

        copies = self.config.repository.copies
        if region not in copies:
            raise UsageError(f"region '{region}': the configuration has no [repository.copies."
                             f"{region}] (regions: {', '.join(sorted(copies)) or 'none'})")
        return open_storage(copies[region].url)

    @property
    def catalog(self) -> Catalog:
        """The catalog, opened on first use (CatalogError when it cannot be)."""
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
                 need_cluster: bool = False) -> Context:
    """Load and validate the configuration (``--config``, ``$LIFEBOAT_CONFIG`` or the
    default path) and resolve ``cluster`` against it; ``need_cluster`` picks the only
    cluster when none is named (and refuses when there are several)."""
    from engine.config.schema import load_config

    resolved = Path(config_path(path)).absolute()
    config = load_config(resolved)
    if cluster is not None or need_cluster:
        cluster = config.cluster_name(cluster, resolved)
    return Context(config, resolved, cluster)
