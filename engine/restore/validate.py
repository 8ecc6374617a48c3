"""What a started restore checks on the restored server once recovery has ended: the row
count of every table of the cluster's database and pg_amcheck (heap and B-tree, every heap
tuple in every index) over that database.

A copy (a new data directory) gets the amcheck extension installed if it lacks it, as a
drill's scratch cluster does; a restore in place is the production cluster again, so there
pg_amcheck runs only where the extension already is. A validation that cannot run is a
failed check with its reason; it never fails the restore itself, which has already put the
data back: the result says what was found.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

MAX_TABLES = 500  # counted exactly; the rest are named as not counted


def run(pgdata: Path, bin_dir: Path | None, user: str, database: str, in_place: bool) -> dict[str, Any]:
    """{"passed", "checks": [{name, passed, detail}], "row_counts": {schema.table: rows}}."""
    from psycopg import sql

    from engine.postgres import connection as postgres
    from engine.postgres.server import read_pid_file

    pid = read_pid_file(pgdata)
    if pid is None or not pid.port:
        return _verdict([{"name": "connect", "passed": False,
                          "detail": f"no running server in {pgdata}"}], {})
    host = pid.socket_dir or (pid.listen if pid.listen not in ("", "*") else "127.0.0.1")
    checks: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    try:
        with postgres.connect(postgres.Endpoint(host, pid.port, user, database), "restored", 10) as conn:
            tables = conn.execute(
                "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind IN ('r', 'm') "  # partitions are counted, not their parents as well
                "AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
                "AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%' ORDER BY 1, 2"
            ).fetchall()
            for schema, name in tables[:MAX_TABLES]:
                relation = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(name))
                counts[f"{schema}.{name}"] = int(conn.execute(
                    sql.SQL("SELECT count(*) FROM {}").format(relation)).fetchone()[0])
            installed = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'amcheck'").fetchone()
    except Exception as exc:  # PostgresError, psycopg's: a check that cannot run is a failed check
        return _verdict([{"name": "row_counts", "passed": False,
                          "detail": f"the restored server could not be read: {_first_line(exc)}"}], counts)
    more = f"; {len(tables) - MAX_TABLES} more tables not counted" if len(tables) > MAX_TABLES else ""
    tables_text = f"{len(counts)} {'table' if len(counts) == 1 else 'tables'}"
    checks.append({"name": "row_counts", "passed": True,
                   "detail": f"{tables_text} in {database}, {sum(counts.values()):,} rows{more}"})
    if in_place and not installed:
        checks.append({"name": "amcheck", "passed": True,
                       "detail": f"skipped: the amcheck extension is not installed in {database}, and a "
                                 "restore in place does not install it"})
    else:
        checks.append(_amcheck(bin_dir, host, pid.port, user, database, install=not installed))
    return _verdict(checks, counts)


def _amcheck(bin_dir: Path | None, host: str, port: int, user: str, database: str,
             install: bool) -> dict[str, Any]:
    binary = bin_dir / "pg_amcheck" if bin_dir else Path("pg_amcheck")
    command = [str(binary), "-h", host, "-p", str(port), "-U", user, "--heapallindexed", "-d", database]
    if install:
        command.insert(-2, "--install-missing")
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"name": "amcheck", "passed": False, "detail": f"pg_amcheck could not run: {exc}"}
    if done.returncode == 0:
        return {"name": "amcheck", "passed": True,
                "detail": f"pg_amcheck --heapallindexed: {database} without corruption"}
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    verdict = "corruption found" if done.returncode == 2 else f"failed (exit {done.returncode})"
    return {"name": "amcheck", "passed": False,
            "detail": f"pg_amcheck {verdict} in {database}: " + " | ".join(lines[:12])}


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else exc.__class__.__name__


def _verdict(checks: list[dict[str, Any]], counts: dict[str, int]) -> dict[str, Any]:
    return {"passed": all(c["passed"] for c in checks), "checks": checks, "row_counts": counts}
