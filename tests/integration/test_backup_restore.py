"""Full backups of a cluster under write load, restored and compared table by table."""

from __future__ import annotations

import json
import re
import subprocess
import time
from datetime import datetime

from tests.integration.pg import PG_BIN, Cluster, Lifeboat, Workspace, as_postgres

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def pg_amcheck(cluster: Cluster) -> subprocess.CompletedProcess[str]:
    return as_postgres([str(PG_BIN / "pg_amcheck"), "-h", "127.0.0.1", "-p", str(cluster.port),
                        "-U", "postgres", "--all", "--install-missing", "--heapallindexed"])


def test_backup_under_pgbench_restores_every_table(lifeboat: Lifeboat) -> None:
    source = lifeboat.cluster
    assert source.pgbench("-i", "-s", "10", "-q").returncode == 0
    load = subprocess.Popen(
        ["runuser", "-u", "postgres", "--", "pgbench", "-h", "127.0.0.1", "-p", str(source.port),
         "-c", "4", "-j", "2", "-T", "25", "postgres"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2)
        transactions_before = source.value("SELECT sum(xact_commit) FROM pg_stat_database")
        backup = lifeboat.run("backup")
        transactions_after = source.value("SELECT sum(xact_commit) FROM pg_stat_database")
        assert load.poll() is None, "pgbench must still be writing when the backup ends"
        assert transactions_after > transactions_before + 100  # the backup ran under load
    finally:
        _out, err = load.communicate(timeout=60)
    assert load.returncode == 0, err
    assert "complete" in backup.stdout
    assert "WARNING" not in backup.stderr  # pages written while read are not false alarms
    lifeboat.switch_and_archive()
    expected = source.table_checksums()
    assert expected["public.pgbench_history"][0] > 1000

    restored, done = lifeboat.restore()
    assert "recovery promoted" in done.stdout
    assert restored.table_checksums() == expected
    check = pg_amcheck(restored)
    assert check.returncode == 0, check.stdout + check.stderr


def test_info_lists_backups_and_archive(lifeboat: Lifeboat) -> None:
    lifeboat.cluster.sql("CREATE TABLE t AS SELECT g FROM generate_series(1, 10000) g")
    lifeboat.run("backup")
    report = json.loads(lifeboat.run("info", "--output", "json").stdout)
    cluster = report["clusters"][0]
    assert cluster["name"] == "main" and cluster["status"] == "ok"
    [backup] = cluster["backups"]
    for key in ("id", "type", "started_at", "finished_at", "start_lsn", "stop_lsn",
                "size_bytes", "stored_bytes"):
        assert backup[key] not in (None, ""), key
    assert backup["type"] == "full"
    assert ISO_UTC.match(backup["started_at"]) and ISO_UTC.match(backup["finished_at"])
    assert datetime.fromisoformat(backup["finished_at"]) >= datetime.fromisoformat(
        backup["started_at"])
    assert 0 < backup["stored_bytes"] < backup["size_bytes"]
    [timeline] = cluster["archive"]
    assert timeline["timeline"] == 1
    assert timeline["first"] <= backup["start_wal"] <= backup["stop_wal"] <= timeline["last"]
    text = lifeboat.run("info").stdout
    assert backup["id"] in text and timeline["last"] in text


def test_tablespaces_are_backed_up_and_can_be_moved(lifeboat: Lifeboat, workspace: Workspace) -> None:
    location = workspace.path("tablespace")
    source = lifeboat.cluster
    source.sql(f"CREATE TABLESPACE extra LOCATION '{location}'")
    source.sql("CREATE TABLE moved (id int, pad text) TABLESPACE extra")
    source.sql("INSERT INTO moved SELECT g, repeat('x', 100) FROM generate_series(1, 50000) g")
    oid = source.value("SELECT oid FROM pg_tablespace WHERE spcname = 'extra'")
    lifeboat.run("backup")
    source.sql("INSERT INTO moved SELECT g, 'after' FROM generate_series(50001, 50100) g")
    lifeboat.switch_and_archive()
    elsewhere = workspace.path("tablespace-restored", create=False)
    restored, _ = lifeboat.restore("--tablespace-map", f"{oid}={elsewhere}")
    assert restored.value("SELECT count(*) FROM moved") == 50100
    assert restored.value("SELECT pg_tablespace_location(%s)", (oid,)) == str(elsewhere)
    assert any(elsewhere.glob("PG_15_*/*/*"))


def test_corrupt_page_is_found_named_and_reported(lifeboat: Lifeboat) -> None:
    source = lifeboat.cluster
    source.sql("CREATE TABLE victim AS SELECT g, md5(g::text) AS h FROM generate_series(1, 20000) g")
    source.sql("CHECKPOINT")
    path = source.value("SELECT pg_relation_filepath('victim')")
    healthy = lifeboat.run("backup")
    assert "WARNING" not in healthy.stderr  # no false alarm on a healthy cluster
    source.stop()
    relation = source.pgdata / path
    data = bytearray(relation.read_bytes())
    data[3 * 8192 + 4000] ^= 0xFF  # damage a tuple on page 3, as a failing disk would
    relation.write_bytes(bytes(data))
    source.start()
    done = lifeboat.run("backup")  # the backup completes, and says what it holds
    assert f"WARNING: {path}: 1 pages fail their PostgreSQL checksum (blocks 3)" in done.stderr
    newest = json.loads(lifeboat.run("info", "--output", "json").stdout)["clusters"][0]["backups"][-1]
    assert newest["page_checksums"] and newest["corrupt_pages"] == 1
    assert newest["corrupt_files"] == [path]
    assert "HOLDS 1 CORRUPT PAGES" in lifeboat.run("info").stdout


def test_a_started_restore_is_validated_unless_told_not_to(lifeboat: Lifeboat) -> None:
    from tests.integration.agent import configure, jobs

    configure(lifeboat)  # a catalog of this test's own: the restore's result is read from it
    lifeboat.cluster.sql("CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 500) g")
    lifeboat.cluster.sql("ALTER TABLE t ADD PRIMARY KEY (id)")
    lifeboat.run("backup")
    lifeboat.switch_and_archive()
    first, _ = lifeboat.restore()
    first.stop()
    second, _ = lifeboat.restore("--no-validate", "--delta")
    second.stop()
    restores = sorted((j for j in jobs(lifeboat) if j["kind"] == "restore"), key=lambda j: j["id"])
    validated, skipped = restores[-2:]
    assert validated["params"]["validate_restored"] is True
    assert skipped["params"]["validate_restored"] is False
    check = validated["result"]["validation"]
    assert check["passed"] and check["row_counts"]["public.t"] == 500
    assert {c["name"] for c in check["checks"]} == {"row_counts", "amcheck"}, check["checks"]
    assert "validation" not in skipped["result"]
