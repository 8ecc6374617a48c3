"""Validations of the restored cluster: pg_amcheck, row counts and checksums, constraints
re-validated, roles, authentication rules and access privileges equal to the source's.

Each returns :class:`~engine.drill.model.Check` records (or table comparisons judged in
:mod:`engine.drill.model`); a validation that cannot run is a failed check, not a crash.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from engine.drill import state
from engine.drill.model import Check, TableComparison
from engine.drill.reference import Reference, Scope
from engine.drill.scratch import Scratch
from engine.drill.state import Table
from engine.errors import PostgresError
from engine.postgres import connection as postgres

_CONSTRAINT_KINDS = {"f": "foreign keys", "c": "checks", "u": "unique", "p": "primary keys",
                     "x": "exclusion"}


def connect(scratch: Scratch, user: str, database: str) -> Any:
    return postgres.connect(scratch.endpoint(user, database), f"restored copy ({database})", 10)


def error_text(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else exc.__class__.__name__


def _pattern(*parts: str) -> str:
    """A pg_amcheck pattern matching exactly these names (quoted: no wildcards, case kept)."""
    return ".".join('"' + p.replace('"', '""') + '"' for p in parts)


def amcheck(scratch: Scratch, user: str, scope: Scope, whole_databases: bool) -> Check:
    """pg_amcheck over heaps and B-tree indexes (heapallindexed: every heap tuple must be in
    every index) of the databases in scope, or only of the critical tables."""
    binary = scratch.bin_dir / "pg_amcheck" if scratch.bin_dir else Path("pg_amcheck")
    command = [str(binary), "-h", str(scratch.sockets), "-p", str(scratch.port), "-U", user,
               "--install-missing", "--heapallindexed"]
    if whole_databases:
        targets = [_pattern(db) for db in scope.databases]
        command += [arg for db in targets for arg in ("-d", db)]
        what = f"{len(targets)} databases"
    else:
        targets = [_pattern(db, *t) for db, tables in scope.tables.items() for t in tables]
        command += [arg for t in targets for arg in ("-t", t)]
        what = f"{len(targets)} tables and their indexes"
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode == 0:
        return Check("amcheck", True, f"pg_amcheck --heapallindexed: {what} without corruption")
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    shown = " | ".join(lines[:12]) + (f" | ... ({len(lines) - 12} more lines)" if len(lines) > 12 else "")
    verdict = "corruption found" if done.returncode == 2 else f"failed (exit {done.returncode})"
    return Check("amcheck", False, f"pg_amcheck {verdict} in {what}: {shown}")


def compare_tables(scratch: Scratch, user: str, reference: Reference, scope: Scope
                   ) -> list[TableComparison]:
    found = []
    for database, tables in scope.tables.items():
        comparisons = []
        for table in tables:
            rows, checksum = reference.tables[state.qualified(database, table)]
            comparisons.append(TableComparison(state.qualified(database, table), rows, checksum))
        try:
            with connect(scratch, user, database) as conn:
                state.pin_settings(conn)
                for table, item in zip(tables, comparisons, strict=True):
                    try:
                        item.restored_rows, item.restored_checksum = state.table_state(conn, table)
                    except psycopg.Error as exc:
                        item.error = error_text(exc)
        except PostgresError as exc:
            for item in comparisons:
                item.error = item.error or str(exc)
        found += comparisons
    return found


def constraints(scratch: Scratch, user: str, database: str, tables: list[Table] | None) -> Check:
    """Re-validate every constraint (of ``tables``, or of the whole database): drop it and add
    it back from its definition inside a savepoint, which makes PostgreSQL check every row,
    then roll back. NOT NULL columns are checked by a scan. NOT VALID constraints are not
    promised by the source either and are left alone."""
    name = f"constraints {database}"
    with connect(scratch, user, database) as conn:
        rows = conn.execute(
            "SELECT n.nspname, r.relname, c.conname, c.contype::text, pg_get_constraintdef(c.oid), "
            "c.convalidated FROM pg_constraint c JOIN pg_class r ON r.oid = c.conrelid "
            "JOIN pg_namespace n ON n.oid = r.relnamespace WHERE c.contype IN ('c','f','u','p','x') "
            "AND c.conislocal AND c.conparentid = 0 AND r.relkind IN ('r', 'p') "
            "AND r.relpersistence = 'p' AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "AND n.nspname !~ '^pg_(temp|toast)' ORDER BY 1, 2, 3").fetchall()
        if tables is not None:
            rows = [r for r in rows if (r[0], r[1]) in set(tables)]
        kinds: Counter[str] = Counter()
        failures, skipped = [], 0
        conn.autocommit = False
        try:
            for schema, table, conname, kind, definition, validated in rows:
                if not validated:
                    skipped += 1
                    continue
                target = sql.Identifier(schema, table)
                conn.execute("SAVEPOINT lifeboat_constraint")
                try:
                    conn.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {} CASCADE").format(
                        target, sql.Identifier(conname)))
                    conn.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                        target, sql.Identifier(conname), sql.SQL(definition)))  # type: ignore[arg-type]
                    kinds[kind] += 1
                except psycopg.Error as exc:
                    failures.append(f"{conname} on {schema}.{table}: {error_text(exc)}")
                conn.execute("ROLLBACK TO SAVEPOINT lifeboat_constraint")
            not_null = _not_null(conn, tables, failures)
        finally:
            conn.rollback()
            conn.autocommit = True
    counted = ", ".join(f"{_CONSTRAINT_KINDS[k]} {n}" for k, n in sorted(kinds.items())) or "none"
    detail = (f"{sum(kinds.values())} constraints re-validated ({counted}); NOT NULL on {not_null} "
              "columns checked" + (f"; {skipped} NOT VALID left alone" if skipped else ""))
    if failures:
        return Check(name, False, f"{len(failures)} constraints violated: " + "; ".join(failures[:10])
                     + f" ({detail})")
    return Check(name, True, detail)


def _not_null(conn: psycopg.Connection, tables: list[Table] | None, failures: list[str]) -> int:
    rows = conn.execute(
        "SELECT n.nspname, c.relname, array_agg(a.attname ORDER BY a.attnum) FROM pg_attribute a "
        "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE a.attnotnull AND a.attnum > 0 AND NOT a.attisdropped AND c.relkind = 'r' "
        "AND c.relpersistence = 'p' AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
        "AND n.nspname !~ '^pg_(temp|toast)' GROUP BY 1, 2 ORDER BY 1, 2").fetchall()
    checked = 0
    for schema, table, columns in rows:
        if tables is not None and (schema, table) not in tables:
            continue
        condition = sql.SQL(" OR ").join(sql.SQL("{} IS NULL").format(sql.Identifier(c)) for c in columns)
        conn.execute("SAVEPOINT lifeboat_not_null")
        try:
            nulls = conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE {}").format(
                sql.Identifier(schema, table), condition)).fetchone()
        except psycopg.Error as exc:
            failures.append(f"NOT NULL on {schema}.{table}: {error_text(exc)}")
            conn.execute("ROLLBACK TO SAVEPOINT lifeboat_not_null")
            continue
        checked += len(columns)
        if nulls and nulls[0]:
            failures.append(f"NOT NULL on {schema}.{table}: {nulls[0]} rows hold a null")
    return checked


def _differences(expected: dict[str, Any], found: dict[str, Any], what: str,
                 secret: frozenset[str] = frozenset()) -> list[str]:
    problems = []
    for key in sorted(set(expected) | set(found)):
        if key not in found:
            problems.append(f"{what} {key} missing")
        elif key not in expected:
            problems.append(f"{what} {key} not on the source")
        elif expected[key] != found[key]:
            if isinstance(expected[key], dict):
                changed = sorted(k for k in expected[key] if expected[key][k] != found[key].get(k))
                shown = ", ".join(k if k in secret else f"{k} {expected[key].get(k)!r} -> "
                                  f"{found[key].get(k)!r}" for k in changed)
                problems.append(f"{what} {key}: {shown} differ" if changed else f"{what} {key} differs")
            else:
                problems.append(f"{what} {key}: {expected[key]} -> {found[key]}")
    return problems


def _verdict(name: str, problems: list[str], ok: str) -> Check:
    if not problems:
        return Check(name, True, ok)
    return Check(name, False, f"{len(problems)} differences: " + "; ".join(problems[:10])
                 + (" ..." if len(problems) > 10 else ""))


def roles(scratch: Scratch, user: str, database: str, reference: Reference) -> Check:
    """Roles, their attributes, password verifiers, memberships and settings as on the source
    (a verifier is compared, never shown)."""
    if reference.roles is None:
        return Check("roles", False, f"the source's roles could not be read: {reference.unreadable['roles']} "
                                     "(the drill needs a superuser to compare them)")
    with connect(scratch, user, database) as conn:
        found = state.roles(conn)
    logins = sum(1 for r in found.values() if r["login"])
    return _verdict("roles", _differences(reference.roles, found, "role", frozenset({"password"})),
                    f"{len(found)} roles ({logins} can log in) with their attributes, password "
                    "verifiers and memberships equal to the source's")


def hba(scratch: Scratch, user: str, database: str, reference: Reference) -> Check:
    if reference.hba is None:
        return Check("authentication rules", False, "the source's pg_hba.conf rules could not be read: "
                     f"{reference.unreadable['authentication rules']}")
    with connect(scratch, user, database) as conn:
        found = state.hba_rules(conn)
    expected = dict(enumerate(reference.hba))
    return _verdict("authentication rules", _differences(expected, dict(enumerate(found)), "pg_hba rule"),
                    f"{len(found)} pg_hba.conf rules in force, equal to the source's")


def acls(scratch: Scratch, user: str, database: str, tables: list[Table], reference: Reference) -> Check:
    with connect(scratch, user, database) as conn:
        found = state.acls(conn, database, tables)
    return _verdict(f"privileges {database}",
                    _differences(reference.acls[database], found, "privileges of"),
                    f"access privileges of {len(found)} objects (database, schemas, tables, "
                    "columns, defaults) equal to the source's")
