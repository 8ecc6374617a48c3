"""``[repository.tiers.hot|warm|cold]``: where backups are kept as they age.

A tier is an age and one or more storages. A backup stays in a tier until it is ``age`` old
(measured from its stop time), then the tiering job moves it to the next tier; past the last
tier's age it stays in the last tier, for retention to decide. ``replication`` is how many
of the tier's storages must hold each backup: independent copies, so one storage named twice
is refused, and so is a count above the number of storages. The hot tier is the repository
itself, plus any storages it names (replicas of the repository's backups)::

    [repository.tiers.hot]
    age = "7d"

    [repository.tiers.warm]
    age = "30d"
    storages = ["/mnt/warm-a", "/mnt/warm-b"]
    replication = 2

    [repository.tiers.cold]
    age = "365d"
    storage = "s3://archive/lifeboat-cold?storage_class=GLACIER"
    retrieval = "Standard"
"""

from __future__ import annotations

from itertools import pairwise
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from engine.config.units import parse_duration
from engine.repository.storage.classes import (
    ARCHIVE_CLASSES,
    RETRIEVAL_SECONDS,
    STORAGE_CLASSES,
    url_storage_class,
)
from engine.vocabulary import TIERS

Duration = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]
DEFAULT_INTERVAL = 3600.0


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _check_url(url: str) -> str:
    """A storage URL as :func:`engine.repository.storage.open_storage` takes it: an absolute
    path, ``file:///path`` or ``s3://BUCKET/PREFIX?...`` (a storage class it knows)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        if not url.startswith("/"):
            raise ValueError(f"'{url}' must be an absolute path or an s3:// URL")
        return url.rstrip("/") or "/"
    if scheme == "file":
        if not rest.startswith("/"):
            raise ValueError(f"'{url}': a file:// URL names an absolute path (file:///dir)")
        return rest.rstrip("/") or "/"
    if scheme != "s3":
        raise ValueError(f"'{url}': unknown storage '{scheme}://' (an absolute path or s3://)")
    if not rest or rest.startswith(("/", "?")):
        raise ValueError(f"'{url}': an S3 storage is s3://BUCKET/PREFIX[?OPTIONS]")
    storage_class = url_storage_class(url)
    if storage_class is not None and storage_class not in STORAGE_CLASSES:
        raise ValueError(f"'{url}': storage_class must be one of {', '.join(STORAGE_CLASSES)}")
    return url


def location(url: str) -> str:
    """Where a storage URL's objects are, whatever its options: two URLs with one location
    (another storage class, another endpoint spelling) would share keys."""
    from urllib.parse import urlsplit

    if url.startswith("s3://"):
        parts = urlsplit(url)
        return f"s3://{parts.netloc}/{parts.path.strip('/')}"
    return url.removeprefix("file://").rstrip("/") or "/"


StorageUrl = Annotated[str, BeforeValidator(lambda v: _check_url(v) if isinstance(v, str) else v)]


class TierConfig(_Section):
    """One tier: ``[repository.tiers.NAME]``."""

    age: Duration  # a backup stays in this tier until it is this old (from its stop time)
    storage: StorageUrl | None = None  # one storage ...
    storages: list[StorageUrl] = Field(default_factory=list)  # ... or several (independent copies)
    replication: int = Field(default=1, ge=1, le=16)
    retrieval: Literal["Expedited", "Standard", "Bulk"] = "Standard"  # archive classes' restore speed
    restore_days: int = Field(default=7, ge=1, le=365)  # how long a restored archive copy is readable
    expected_wait: Duration | None = None  # the restore wait a plan states (default: S3's documented)
    restore_poll: Duration = 60.0  # how often a restore waiting for archived objects looks again

    @model_validator(mode="after")
    def _one_way_to_name_storages(self) -> TierConfig:
        if self.storage is not None and self.storages:
            raise ValueError("give either storage or storages, not both")
        if len({location(u) for u in self.urls}) != len(self.urls):
            raise ValueError("storages: a storage is named twice (copies must be independent)")
        return self

    @property
    def urls(self) -> list[str]:
        """The storages this tier names (for hot: besides the repository itself)."""
        return [self.storage] if self.storage is not None else list(self.storages)

    def archive_class(self) -> str | None:
        """The archive storage class its S3 storages write (GLACIER, DEEP_ARCHIVE), if any."""
        found = [c for c in (url_storage_class(u) for u in self.urls) if c in ARCHIVE_CLASSES]
        return found[0] if found else None

    def wait_seconds(self) -> float:
        """How long a restore request from this tier is expected to take (0: no archive)."""
        archive = self.archive_class()
        if archive is None:
            return 0.0
        if self.expected_wait is not None:
            return self.expected_wait
        return RETRIEVAL_SECONDS.get((archive, self.retrieval), 0.0)


class TiersConfig(_Section):
    """``[repository.tiers]``: the tiers, and how often the agent moves backups between them."""

    hot: TierConfig | None = None
    warm: TierConfig | None = None
    cold: TierConfig | None = None
    interval: Duration = DEFAULT_INTERVAL  # how often the agent's tiering job runs

    @field_validator("interval")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be more than 0")
        return value

    def configured(self) -> list[tuple[str, TierConfig]]:
        """The tiers given, hottest first."""
        return [(name, tier) for name in TIERS if (tier := getattr(self, name)) is not None]

    @property
    def enabled(self) -> bool:
        """Whether backups move: some tier besides hot, or hot with replicas."""
        return bool(self.configured())

    @model_validator(mode="after")
    def _consistent(self) -> TiersConfig:
        tiers = self.configured()
        if not tiers:
            return self
        if self.hot is None:
            raise ValueError("hot: required when warm or cold are given (its age says when a backup "
                             "leaves the repository)")
        for (name, tier), (later, after) in pairwise(tiers):
            if after.age <= tier.age:
                raise ValueError(f"{later}.age: must be more than {name}.age (a backup moves to "
                                 f"{later} when it is older than {name}.age)")
        for name, tier in tiers:
            if name != "hot" and not tier.urls:
                raise ValueError(f"{name}: needs storage (a path or an s3:// URL) or storages")
            count = len(tier.urls) + (1 if name == "hot" else 0)
            if tier.replication > count:
                where = "the repository and its storages" if name == "hot" else "storages"
                raise ValueError(f"{name}.replication: {tier.replication} copies need {tier.replication} "
                                 f"independent storages, but {name} has {count} ({where})")
            archive = tier.archive_class()
            if archive is not None and (name == "hot" or (name, tier) != tiers[-1]):
                raise ValueError(f"{name}: storage_class={archive} is an archive class; only the "
                                 "coldest tier may use one (a backup is never moved out of an archive)")
            if archive is not None and (archive, tier.retrieval) not in RETRIEVAL_SECONDS:
                raise ValueError(f"{name}.retrieval: {archive} does not offer {tier.retrieval} retrieval")
        seen: dict[str, str] = {}
        for name, tier in tiers:
            for url in tier.urls:
                if location(url) in seen:
                    raise ValueError(f"{name}: storage {url} is also a storage of {seen[location(url)]} "
                                     "(give each tier its own path or S3 prefix)")
                seen[location(url)] = name
        return self
