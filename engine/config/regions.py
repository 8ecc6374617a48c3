"""``[repository.copies.REGION]``: a copy of the repository in another region, what it keeps,
how it is validated, and how fast WAL and backups are shipped to it.

::

    [repository.copies.us-west]
    url = "s3://dr-bucket/lifeboat?endpoint=https://s3.us-west-2.amazonaws.com&region=us-west-2"
    # path = "/mnt/dr/lifeboat"    # or a posix directory (exactly one of path and url)
    interval = "60s"               # full copy rounds: backups, WAL, restore points
    retention = "primary"          # keep what the primary keeps (default), or a table below
    validate_interval = "1h"       # compare with the primary, check presence, re-hash a sample
    validate_sample = 8            # objects re-hashed per validation: a count, or "5%"
    bandwidth_limit = "50MB/s"     # copies and WAL shipping to this region together
    wal_interval = "5s"            # WAL-only shipping rounds between full rounds
    max_delay = "30s"              # WAL older than this missing from the copy: alerted on

    [repository.copies.eu-central.retention]   # its own policy: the keys of [retention]
    full = 4
    max_recovery_window = "30d"
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from engine.config.retention import RetentionConfig
from engine.config.units import parse_duration, parse_size

Duration = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]
RegionName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,63}$")]


def parse_rate(value: object) -> int:
    """Bytes per second of ``"50MB/s"``, ``"8MiB/s"`` or a bare number of bytes per second."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("must be a rate such as '50MB/s'")
    if isinstance(value, str):
        text = value.strip()
        if text.lower().endswith("/s"):
            text = text[:-2]
        try:
            value = parse_size(text)
        except ValueError:
            raise ValueError(f"'{value}' is not a rate (use e.g. '50MB/s', '8MiB/s')") from None
    if value < 1024:
        raise ValueError("must be at least 1KiB/s")
    return int(value)


def parse_sample(value: object) -> tuple[str, float]:
    """``8`` objects, or ``"5%"`` of them."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("must be a count of objects (e.g. 8) or a share (e.g. '5%')")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a count cannot be negative")
        return ("count", float(value))
    text = value.strip()
    if not text.endswith("%"):
        raise ValueError("a share is written with '%' (e.g. '5%'); a count is a bare number")
    try:
        share = float(text[:-1]) / 100.0
    except ValueError:
        raise ValueError(f"'{value}' is not a share (e.g. '5%')") from None
    if not 0 < share <= 1:
        raise ValueError("a share must be more than 0% and at most 100%")
    return ("share", share)


Rate = Annotated[int, BeforeValidator(parse_rate)]
Sample = Annotated[tuple[Literal["count", "share"], float], BeforeValidator(parse_sample)]


def check_url(url: str) -> str:
    """An absolute path, ``file:///path`` or ``s3://BUCKET[/PREFIX][?OPTIONS]``, checked as a
    tier's storage is (:func:`engine.config.tiers._check_url`: one check of a storage URL); a
    copy may not be in an archive storage class, which nothing could restore from without a
    thaw of every object first. The other S3 options are checked when the copy is opened."""
    from engine.config.tiers import _check_url
    from engine.repository.storage.classes import ARCHIVE_CLASSES, url_storage_class

    checked = _check_url(url)
    storage_class = url_storage_class(url)
    if storage_class in ARCHIVE_CLASSES:
        raise ValueError(f"'{url}': a copy in the {storage_class} storage class could not be restored "
                         "from without thawing every object first: use a readable class (STANDARD_IA)")
    return checked


class CopyConfig(BaseModel):
    """A copy of the repository in another region, kept up to date by the agent."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    path: Path | None = None  # a posix directory (another site's mount) ...
    url: str | None = None  # ... or a URL (s3://...; an absolute path works too)
    interval: Duration = 60.0  # how often the agent brings the copy up to date
    retention: Literal["primary"] | RetentionConfig = "primary"
    validate_interval: Duration = 3600.0  # 0: the agent never validates it
    validate_sample: Sample = ("count", 8.0)
    bandwidth_limit: Rate | None = None  # bytes per second into the copy (None: unlimited)
    wal_interval: Duration = 5.0  # WAL-only shipping rounds (0: only with the full rounds)
    max_delay: Duration = 30.0  # how old archived WAL the copy lacks may get

    @model_validator(mode="after")
    def _one_place(self) -> CopyConfig:
        if (self.path is None) == (self.url is None):
            raise ValueError("give exactly one of path (a directory) and url (s3://... or a path)")
        if self.path is not None:
            if not self.path.is_absolute():
                raise ValueError("path: must be an absolute path")
            object.__setattr__(self, "url", str(self.path))
        else:
            assert self.url is not None
            url = check_url(self.url)
            object.__setattr__(self, "url", url)
            if url.startswith("/"):
                object.__setattr__(self, "path", Path(url))
        if self.max_delay <= 0:
            raise ValueError("max_delay: must be more than 0s")
        return self
