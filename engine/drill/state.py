"""What a drill compares, read the same way on the source (inside the reference snapshot)
and on the restored cluster: per-table row counts and checksums, roles, client
authentication rules, access privileges.

A table's checksum is the sum, as a numeric, of the first 64 bits of the MD5 of each
row's text: independent of row order (a restored heap need not keep it) yet sensitive
to any changed, missing or extra row. Row text depends on a few settings (time zone,
date and float output ...), so every session pins them first (:data:`SESSION_SETTINGS`).
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

SESSION_SETTINGS = {
    "TimeZone": "UTC", "DateStyle": "ISO, YMD", "IntervalStyle": "postgres",
    "extra_float_digits": "3", "bytea_output": "hex", "lc_monetary": "C",
    "idle_in_transaction_session_timeout": "0", "statement_timeout": "0",
}
PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")
_SYSTEM_SCHEMAS = "('pg_catalog', 'information_schema', 'pg_toast')"

Table = tuple[str, str]  # (schema, name)


def pin_settings(conn: psycopg.Connection) -> None:
    for name, setting in SESSION_SETTINGS.items():
        conn.execute("SELECT set_config(%s, %s, false)", (name, setting))


def qualified(database: str, table: Table) -> str:
    return f"{database}.{table[0]}.{table[1]}"


def relation(table: Table) -> sql.Composable:
    return sql.Identifier(*table)


def databases(conn: psycopg.Connection) -> list[str]:
    """Every database that accepts connections, templates aside."""
    rows = conn.execute("SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate "
                        "ORDER BY datname").fetchall()
    return [r[0] for r in rows]


def user_tables(conn: psycopg.Connection) -> list[Table]:
    """Ordinary permanent tables outside the system schemas (leaf partitions included, their
    partitioned parents not, so each row is counted once). Unlogged and temporary tables
    are left out: recovery empties them by design."""
    rows = conn.execute(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        f"WHERE c.relkind = 'r' AND c.relpersistence = 'p' AND n.nspname NOT IN {_SYSTEM_SCHEMAS} "
        "AND n.nspname !~ '^pg_(temp|toast_temp)_' "
        "ORDER BY 1, 2").fetchall()
    return [(r[0], r[1]) for r in rows]


def unlogged_tables(conn: psycopg.Connection) -> list[Table]:
    rows = conn.execute(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind = 'r' AND c.relpersistence = 'u' ORDER BY 1, 2").fetchall()
    return [(r[0], r[1]) for r in rows]


def existing(conn: psycopg.Connection, tables: list[Table]) -> list[Table]:
    """Those of ``tables`` that exist as tables."""
    found = []
    for table in tables:
        kind = conn.execute("SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON "
                            "n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
                            table).fetchone()
        if kind is not None and kind[0] in ("r", "p"):
            found.append(table)
    return found


def table_state(conn: psycopg.Connection, table: Table) -> tuple[int, str]:
    """(row count, checksum) of one table."""
    query = sql.SQL("SELECT count(*), coalesce(sum(('x' || left(md5(t::text), 16))::bit(64)::bigint), 0)"
                    "::text FROM {} AS t").format(relation(table))
    rows, checksum = conn.execute(query).fetchone()  # type: ignore[misc]
    return int(rows), str(checksum)


def roles(conn: psycopg.Connection) -> dict[str, dict[str, Any]]:
    """Every role but the built-in ones, with its attributes, password verifier, memberships
    and per-role settings (needs a superuser: pg_authid is not public)."""
    rows = conn.execute(
        "SELECT a.rolname, a.rolsuper, a.rolinherit, a.rolcreaterole, a.rolcreatedb, a.rolcanlogin, "
        "a.rolreplication, a.rolbypassrls, a.rolconnlimit, a.rolpassword, a.rolvaliduntil::text, "
        "ARRAY(SELECT g.rolname || CASE WHEN m.admin_option THEN ' (admin)' ELSE '' END "
        "      FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
        "      WHERE m.member = a.oid ORDER BY 1), "
        "ARRAY(SELECT coalesce(d.datname, '*') || ': ' || array_to_string(s.setconfig, ', ') "
        "      FROM pg_db_role_setting s LEFT JOIN pg_database d ON d.oid = s.setdatabase "
        "      WHERE s.setrole = a.oid ORDER BY 1) "
        "FROM pg_authid a WHERE a.rolname !~ '^pg_' ORDER BY a.rolname").fetchall()
    keys = ("superuser", "inherit", "createrole", "createdb", "login", "replication", "bypassrls",
            "connection_limit", "password", "valid_until", "member_of", "settings")
    return {r[0]: dict(zip(keys, [*r[1:11], list(r[11]), list(r[12])], strict=True)) for r in rows}


def hba_rules(conn: psycopg.Connection) -> list[str]:
    """The client authentication rules in force, as the server parsed them."""
    rows = conn.execute("SELECT (to_jsonb(r) - 'line_number' - 'rule_number' - 'file_name')::text "
                        "FROM pg_hba_file_rules r ORDER BY line_number").fetchall()
    return [r[0] for r in rows]


def acls(conn: psycopg.Connection, database: str, tables: list[Table]) -> dict[str, str]:
    """Access privileges: the database's, its user schemas', the tables' and their columns',
    and default privileges. Keys name the object; values are aclitem arrays as text."""
    found: dict[str, str] = {}
    row = conn.execute("SELECT datacl::text FROM pg_database WHERE datname = %s", (database,)).fetchone()
    found[f"database {database}"] = str(row[0]) if row else "(missing)"
    for name, acl in conn.execute(
            f"SELECT nspname, nspacl::text FROM pg_namespace WHERE nspname NOT IN {_SYSTEM_SCHEMAS} "
            "AND nspname !~ '^pg_(temp|toast_temp)_' ORDER BY 1").fetchall():
        found[f"schema {database}.{name}"] = str(acl)
    for table in tables:
        name = qualified(database, table)
        row = conn.execute("SELECT c.relacl::text FROM pg_class c JOIN pg_namespace n ON "
                           "n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
                           table).fetchone()
        found[f"table {name}"] = str(row[0]) if row else "(missing)"
        for column, acl in conn.execute(
                "SELECT a.attname, a.attacl::text FROM pg_attribute a JOIN pg_class c ON "
                "c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE "
                "n.nspname = %s AND c.relname = %s AND a.attacl IS NOT NULL ORDER BY 1",
                table).fetchall():
            found[f"column {name}.{column}"] = str(acl)
    for role, schema, kind, acl in conn.execute(
            "SELECT pg_get_userbyid(d.defaclrole), coalesce(n.nspname, '*'), d.defaclobjtype::text, "
            "d.defaclacl::text FROM pg_default_acl d LEFT JOIN pg_namespace n "
            "ON n.oid = d.defaclnamespace ORDER BY 1, 2, 3").fetchall():
        found[f"default privileges {database}.{schema} of {role} on {kind}"] = str(acl)
    return found


def login_roles(conn: psycopg.Connection) -> list[tuple[str, bool]]:
    """(name, superuser) of every role that can log in."""
    rows = conn.execute("SELECT rolname, rolsuper FROM pg_roles WHERE rolcanlogin AND "
                        "rolname !~ '^pg_' ORDER BY 1").fetchall()
    return [(r[0], bool(r[1])) for r in rows]


def privileges(conn: psycopg.Connection, database: str, tables: list[Table],
               role_names: list[str]) -> dict[str, list[str]]:
    """``"role|database.schema.table"`` -> the privileges of :data:`PRIVILEGES` it holds."""
    names = {quote(t): t for t in tables}
    held = ", ".join(f"CASE WHEN has_table_privilege(%(role)s, t.name, '{p}') THEN '{p}' END"
                     for p in PRIVILEGES)
    query = f"SELECT t.name, array_remove(ARRAY[{held}], NULL) FROM unnest(%(names)s::text[]) AS t(name)"
    found: dict[str, list[str]] = {}
    for role in role_names:
        for name, granted in conn.execute(query, {"role": role, "names": list(names)}).fetchall():
            found[f"{role}|{qualified(database, names[name])}"] = list(granted)
    return found


def quote(table: Table) -> str:
    """``schema.table`` with both parts quoted, for functions that take a relation name."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in table)
