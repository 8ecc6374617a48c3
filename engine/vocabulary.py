"""The words Lifeboat's commands, jobs, configuration and metrics share: each defined once.

Every place that accepts or lists one of these (argparse choices, pydantic fields, metric
label values, the console's pickers) imports it from here, so a new backup type or tier is
added in one line. A ``Literal`` type and its values as a tuple go together.
"""

from __future__ import annotations

from typing import Literal, get_args

BackupType = Literal["full", "diff", "incr"]
BACKUP_TYPES: tuple[BackupType, ...] = get_args(BackupType)
#: The letter a backup id ends with (``20261203-101500F``), as pgBackRest users know it.
BACKUP_TYPE_LETTER: dict[str, str] = {"full": "F", "diff": "D", "incr": "I"}

TargetKind = Literal["latest", "immediate", "time", "xid", "lsn", "name"]
TARGET_KINDS: tuple[TargetKind, ...] = get_args(TargetKind)
#: Target kinds that need no value (the end of the archive, or consistency).
TARGETS_WITHOUT_VALUE: tuple[TargetKind, ...] = ("latest", "immediate")
#: Target kinds given a value on the command line (``--target-time`` ...).
TARGETS_WITH_VALUE: tuple[TargetKind, ...] = ("time", "xid", "lsn", "name")

TargetAction = Literal["promote", "pause", "shutdown"]
TARGET_ACTIONS: tuple[TargetAction, ...] = get_args(TargetAction)

ArchiveMode = Literal["preserve", "off"]  # what a restored server does with archive_mode
ARCHIVE_MODES: tuple[ArchiveMode, ...] = get_args(ArchiveMode)

JobKind = Literal["backup", "restore", "verify", "drill", "expire"]
JOB_KINDS: tuple[JobKind, ...] = get_args(JobKind)
#: What a schedule may run (a restore is only ever asked for).
ScheduleKind = Literal["backup", "verify", "expire", "drill"]
SCHEDULE_KINDS: tuple[ScheduleKind, ...] = get_args(ScheduleKind)

DrillKind = Literal["full", "partial"]
DRILL_KINDS: tuple[DrillKind, ...] = get_args(DrillKind)

Tier = Literal["hot", "warm", "cold"]
TIERS: tuple[Tier, ...] = get_args(Tier)
#: Where a backup is until tiering moves it (every backup, until tiers are configured).
FIRST_TIER: Tier = "hot"
