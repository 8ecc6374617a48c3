"""The one TOML configuration file, validated on load with pydantic.

Every error in the file is collected and reported together, each naming its key
and the file, before anything runs. A minimal file::

    [repository]
    path = "/var/lib/lifeboat/repo"

    [clusters.main]
    pgdata = "/var/lib/postgresql/15/main"
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from engine.config.alerting import AlertsSettings
from engine.config.console import ConsoleSettings
from engine.config.file import config_path, read_config_bytes
from engine.config.sections import (
    CLASS_OBJECTIVES,
    AgentConfig,
    ArchiveConfig,
    CatalogConfig,
    DrillConfig,
    ExporterConfig,
    NotificationsConfig,
    ObjectivesConfig,
    ScheduleConfig,
    StreamingConfig,
)
from engine.config.units import parse_duration, parse_size
from engine.errors import ConfigError

PAGE_SIZE = 8192
CLUSTER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")

Duration = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]
Size = Annotated[int, BeforeValidator(parse_size)]
ClusterName = Annotated[str, StringConstraints(pattern=CLUSTER_NAME.pattern)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _absolute(path: Path) -> Path:
    if not path.is_absolute():
        raise ValueError("must be an absolute path")
    return path


class CompressionConfig(_Section):
    """How blocks and WAL are compressed (zstd level 3 unless told otherwise)."""

    algorithm: Literal["zstd", "lz4", "none"] = "zstd"
    level: int = 3
    time_budget: Duration | None = None  # backups projected to take longer lower the level

    @field_validator("level")
    @classmethod
    def _level_in_range(cls, value: int, info: ValidationInfo) -> int:
        algorithm = info.data.get("algorithm", "zstd")
        low, high = {"zstd": (1, 19), "lz4": (0, 16), "none": (0, 1 << 30)}[algorithm]
        if not low <= value <= high:
            raise ValueError(f"must be within {low}..{high} for {algorithm}")
        return value


RegionName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,63}$")]


class CopyConfig(_Section):
    """A copy of the repository in another region, kept up to date by the agent."""

    path: Path
    interval: Duration = 60.0  # how often the agent brings the copy up to date

    _check_path = field_validator("path")(_absolute)

    @property
    def url(self) -> str:
        """What :func:`engine.repository.storage.open_storage` opens."""
        return str(self.path)


EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")]


def _readable_file(value: Path | None) -> Path | None:
    """A file this process can read (checked on load; as root, for ``os_user`` as well by
    :meth:`Config._credentials_readable`)."""
    if value is None:
        return None
    _absolute(value)
    if not value.is_file():
        raise ValueError(f"{value} does not exist or is not a file")
    if not os.access(value, os.R_OK):
        raise ValueError(f"{value} is not readable by this user")
    return value


class S3Credentials(_Section):
    """Credentials of an ``s3://`` repository given by the configuration, for the processes
    that do not have a shell's: PostgreSQL runs ``archive_command`` and ``restore_command``
    as ``postgres`` with the server's environment. Without this table the AWS chain is used
    (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, ``~/.aws`` of
    ``os_user``, an instance or container role). Secrets are never written here: they are
    read from a file or an environment variable each time the repository is opened."""

    access_key_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9+/=_-]{1,128}$")
    secret_access_key_file: Path | None = None
    secret_access_key_env: EnvName | None = None
    session_token_file: Path | None = None
    session_token_env: EnvName | None = None
    profile: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.@+-]{1,64}$")
    credentials_file: Path | None = None  # an AWS shared-credentials file for profile
    secret_access_key: str | None = None  # refused: the secret stays out of the file

    _check_files = field_validator("secret_access_key_file", "session_token_file",
                                   "credentials_file")(_readable_file)

    @field_validator("secret_access_key")
    @classmethod
    def _no_inline_secret(cls, value: str | None) -> None:
        if value is not None:
            raise ValueError("the secret is not written in the configuration: put it in a file "
                             "readable by os_user (secret_access_key_file) or an environment "
                             "variable (secret_access_key_env)")
        return None

    @model_validator(mode="after")
    def _one_way(self) -> S3Credentials:
        secret = [k for k in ("secret_access_key_file", "secret_access_key_env") if getattr(self, k)]
        token = [k for k in ("session_token_file", "session_token_env") if getattr(self, k)]
        if self.access_key_id is None:
            if secret or token:
                raise ValueError(f"{(secret + token)[0]} needs access_key_id")
            if self.credentials_file is not None and self.profile is None:
                raise ValueError("credentials_file needs profile (the profile to use in it)")
            return self
        if len(secret) != 1:
            raise ValueError("access_key_id needs exactly one of secret_access_key_file and "
                             "secret_access_key_env")
        if len(token) > 1:
            raise ValueError("give one of session_token_file and session_token_env")
        if self.profile is not None or self.credentials_file is not None:
            raise ValueError("give access_key_id or profile, not both")
        return self

    def plain(self) -> dict[str, str]:
        """What :func:`engine.repository.storage.open_storage` takes as ``credentials``."""
        return {key: str(value) for key, value in self.model_dump().items() if value is not None}

    def files(self) -> list[tuple[str, Path]]:
        return [(key, value) for key in ("secret_access_key_file", "session_token_file",
                                         "credentials_file")
                if (value := getattr(self, key)) is not None]


class RepositoryConfig(_Section):
    """Where backups and WAL are kept, and how files are cut into blocks.

    A block (``block_size``) is the unit of identity: it is stored once, under its
    SHA-256. By default it is PostgreSQL's page: an incremental backup after random
    updates (pgbench) stores 14% less than with 16 KiB blocks, since a changed page no
    longer brings its unchanged neighbour along; block lists are twice as long. A frame
    (``frame_size``) is the unit of compression: consecutive blocks of a file compressed
    together, which compresses ~6% better than blocks alone.
    """

    path: Path | None = None  # a directory (local or mounted) ...
    url: str | None = None  # ... or a URL: s3://BUCKET/PREFIX?endpoint=...&region=... (or a path)
    s3: S3Credentials | None = None  # credentials of an s3:// url (else the AWS chain)
    block_size: Size = 8 * 1024
    frame_size: Size = 512 * 1024
    pack_size: Size = 64 * 1024 * 1024
    region: RegionName = "local"  # where it is (a metrics label)
    copies: dict[RegionName, CopyConfig] = Field(default_factory=dict)  # region -> its copy

    @field_validator("path")
    @classmethod
    def _path_absolute(cls, value: Path | None) -> Path | None:
        return None if value is None else _absolute(value)

    @field_validator("url")
    @classmethod
    def _url_opens(cls, value: str | None) -> str | None:
        from engine.errors import UsageError
        from engine.repository.storage import check_url

        if value is not None:
            try:
                check_url(value)
            except UsageError as exc:
                raise ValueError(str(exc).removeprefix(f"repository '{value}': ")) from None
        return value

    @model_validator(mode="after")
    def _one_location(self) -> RepositoryConfig:
        """One of ``path`` and ``url`` (both only when they name the same directory, as a
        dumped configuration does); afterwards ``url`` is always set (what
        :func:`engine.repository.storage.open_storage` opens) and ``path`` is the directory
        when the repository is one (None on object storage)."""
        from engine.repository.storage import local_path

        if self.path is not None and self.url is not None and local_path(self.url) != str(self.path):
            raise ValueError("path and url are both set: give one (path = \"/a/directory\" or "
                             "url = \"s3://bucket/prefix?region=...\")")
        if self.path is None and self.url is None:
            raise ValueError("path (a directory) or url (e.g. s3://bucket/prefix?region=...) is "
                             "required")
        if self.url is None:
            object.__setattr__(self, "url", str(self.path))
        else:
            local = local_path(self.url)
            object.__setattr__(self, "path", None if local is None else Path(local))
        if self.s3 is not None and not self.url.startswith("s3://"):
            raise ValueError("[repository.s3] holds credentials for an s3:// url; this repository "
                             f"is {self.url}")
        return self

    @property
    def credentials(self) -> dict[str, str] | None:
        """``[repository.s3]`` as :func:`engine.repository.storage.open_storage` takes it."""
        return None if self.s3 is None else self.s3.plain()

    @model_validator(mode="after")
    def _copies_elsewhere(self) -> RepositoryConfig:
        for region, copy in self.copies.items():
            if region == self.region:
                raise ValueError(f"copies.{region}: a copy must be in another region than "
                                 f"the repository ('{self.region}')")
            if copy.path == self.path:
                raise ValueError(f"copies.{region}.path: a copy cannot be the repository itself")
        return self

    @field_validator("block_size")
    @classmethod
    def _block_size_pages(cls, value: int) -> int:
        if value % PAGE_SIZE or not PAGE_SIZE <= value <= 16 * 1024 * 1024:
            raise ValueError("must be a multiple of 8KiB between 8KiB and 16MiB")
        return value

    @field_validator("frame_size")
    @classmethod
    def _frame_size_blocks(cls, value: int, info: ValidationInfo) -> int:
        block = info.data.get("block_size", PAGE_SIZE)
        if value % block or not block <= value <= 16 * 1024 * 1024:
            raise ValueError("must be a multiple of block_size, at most 16MiB")
        return value

    @field_validator("pack_size")
    @classmethod
    def _pack_size_range(cls, value: int) -> int:
        if not 1024 * 1024 <= value <= 4 * 1024**3:
            raise ValueError("must be between 1MiB and 4GiB")
        return value


def _keep_rule(value: object) -> tuple[str, float]:
    """``2`` keeps the two newest; ``"7d"`` keeps those younger than seven days."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("must be a count (e.g. 2) or an age (e.g. '7d')")
    if isinstance(value, int):
        if value < 1:
            raise ValueError("a count must keep at least 1 backup")
        return ("count", float(value))
    return ("age", parse_duration(value))


KeepRule = Annotated[tuple[Literal["count", "age"], float], BeforeValidator(_keep_rule)]


class RetentionConfig(_Section):
    """What ``expire`` keeps. A backup type without a rule is kept forever; the newest
    backup always is, and so is the newest one old enough to anchor the recovery window."""

    full: KeepRule | None = None
    diff: KeepRule | None = None
    incr: KeepRule | None = None
    max_recovery_window: Duration | None = None
    expire_after_backup: bool = True
    gc_grace: Duration = 3600.0

    def rules(self) -> dict[str, tuple[str, float]]:
        return {t: r for t, r in (("full", self.full), ("diff", self.diff), ("incr", self.incr))
                if r is not None}

    @property
    def configured(self) -> bool:
        return bool(self.rules()) or self.max_recovery_window is not None


class ClusterConfig(_Section):
    """One PostgreSQL cluster: its data directory and how to connect to it."""

    pgdata: Path
    host: str = "/var/run/postgresql"
    port: int = Field(default=5432, ge=1, le=65535)
    user: str = "postgres"
    database: str = "postgres"
    bin_dir: Path | None = None
    archive_timeout: Duration = 60.0
    connect_timeout: Duration = 10.0
    retention: RetentionConfig | None = None
    recovery_class: Literal["critical", "analytical", "archived"] = Field(
        default="analytical", alias="class")
    objectives: ObjectivesConfig = ObjectivesConfig()
    archive: ArchiveConfig = ArchiveConfig()
    streaming: StreamingConfig = StreamingConfig()
    schedules: dict[ClusterName, ScheduleConfig] = Field(default_factory=dict)
    drills: DrillConfig = DrillConfig()
    service: str | None = None  # what the cluster serves (metrics label; default: its name)
    datacenter: str = "local"  # where the primary runs (metrics label)
    replica_datacenters: dict[str, str] = Field(default_factory=dict)  # application_name -> dc
    auto_remediation: bool = True  # False: alerts of this cluster are routed, never remediated

    _check_pgdata = field_validator("pgdata")(_absolute)

    @field_validator("bin_dir")
    @classmethod
    def _bin_dir_absolute(cls, value: Path | None) -> Path | None:
        return None if value is None else _absolute(value)

    @property
    def rpo_objective(self) -> float:
        """Seconds of committed work the class allows to lose (0: none)."""
        rpo = self.objectives.rpo
        return CLASS_OBJECTIVES[self.recovery_class][0] if rpo is None else rpo

    @property
    def rto_objective(self) -> float:
        """Seconds the class allows a restore to take."""
        rto = self.objectives.rto
        return CLASS_OBJECTIVES[self.recovery_class][1] if rto is None else rto

    @property
    def synchronous_streaming(self) -> bool:
        """Whether the streaming receiver is a synchronous standby."""
        mode = self.streaming.synchronous
        return self.rpo_objective == 0 if mode == "auto" else bool(mode)


class Config(_Section):
    """The whole configuration file."""

    os_user: str = "postgres"
    jobs: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, le=256)
    repository: RepositoryConfig
    compression: CompressionConfig = CompressionConfig()
    retention: RetentionConfig = RetentionConfig()
    clusters: dict[ClusterName, ClusterConfig] = Field(default_factory=dict)
    catalog: CatalogConfig = CatalogConfig()
    agent: AgentConfig = AgentConfig()
    notifications: NotificationsConfig = NotificationsConfig()
    exporter: ExporterConfig = ExporterConfig()
    alerts: AlertsSettings = AlertsSettings()
    console: ConsoleSettings = ConsoleSettings()

    @field_validator("repository")
    @classmethod
    def _credentials_readable(cls, value: RepositoryConfig, info: ValidationInfo) -> RepositoryConfig:
        """Run as root, Lifeboat reads the secret files as ``os_user`` (and PostgreSQL's
        archive_command always does): refuse one that user cannot read, now."""
        from engine.directories import user_may_read

        user = info.data.get("os_user")
        if value.s3 is None or os.geteuid() != 0 or user in (None, "root"):
            return value
        for key, path in value.s3.files():
            if not user_may_read(path, user):
                raise ValueError(f"s3.{key}: {path} is not readable by os_user {user}, who opens "
                                 f"the repository (and as whom PostgreSQL runs archive_command): "
                                 f"e.g. chown root:{user} {path} && chmod 0640 {path}, and let "
                                 f"{user} into the directories above it")
        return value

    def service_of(self, cluster: str) -> str:
        """The service label of a cluster's metrics and data-loss events."""
        return self.clusters[cluster].service or cluster

    def cluster(self, name: str | None, source: Path | str = "the configuration") -> ClusterConfig:
        """The named cluster, or the only one when no name is given."""
        if name is None:
            if len(self.clusters) == 1:
                return next(iter(self.clusters.values()))
            known = ", ".join(sorted(self.clusters)) or "none"
            raise ConfigError(f"--cluster is required (clusters in {source}: {known})")
        try:
            return self.clusters[name]
        except KeyError:
            known = ", ".join(sorted(self.clusters)) or "none"
            raise ConfigError(
                f"unknown cluster '{name}': {source} defines [clusters.*]: {known}"
            ) from None

    def retention_for(self, cluster: str) -> RetentionConfig:
        """The cluster's own [clusters.NAME.retention], else the file's [retention]."""
        return self.clusters[cluster].retention or self.retention

    def streaming_directory(self, cluster: str) -> Path:
        """Where the cluster's ``pg_receivewal`` writes."""
        configured = self.clusters[cluster].streaming.directory
        return configured or self.agent.state_dir / "stream" / cluster

    def spool_directory(self, cluster: str) -> Path:
        """Where the agent acknowledges segments it pushed ahead (async archiving)."""
        return self.clusters[cluster].archive.spool / cluster

    def cluster_name(self, name: str | None, source: Path | str = "the configuration") -> str:
        """Resolve ``--cluster`` the way :meth:`cluster` does, returning the name."""
        if name is None:
            self.cluster(None, source)
            return next(iter(self.clusters))
        self.cluster(name, source)
        return name


def parse_config(raw: bytes, source: Path | str) -> Config:
    """Validate the TOML text ``raw``; every problem is reported in one ConfigError."""
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{source}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: TOML syntax error: {exc}") from None
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from None


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read and validate the configuration file (see :func:`config_path`)."""
    resolved = config_path(path)
    return parse_config(read_config_bytes(resolved), resolved)


#: Keys whose values are never repeated in an error message.
SECRET_KEYS = frozenset(("password", "password_hash", "routing_key", "token", "webhook_url", "dsn",
                         "secret", "secret_access_key"))


def _describe(exc: ValidationError, source: Path | str) -> str:
    lines = [f"{source}: invalid configuration:"]
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"]) or "(top level)"
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        elif error["type"] == "string_pattern_mismatch":
            message = "a name must be letters, digits, '_', '.' or '-' (at most 63)"
        elif error["type"] == "missing":
            message = "required key is missing"
        value = error.get("input")
        secret = bool(SECRET_KEYS & {str(part) for part in error["loc"]}) or (
            isinstance(value, str) and "@" in value.partition("://")[2].split("/", 1)[0])
        shown = "" if secret or error["type"] in ("missing", "extra_forbidden") or isinstance(
            value, dict
        ) else f" (got {value!r})"
        lines.append(f"  {key}: {message.removeprefix('Value error, ')}{shown}")
    return "\n".join(lines)


def plain(config: Config) -> dict[str, Any]:
    """The validated configuration as plain data (for the settings cache), with the WAL
    paths each cluster's wal-push and wal-get need resolved by :class:`Config` itself."""
    data = config.model_dump(mode="json")
    data["repository_url"] = config.repository.url
    data["repository_credentials"] = config.repository.credentials
    data["wal_paths"] = {
        name: {"spool": str(config.spool_directory(name)),
               "stream_dir": str(config.streaming_directory(name)) if cluster.streaming.enabled
               else None}
        for name, cluster in config.clusters.items()}
    return data
