"""CRUD on a critical table of the restored cluster, and its indexes' health.

In one transaction that is rolled back, each step named when it fails: read a row;
update it in place (its first settable column set to itself, firing triggers and index
maintenance); delete it and insert it back in one statement (foreign keys that point at
it see it return); insert a copy, whose columns with defaults (serial, identity) take
new values. A copy that a unique key without a default refuses is noted, not failed:
such a table cannot take one.
"""

from __future__ import annotations

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from engine.drill import state
from engine.drill.checks import connect, error_text
from engine.drill.model import Check
from engine.drill.scratch import Scratch
from engine.drill.state import Table


def _columns(conn: psycopg.Connection, table: Table) -> tuple[list[str], list[str], list[str]]:
    """Columns that can be inserted, those that an UPDATE can set (not GENERATED ALWAYS AS
    IDENTITY), and those without a default or identity (what a copy must carry)."""
    rows = conn.execute(
        "SELECT attname, attidentity = 'a', atthasdef OR attidentity <> '' FROM pg_attribute "
        "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped AND attgenerated = '' "
        "ORDER BY attnum", (state.quote(table),)).fetchall()
    return [r[0] for r in rows], [r[0] for r in rows if not r[1]], [r[0] for r in rows if not r[2]]


def _names(columns: list[str]) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(c) for c in columns)


def crud(scratch: Scratch, user: str, database: str, table: Table) -> Check:
    name = f"crud {state.qualified(database, table)}"
    relation = state.relation(table)
    with connect(scratch, user, database) as conn:
        writable, updatable, plain = _columns(conn, table)
        if not updatable:
            return Check(name, False, "the table has no column that an UPDATE can set")
        conn.autocommit = False
        step = "read a row"
        done: list[str] = []
        try:
            conn.execute("SET LOCAL statement_timeout = '5min'")
            row = conn.execute(sql.SQL("SELECT ctid::text, t::text FROM {} AS t LIMIT 1").format(
                relation)).fetchone()
            if row is None:
                return Check(name, False, "the table is empty: no row to read, update or delete")
            done.append(step)
            step = "update it in place"
            found = _step(conn, sql.SQL("UPDATE {} AS t SET {} = t.{} WHERE ctid = %s::tid "
                                        "RETURNING ctid::text, t::text").format(
                relation, sql.Identifier(updatable[0]), sql.Identifier(updatable[0])), (row[0],))
            if found is None or found[1] != row[1]:
                return Check(name, False, f"{step}: the row read back differs ({'; '.join(done)} done)")
            done.append(step)
            step = "delete it and insert it back"
            found = _step(conn, sql.SQL("WITH gone AS (DELETE FROM {} WHERE ctid = %s::tid RETURNING {}) "
                                        "INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE SELECT {} FROM gone "
                                        "RETURNING ctid::text").format(
                relation, _names(writable), relation, _names(writable), _names(writable)), (found[0],))
            if found is None:
                return Check(name, False, f"{step}: no row came back ({'; '.join(done)} done)")
            done.append(step)
            step = "insert a copy"
            copy = _copy(conn, relation, plain, found[0])
            done.append(copy)
        except psycopg.Error as exc:
            return Check(name, False, f"{step} failed: {error_text(exc)}"
                         + (f" (done: {'; '.join(done)})" if done else ""))
        finally:
            conn.rollback()
            conn.autocommit = True
    return Check(name, True, "; ".join(done) + " (rolled back)")


def _step(conn: psycopg.Connection, statement: sql.Composable, params: tuple[str, ...]
          ) -> tuple[object, ...] | None:
    return conn.execute(statement, params).fetchone()


def _copy(conn: psycopg.Connection, relation: sql.Composable, plain: list[str], ctid: str) -> str:
    conn.execute("SAVEPOINT lifeboat_copy")
    try:
        if plain:
            conn.execute(sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} WHERE ctid = %s::tid").format(
                relation, _names(plain), _names(plain), relation), (ctid,))
        else:
            conn.execute(sql.SQL("INSERT INTO {} DEFAULT VALUES").format(relation))
    except pg_errors.UniqueViolation as exc:
        conn.execute("ROLLBACK TO SAVEPOINT lifeboat_copy")
        return f"a copy cannot be inserted ({error_text(exc)})"
    return "insert a copy"


def indexes(scratch: Scratch, user: str, database: str, table: Table) -> Check:
    """Every index of the table valid, ready and live (pg_amcheck checks their content)."""
    name = f"indexes {state.qualified(database, table)}"
    with connect(scratch, user, database) as conn:
        rows = conn.execute(
            "SELECT i.indexrelid::regclass::text, i.indisvalid AND i.indisready AND i.indislive "
            "FROM pg_index i WHERE i.indrelid = %s::regclass ORDER BY 1", (state.quote(table),)).fetchall()
    broken = [r[0] for r in rows if not r[1]]
    if broken:
        return Check(name, False, f"indexes not valid: {', '.join(broken)}")
    return Check(name, True, f"{len(rows)} indexes valid and ready")
