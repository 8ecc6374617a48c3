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


@dataclass
class Context:
    """A loaded configuration and the things it names, opened on first use."""

    config: Config
    config_path: Path
    cluster: str | None = None  # the cluster asked for (None: every cluster, or none needed)
    _catalog: Catalog | None = field(default=None, init=False, repr=False)

    @cached_property
    def storage(self) -> Storage:
        """The repository (its primary region)."""
        from engine.repository.storage import open_storage

        repository = self.config.repository
        return open_storage(repository.url, repository.credentials)

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
