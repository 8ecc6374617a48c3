"""Preview: restore to a point into a scratch cluster, read one table there, remove it.

The operator sees the data as it was at the point before committing to a restore. The
scratch cluster is the drills' (:mod:`engine.drill.scratch`: isolated, no archiving, on a
free loopback port, under ``[drills] scratch_dir``) and is removed whatever happens. The
table is named ``schema.table`` or ``db.schema.table``; its parts are passed to SQL only as
quoted identifiers. Values come back as PostgreSQL's text output, bounded in size.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.config.schema import Config
from engine.errors import PreviewError, UsageError
from engine.postgres.server import ReachedPoint
from engine.repository.storage import Storage
from engine.restore.recovery import RecoveryTarget

MAX_VALUE_CHARS = 500  # a longer value is cut, and ends with an ellipsis
MAX_COLUMNS = 64
_PART = re.compile(r'^(?:([A-Za-z_][A-Za-z0-9_$]{0,62})|"((?:[^"]|""){1,63})")$')

#: ``progress(done, total, phase)``
Progress = Callable[[float, float, str], None]


def split_table(table: str) -> tuple[str | None, str, str]:
    """(database or None, schema, table) of ``schema.table`` or ``db.schema.table``;
    unquoted parts are folded to lower case, as PostgreSQL folds them."""
    parts, rest = [], table.strip()
    while rest:
        match = re.match(r'^(?:[A-Za-z_][A-Za-z0-9_$]{0,62}|"(?:[^"]|""){1,63}")', rest)
        if match is None:
            raise UsageError(f"preview: '{table}' is not a table name (schema.table or db.schema.table, "
                             "each an identifier, optionally in double quotes)")
        found = _PART.match(match.group(0))
        assert found is not None
        parts.append(found.group(1).lower() if found.group(1) else found.group(2).replace('""', '"'))
        rest = rest[match.end():]
        if rest.startswith(".") and len(rest) > 1:
            rest = rest[1:]
        elif rest:
            raise UsageError(f"preview: '{table}' is not a table name (schema.table or db.schema.table)")
    if len(parts) == 2:
        return None, parts[0], parts[1]
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    raise UsageError(f"preview: '{table}' must be schema.table or db.schema.table")


@dataclass
class PreviewResult:
    cluster: str
    backup: str
    target: str
    database: str
    table: str
    reached: ReachedPoint | None = None
    row_count: int = 0
    columns: list[str] = field(default_factory=list)
    rows: list[list[str | None]] = field(default_factory=list)
    ordered_by: list[str] = field(default_factory=list)  # the primary key, when there is one
    truncated: bool = False  # a value or the column list was cut
    scratch: str = ""
    scratch_removed: bool = False
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        point = None if self.reached is None else {
            "lsn": self.reached.lsn, "time": self.reached.time, "timeline": self.reached.timeline,
            "state": self.reached.state}
        return {"point_reached": point, "table": self.table, "database": self.database,
                "row_count": self.row_count, "columns": self.columns, "rows": self.rows,
                "ordered_by": self.ordered_by, "truncated": self.truncated, "backup": self.backup,
                "target": self.target, "scratch": self.scratch, "scratch_removed": self.scratch_removed,
                "seconds": self.seconds}


def scratch_name(now: float | None = None) -> str:
    from engine.drill.scratch import PREFIX

    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    return f"{PREFIX}preview-{stamp}-{secrets.token_hex(2)}"


def run(config: Config, cluster: str, storage: Storage, config_path: Path, target: RecoveryTarget,
        table: str, rows: int = 20, backup: str | None = None, timeout: float | None = None,
        progress: Progress | None = None) -> PreviewResult:
    """Restore to ``target`` into a scratch cluster, read ``table`` (its row count and first
    ``rows`` rows, by primary key when it has one), remove the scratch cluster (also when
    anything fails: the error is raised after)."""
    from engine.directories import check_writable
    from engine.drill import scratch
    from engine.restore import physical

    database, schema, name = split_table(table)
    settings = config.clusters[cluster]
    database = database or settings.database
    report = progress or (lambda done, total, phase: None)
    started = time.monotonic()
    check_writable(settings.drills.scratch_dir, "preview scratch clusters")
    chosen = physical.choose(storage, cluster, physical.RestoreOptions(Path("/"), target=target,
                                                                       backup_id=backup))
    result = PreviewResult(cluster, chosen.id, target.describe(), database, f"{schema}.{name}")
    place = scratch.create(config, cluster, scratch_name())
    result.scratch = str(place.directory)
    state = {"phase": physical.PHASE_FILES, "done": 0.0, "total": float(chosen.size_bytes)}

    def bytes_done(done: int, total: int) -> None:
        state.update(done=float(done), total=float(total))
        report(done, total, str(state["phase"]))

    def phase(name: str) -> None:
        state["phase"] = name
        report(float(state["done"]), float(state["total"]), name)

    try:
        _restored, result.reached = scratch.restore_into(
            config, cluster, storage, config_path, place, chosen.id, None,
            timeout or settings.drills.full_max_duration, bytes_done,
            RecoveryTarget(target.kind, target.value, target.exclusive, "promote", target.timeline),
            phase)
        phase(f"reading {database}.{schema}.{name}")
        _read(place, settings.user, database, schema, name, rows, result)
    finally:
        phase("removing the scratch cluster")
        problem = scratch.remove(place)
        result.scratch_removed = problem is None
    if problem:
        raise PreviewError(f"the preview read {result.table}, but its scratch cluster was not removed: "
                           f"{problem}")
    result.seconds = round(time.monotonic() - started, 3)
    return result


def _text(value: str | None) -> tuple[str | None, bool]:
    if value is None or len(value) <= MAX_VALUE_CHARS:
        return value, False
    return value[:MAX_VALUE_CHARS - 1] + "…", True


def _read(place: Any, user: str, database: str, schema: str, name: str, rows: int,
          result: PreviewResult) -> None:
    from psycopg import sql

    from engine.drill import checks

    with checks.connect(place, user, database) as conn:
        found = conn.execute(
            "SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f')",
            (schema, name)).fetchone()
        if found is None:
            point = result.reached.time or result.reached.lsn if result.reached else "that point"
            raise PreviewError(f"table {schema}.{name} does not exist in database '{database}' at "
                               f"{point} (restored from backup {result.backup}, target {result.target})")
        oid = found[0]
        columns = [r[0] for r in conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped "
            "ORDER BY attnum", (oid,)).fetchall()]
        key = [r[0] for r in conn.execute(
            "SELECT a.attname FROM pg_index i, unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) "
            "JOIN pg_attribute a ON a.attnum = k.attnum WHERE i.indrelid = %s AND i.indisprimary "
            "AND a.attrelid = i.indrelid ORDER BY k.ord", (oid,)).fetchall()]
        relation = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(name))
        result.row_count = int(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(relation)
                                            ).fetchone()[0])
        shown = columns[:MAX_COLUMNS]
        result.truncated = len(columns) > len(shown)
        result.columns, result.ordered_by = shown, key
        if not shown:
            return
        select = sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in shown)
        # qualified: a bare name in ORDER BY is the output column, here the ::text of it (1, 10, 2)
        order = sql.SQL(" ORDER BY {}").format(sql.SQL(", ").join(
            sql.SQL("{}.{}").format(relation, sql.Identifier(c)) for c in key)) if key else sql.SQL("")
        query = sql.SQL("SELECT {} FROM {}{} LIMIT {}").format(select, relation, order, sql.Literal(rows))
        for row in conn.execute(query).fetchall():
            values = [_text(v) for v in row]
            result.rows.append([v for v, _ in values])
            result.truncated = result.truncated or any(cut for _, cut in values)
