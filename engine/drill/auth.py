"""Authentication and authorization on the restored cluster.

Authentication: each role that can log in opens a real connection to the restored
cluster over TCP (127.0.0.1), without a password. A connection that succeeds proves the
whole path; a server that asks for a password has the role, its LOGIN right and the
pg_hba.conf rule in place (the password verifier itself is compared with the source's by
the ``roles`` check: every password that works there works here). A rule that rejects
the role from this host, or needs peer, ident or certificate authentication, cannot be
exercised from here and is reported as not tested. Anything else (role missing, not
permitted to log in, connection limit ...) is a failure.

Authorization: as each ordinary login role (``SET ROLE``), every compared table is asked
for SELECT, INSERT, UPDATE and DELETE through EXPLAIN, which checks privileges as the
statement would but runs nothing. What is allowed and denied must be what the source
granted at the restore point.
"""

from __future__ import annotations

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from engine.drill import state
from engine.drill.checks import connect, error_text
from engine.drill.model import Check
from engine.drill.reference import Reference, Scope
from engine.drill.scratch import Scratch
from engine.postgres import connection as postgres

#: At most this many privilege statements per drill (roles x tables x 4 grows fast).
MAX_PRIVILEGE_PROBES = 4000
_NOT_TESTABLE = ("no pg_hba.conf entry", "peer authentication failed", "ident authentication failed",
                 "certificate", "gssapi", "sspi", "ldap", "radius", "pam authentication failed")
_PASSWORD_ASKED = ("no password supplied", "password authentication failed")


def logins(scratch: Scratch, user: str, database: str, reference: Reference) -> list[Check]:
    checks = []
    with connect(scratch, user, database) as conn:
        targets = {role: conn.execute(
            "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate AND "
            "has_database_privilege(%s, datname, 'CONNECT') ORDER BY datname <> %s, datname LIMIT 1",
            (role, database)).fetchone() for role, _super in reference.logins}
    for role, _super in reference.logins:
        target = targets[role]
        name = f"login {role}"
        if target is None:
            checks.append(Check(name, True, "not tested: no database grants it CONNECT (privileges are "
                                            "compared with the source's)"))
            continue
        try:
            with psycopg.connect(host="127.0.0.1", port=scratch.port, user=role, dbname=target[0],
                                 connect_timeout=5, autocommit=True,
                                 application_name=f"{postgres.APPLICATION_NAME} drill") as conn:
                current = conn.execute("SELECT current_user").fetchone()
            ok = current is not None and current[0] == role
            checks.append(Check(name, ok, f"authenticated over TCP into database {target[0]}"
                                if ok else f"connected but current_user is {current}"))
        except psycopg.OperationalError as exc:
            message = error_text(exc)
            lowered = str(exc).lower()
            if any(text in lowered for text in _PASSWORD_ASKED):
                checks.append(Check(name, True, "the server asks for its password (role, LOGIN and "
                                                "pg_hba.conf rule in place)"))
            elif any(text in lowered for text in _NOT_TESTABLE):
                checks.append(Check(name, True, f"not tested from 127.0.0.1: {message}"))
            else:
                checks.append(Check(name, False, f"cannot log in: {message}"))
    return checks


def _statements(table: state.Table, first_column: str | None) -> dict[str, sql.Composable]:
    relation = state.relation(table)
    found = {"SELECT": sql.SQL("EXPLAIN SELECT * FROM {}").format(relation),
             "INSERT": sql.SQL("EXPLAIN INSERT INTO {} DEFAULT VALUES").format(relation),
             "DELETE": sql.SQL("EXPLAIN DELETE FROM {} WHERE false").format(relation)}
    if first_column is not None:
        found["UPDATE"] = sql.SQL("EXPLAIN UPDATE {} SET {} = DEFAULT WHERE false").format(
            relation, sql.Identifier(first_column))
    return found


def authorization(scratch: Scratch, user: str, reference: Reference, scope: Scope) -> list[Check]:
    """One check per ordinary login role: its privileges behave as the source granted them."""
    roles = [role for role, superuser in reference.logins if not superuser]
    budget = MAX_PRIVILEGE_PROBES
    results: dict[str, list[str]] = {role: [] for role in roles}
    counts = dict.fromkeys(roles, 0)
    skipped = 0
    for database, tables in scope.tables.items():
        with connect(scratch, user, database) as conn:
            columns = {t: conn.execute(
                "SELECT a.attname FROM pg_attribute a WHERE a.attrelid = %s::regclass AND a.attnum > 0 "
                "AND NOT a.attisdropped ORDER BY a.attnum LIMIT 1", (state.quote(t),)).fetchone()
                for t in tables}
            for role in roles:
                conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
                try:
                    for table in tables:
                        column = columns[table]
                        statements = _statements(table, column[0] if column else None)
                        if budget < len(statements):
                            skipped += 1
                            continue
                        budget -= len(statements)
                        expected = reference.privileges.get(f"{role}|{state.qualified(database, table)}", [])
                        for privilege, statement in statements.items():
                            counts[role] += 1
                            problem = _probe(conn, statement, privilege in expected)
                            if problem:
                                results[role].append(f"{privilege} on {state.qualified(database, table)}: "
                                                     f"{problem}")
                finally:
                    conn.execute("RESET ROLE")
    checks = []
    for role in roles:
        problems = results[role]
        detail = f"{counts[role]} privilege checks as {role} (SET ROLE) behave as granted on the source"
        if skipped:
            detail += f"; {skipped} role/table pairs beyond {MAX_PRIVILEGE_PROBES} statements not exercised"
        checks.append(Check(f"authorization {role}", not problems,
                            detail if not problems else f"{len(problems)} of {counts[role]} differ: "
                            + "; ".join(problems[:10])))
    return checks


def _probe(conn: psycopg.Connection, statement: sql.Composable, allowed: bool) -> str | None:
    """None when the statement is allowed exactly when it should be, else what happened."""
    try:
        conn.execute(statement)
    except pg_errors.InsufficientPrivilege as exc:
        return None if not allowed else f"denied, but granted on the source ({error_text(exc)})"
    except psycopg.Error as exc:
        return f"failed: {error_text(exc)}"
    return None if allowed else "allowed, but not granted on the source"
