"""Restore drills on real clusters: a full drill under write load passes with every check
recorded, a partial drill runs CRUD on the critical tables, and sabotaged drills fail
naming the check that caught them. The scratch cluster is gone afterwards every time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.pg import LIFEBOAT, PG_BIN, PG_USER, Lifeboat

SCHEMA = """
CREATE ROLE app_reader LOGIN PASSWORD 'reader-secret';
CREATE ROLE app_writer LOGIN PASSWORD 'writer-secret';
CREATE ROLE auditors NOLOGIN;
GRANT auditors TO app_reader;
CREATE SCHEMA shop;
CREATE TABLE shop.customers (id serial PRIMARY KEY, email text NOT NULL UNIQUE,
                             credit numeric NOT NULL DEFAULT 0 CHECK (credit >= 0));
CREATE TABLE shop.orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                          customer_id int NOT NULL REFERENCES shop.customers (id),
                          total numeric NOT NULL CHECK (total > 0),
                          placed_at timestamptz NOT NULL DEFAULT now(),
                          total_cents bigint GENERATED ALWAYS AS ((total * 100)::bigint) STORED);
CREATE UNLOGGED TABLE shop.sessions (id int PRIMARY KEY, token text);
INSERT INTO shop.customers (email, credit) SELECT 'c' || g || '@example.com', g % 100
  FROM generate_series(1, 2000) g;
INSERT INTO shop.orders (customer_id, total) SELECT 1 + g % 2000, 1 + g % 500 FROM generate_series(1, 8000) g;
INSERT INTO shop.sessions SELECT g, md5(g::text) FROM generate_series(1, 100) g;
GRANT USAGE ON SCHEMA shop TO app_reader, app_writer;
GRANT SELECT ON ALL TABLES IN SCHEMA shop TO app_reader;
GRANT SELECT, INSERT, UPDATE ON shop.orders TO app_writer;
GRANT SELECT ON shop.customers TO app_writer;
"""


def drill_config(lifeboat: Lifeboat, critical: list[str], probes: list[tuple[str, str]],
                 tolerance: float = 0.05) -> None:
    scratch = lifeboat.workspace.path("scratch")
    probe_text = "".join(f'\n[[clusters.{lifeboat.name}.drills.probes]]\nname = "{name}"\n'
                         f'sql = "{sql}"\nruns = 3\n' for name, sql in probes)
    lifeboat.write_config(lifeboat.cluster, extra=(
        f'\n[clusters.{lifeboat.name}.drills]\nscratch_dir = "{scratch}"\ntolerance = {tolerance}\n'
        f"critical_tables = {json.dumps(critical)}\n{probe_text}\n"
        f'[catalog]\npath = "{lifeboat.workspace.root / f"catalog-{lifeboat.cluster.port}.sqlite3"}"\n'))


@pytest.fixture
def shop(lifeboat: Lifeboat) -> Iterator[Lifeboat]:
    """The cluster with a schema of its own (FKs, CHECKs, roles with passwords and grants), a
    second database, pgbench tables, and a backup."""
    source = lifeboat.cluster
    with source.connect() as conn:
        conn.execute(SCHEMA)
    source.sql("CREATE DATABASE inventory")
    source.sql("CREATE TABLE items AS SELECT g AS id, md5(g::text) AS name FROM generate_series(1, 500) g",
               dbname="inventory")
    source.sql("ALTER TABLE items ADD PRIMARY KEY (id)", dbname="inventory")
    assert source.pgbench("-i", "-s", "1", "-q").returncode == 0
    lifeboat.run("backup")
    yield lifeboat


def scratch_dir(lifeboat: Lifeboat) -> Path:
    text = lifeboat.config.read_text()
    return Path(text.split('scratch_dir = "', 1)[1].split('"', 1)[0])


def drill(lifeboat: Lifeboat, kind: str, check: bool = True) -> tuple[int, dict]:
    done = lifeboat.run("drill", "--kind", kind, "--output", "json", check=False)
    assert done.returncode in (0, 1), done.stderr
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done.returncode, json.loads(done.stdout)


def names(result: dict) -> dict[str, dict]:
    return {c["name"]: c for c in result["checks"]}


def test_full_drill_under_load_then_partial_drill_and_report(shop: Lifeboat) -> None:
    # The probe's timings are compared under pgbench and, in the suite, beside another test
    # worker on two cores: one stall of the restored cluster's three runs would fail its
    # throughput. Timing verdicts are this test's subject elsewhere (a slow restored cluster
    # below, and the unit tests); here the drill must complete and pass under load.
    drill_config(shop, ["shop.customers", "shop.orders", "inventory.public.items"],
                 [("count orders", "SELECT count(*) FROM shop.orders")], tolerance=0.9)
    load = subprocess.Popen(["runuser", "-u", PG_USER, "--", "pgbench", "-h", "127.0.0.1", "-p",
                             str(shop.cluster.port), "-c", "2", "-T", "120", "postgres"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1)
        before = shop.cluster.value("SELECT sum(xact_commit) FROM pg_stat_database")
        _code, full = drill(shop, "full")
        after = shop.cluster.value("SELECT sum(xact_commit) FROM pg_stat_database")
        assert load.poll() is None and after > before + 100, "pgbench must write throughout the drill"
    finally:
        load.terminate()
        load.communicate(timeout=30)

    checks = names(full)
    assert full["passed"] and all(c["passed"] for c in full["checks"])
    for expected in ("reference", "restore", "accuracy", "completeness", "amcheck", "constraints postgres",
                     "constraints inventory", "roles", "authentication rules", "privileges postgres",
                     "privileges inventory", "login app_reader", "login app_writer",
                     "authorization app_reader", "authorization app_writer",
                     "probe count orders response time", "probe count orders throughput", "rto objective"):
        assert expected in checks, sorted(checks)
    # Data written by pgbench while the reference was taken: still exactly equal.
    tables = {t["table"]: t for t in full["tables"]}
    history = tables["postgres.public.pgbench_history"]
    assert history["expected_rows"] > 0 and history["restored_rows"] == history["expected_rows"]
    assert tables["postgres.shop.orders"]["restored_rows"] == 8000
    assert tables["inventory.public.items"]["restored_checksum"] == tables["inventory.public.items"][
        "expected_checksum"]
    assert "postgres.shop.sessions" not in tables and any("unlogged" in n for n in full["notes"])
    assert full["accuracy"] == 1.0 and full["completeness"] == 1.0
    assert "foreign keys 1," in checks["constraints postgres"]["detail"]  # shop.orders; pgbench has none
    assert "password verifiers" in checks["roles"]["detail"]
    assert "authenticated over TCP" in checks["login app_reader"]["detail"]
    assert checks["authorization app_writer"]["passed"]
    assert full["restore_seconds"] > 0 and full["validation_seconds"] > 0
    assert full["rto_seconds"] == pytest.approx(full["restore_seconds"] + full["validation_seconds"])
    assert full["writers_blocked_ms"] < 5000
    timing = full["timing"]  # what the agent's expected RTO is computed from
    assert timing["restore_bytes"] > 0 and timing["restore_seconds"] > 0
    assert timing["wal_bytes"] > 0 and timing["replay_seconds"] > 0
    assert full["scratch_removed"] and not any(scratch_dir(shop).iterdir())
    # The restore point is recorded in the repository like one made by restore-point.
    restored, _ = shop.restore("--target-name", full["restore_point"])
    assert restored.value("SELECT count(*) FROM shop.orders") == 8000
    restored.stop("immediate")

    _code, partial = drill(shop, "partial")
    checks = names(partial)
    for table in ("postgres.shop.customers", "postgres.shop.orders", "inventory.public.items"):
        assert checks[f"crud {table}"]["passed"], checks[f"crud {table}"]
        assert "delete it and insert it back" in checks[f"crud {table}"]["detail"]
        assert checks[f"indexes {table}"]["passed"]
    assert "insert a copy" in checks["crud postgres.shop.orders"]["detail"]
    assert {t["table"] for t in partial["tables"]} == {
        "postgres.shop.customers", "postgres.shop.orders", "inventory.public.items"}
    assert "critical" not in partial["notes"]
    # The tables a partial drill leaves out are not touched by it.
    assert not any(t["table"].endswith("pgbench_accounts") for t in partial["tables"])

    report = shop.run("drill-report").stdout
    assert "## Executive summary" in report and "**Result: PASSED**" in report
    assert "## Detailed log" in report and "crud postgres.shop.orders" in report
    trend = report.split("## Trend (2 drills)", 1)[1].split("## Method", 1)[0]
    rows = [line for line in trend.splitlines() if line.startswith("| ") and "Started" not in line]
    assert len(rows) == 2 and "full" in rows[0] and "partial" in rows[1]
    listed = shop.run("drill-report", "--list").stdout.splitlines()
    assert len(listed) == 2 and "partial" in listed[0] and "passed" in listed[0]
    first = json.loads(shop.run("drill-report", "--id", str(full["id"]), "--output", "json").stdout)
    assert first["restore_point"] == full["restore_point"]


def test_drill_fails_on_a_slow_restored_cluster_and_an_unlogged_critical_table(shop: Lifeboat) -> None:
    port = shop.cluster.port
    slow = f"SELECT pg_sleep(CASE WHEN current_setting('port')::int <> {port} THEN 0.05 ELSE 0 END)"
    drill_config(shop, ["shop.customers", "shop.sessions"],
                 [("steady", "SELECT count(*) FROM shop.customers"), ("slow on copy", slow)])
    code, result = drill(shop, "partial", check=False)
    assert code == 1 and not result["passed"]
    failed = {c["name"]: c["detail"] for c in result["checks"] if not c["passed"]}
    assert "probe slow on copy response time" in failed and "probe slow on copy throughput" in failed
    assert "probe steady response time" not in failed
    # Recovery leaves unlogged tables empty: a critical one loses its rows, and the drill says so.
    assert "postgres.shop.sessions: 0 of 100 rows" in failed["accuracy"]
    assert "2000 of 2100 rows present" in failed["completeness"]
    assert "crud postgres.shop.sessions" in failed and "empty" in failed["crud postgres.shop.sessions"]
    assert result["scratch_removed"] and not any(scratch_dir(shop).iterdir())
    report = shop.run("drill-report").stdout
    assert "**Result: FAILED**" in report and "**probe slow on copy response time**" in report


def sabotaged_drill(config: str) -> None:
    """Run as postgres: a partial drill whose restored copy has a damaged page in shop.orders
    (stopped, one tuple's bytes flipped as a failing disk would, started again)."""
    from engine.config.schema import load_config
    from engine.drill.run import run
    from engine.postgres import server
    from engine.repository.storage import open_storage

    loaded = load_config(config)

    def corrupt(place: object) -> None:
        pgdata = place.pgdata  # type: ignore[attr-defined]
        with __import__("psycopg").connect(host=str(place.directory), port=place.port,  # type: ignore[attr-defined]
                                           user=PG_USER, dbname="postgres") as conn:
            path = conn.execute("SELECT pg_relation_filepath('shop.orders')").fetchone()[0]
        subprocess.run([str(place.bin_dir / "pg_ctl"), "-D", str(pgdata), "-m", "fast", "-w",  # type: ignore[attr-defined]
                        "stop"], check=True, capture_output=True)
        data = bytearray((pgdata / path).read_bytes())
        data[8192 + 4000] ^= 0xFF
        (pgdata / path).write_bytes(bytes(data))
        server.start(pgdata, place.bin_dir, place.log_file, place.port)  # type: ignore[attr-defined]
        server.wait_for_recovery(pgdata, place.log_file, "promote", 60)  # type: ignore[attr-defined]

    result = run(loaded, "main", open_storage(loaded.repository.url), Path(config), "partial",
                 before_validation=corrupt)
    print(json.dumps(result.to_json()))


def test_a_damaged_restore_fails_amcheck_and_accuracy(shop: Lifeboat) -> None:
    drill_config(shop, ["shop.orders", "shop.customers"], [])
    command = ["runuser", "-u", PG_USER, "--", sys.executable, "-c",
               "from tests.integration.test_drill import sabotaged_drill; "
               f"sabotaged_drill({str(shop.config)!r})"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).parents[2], env=os.environ | {"LIFEBOAT_PG_BIN": str(PG_BIN)})
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    failed = {c["name"]: c["detail"] for c in result["checks"] if not c["passed"]}
    assert not result["passed"]
    assert "amcheck" in failed and "shop" in failed["amcheck"] and "orders" in failed["amcheck"]
    assert "accuracy" in failed and "postgres.shop.orders" in failed["accuracy"]
    assert "postgres.shop.customers" not in failed["accuracy"]
    assert result["scratch_removed"] and not any(scratch_dir(shop).iterdir())


def test_partial_drill_without_critical_tables_is_a_recorded_failure(lifeboat: Lifeboat) -> None:
    drill_config(lifeboat, [], [])
    code, result = drill(lifeboat, "partial", check=False)
    assert code == 1
    [check] = result["checks"]
    assert check["name"] == "scope" and "critical_tables" in check["detail"]
    assert result["scratch"] is None


def test_a_drill_stopped_by_sigterm_is_recorded_as_failed_and_cleans_up(lifeboat: Lifeboat) -> None:
    lifeboat.cluster.sql("CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g")
    lifeboat.run("backup")
    port = lifeboat.cluster.port
    drill_config(lifeboat, [], [("slow", f"SELECT pg_sleep(CASE WHEN current_setting('port')::int <> {port} "
                                         "THEN 1 ELSE 0 END)")])
    scratch = scratch_dir(lifeboat)
    process = subprocess.Popen([str(LIFEBOAT), "--config", str(lifeboat.config), "--cluster", lifeboat.name,
                                "drill", "--output", "json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.monotonic() + 30
    while not any(scratch.glob("*/pgdata/postmaster.pid")):
        assert process.poll() is None and time.monotonic() < deadline, "the scratch server never started"
        time.sleep(0.05)
    time.sleep(0.3)
    process.send_signal(signal.SIGTERM)  # what the agent sends a job past its max_duration
    out, err = process.communicate(timeout=60)
    assert process.returncode == 1, err
    result = json.loads(out)
    assert not result["passed"]
    assert any("SIGTERM" in c["detail"] for c in result["checks"] if not c["passed"])
    assert result["scratch_removed"] and not any(scratch.iterdir())
    assert not [p for p in Path("/proc").glob("[0-9]*/cmdline")
                if str(scratch) in p.read_bytes().decode(errors="replace")]
    assert "FAILED" in lifeboat.run("drill-report", "--list").stdout
