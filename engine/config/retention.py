"""What ``expire`` keeps: ``[retention]``, ``[clusters.NAME.retention]`` and a copy's own
``[repository.copies.REGION.retention]`` are all this one section."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from engine.config.units import parse_duration

Duration = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]


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


class RetentionConfig(BaseModel):
    """What ``expire`` keeps. A backup type without a rule is kept forever; the newest
    backup always is, and so is the newest one old enough to anchor the recovery window."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    full: KeepRule | None = None
    diff: KeepRule | None = None
    incr: KeepRule | None = None
    max_recovery_window: Duration | None = None
    expire_after_backup: bool = True  # a copy's: expire after each copy round
    gc_grace: Duration = 3600.0

    def rules(self) -> dict[str, tuple[str, float]]:
        return {t: r for t, r in (("full", self.full), ("diff", self.diff), ("incr", self.incr))
                if r is not None}

    @property
    def configured(self) -> bool:
        return bool(self.rules()) or self.max_recovery_window is not None
