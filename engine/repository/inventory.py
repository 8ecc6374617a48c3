"""Every object in one cluster's part of the repository, by kind (one listing).

Kinds are :func:`engine.repository.layout.classify`'s; keys it does not know are
``unknown``: Lifeboat did not write them there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.repository import layout
from engine.repository.storage import Storage


@dataclass
class Inventory:
    cluster: str
    keys: dict[str, list[str]] = field(default_factory=dict)  # kind -> keys, sorted
    unknown: list[str] = field(default_factory=list)

    def of(self, kind: str) -> list[str]:
        return self.keys.get(kind, [])

    def names(self, kind: str) -> set[str]:
        """The last part of each key of ``kind`` (a WAL file's name, a pack's id ...)."""
        return {key.rsplit("/", 1)[-1] for key in self.of(kind)}

    @property
    def objects(self) -> int:
        return sum(len(keys) for keys in self.keys.values()) + len(self.unknown)


def take(storage: Storage, cluster: str) -> Inventory:
    """List and classify everything under the cluster's prefix."""
    found = Inventory(cluster)
    for key in storage.list(layout.cluster_prefix(cluster)):
        kind = layout.classify(cluster, key)
        if kind is None:
            found.unknown.append(key)
        else:
            found.keys.setdefault(kind, []).append(key)
    return found
