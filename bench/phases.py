"""Where a backup's wall clock went, from what each tool records about it: to tell a slow
checkpoint, copy or wait for the WAL archive from the tool's own start-up and wrap-up."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def lifeboat_phases(manifest: Path, started: float, seconds: float) -> str:
    """From the manifest's summary: ``started_at`` (before pg_backup_start's checkpoint),
    ``stopped_at`` (pg_backup_stop, after the copy), ``finished_at`` (the WAL archived);
    ``started`` is the wall-clock time the harness launched the command."""
    try:
        with open(manifest, "rb") as handle:
            handle.readline()
            summary = json.loads(handle.readline())
        begin, stop, end = (_epoch(summary[k]) for k in ("started_at", "stopped_at", "finished_at"))
    except (OSError, ValueError, KeyError):
        return ""
    return (f"start-up {begin - started:.2f} s, checkpoint + copy {stop - begin:.2f} s, "
            f"stop + WAL archived {end - stop:.2f} s, manifest + exit {started + seconds - end:.2f} s")


def pgbackrest_phases(manifest: Path, started: float, seconds: float) -> str:
    """From backup.manifest's [backup] timestamps (whole seconds): start, copy start, stop."""
    try:
        text = manifest.read_text()
    except OSError:
        return ""
    found = dict(re.findall(r"^backup-timestamp-(start|copy-start|stop)=(\d+)$", text, re.M))
    if len(found) != 3:
        return ""
    begin, copy, stop = (int(found[k]) for k in ("start", "copy-start", "stop"))
    launched, ended = int(started), int(started + seconds)  # the same whole-second clock
    return (f"start-up {begin - launched} s, checkpoint {copy - begin} s, copy + stop + WAL "
            f"archived {stop - copy} s, wrap-up {ended - stop} s (whole seconds)")
