import os
from pathlib import Path

from engine.postgres import pgdata


def touch(path: Path, data: bytes = b"x") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_exclusions_follow_postgresql_docs(tmp_path: Path) -> None:
    root = tmp_path / "pgdata"
    for name in ("PG_VERSION", "postgresql.conf", "global/pg_control", "base/5/1259",
                 "base/5/1259_fsm", "base/5/16400", "base/5/16400.1", "base/5/16400_init",
                 "base/5/16400_fsm", "base/5/t3_16500", "base/5/pg_internal.init",
                 "base/pgsql_tmp/pgsql_tmp123.0", "pg_wal/000000010000000000000001",
                 "pg_wal/archive_status/000000010000000000000001.done", "pg_replslot/s/state",
                 "pg_stat_tmp/global.stat", "postmaster.pid", "postmaster.opts", "backup_label",
                 "log/postgresql.log", "global/pg_internal.init", ".s.PGSQL.5432.lock",
                 "base/5/.s.PGSQL.5432.lock"):
        touch(root / name)
    (root / "pg_notify").mkdir()
    paths = {e.path: e.kind for e in pgdata.walk(root, 15)}
    assert paths["base/5/1259"] == "file" and paths["base/5/1259_fsm"] == "file"
    assert paths["base/5/16400_init"] == "file"  # the init fork of an unlogged table
    for gone in ("base/5/16400", "base/5/16400.1", "base/5/16400_fsm", "base/5/t3_16500",
                 "base/5/pg_internal.init", "base/pgsql_tmp", "pg_wal/000000010000000000000001",
                 "pg_wal/archive_status", "pg_replslot/s", "pg_stat_tmp/global.stat",
                 "postmaster.pid", "postmaster.opts", "backup_label", "global/pg_internal.init",
                 ".s.PGSQL.5432.lock"):  # a socket's lock file in PGDATA: a live server's PID
        assert gone not in paths, gone
    assert "base/5/.s.PGSQL.5432.lock" in paths  # only at the top, where PostgreSQL puts it
    for kept_dir in ("pg_wal", "pg_replslot", "pg_stat_tmp", "pg_notify", "base", "base/5"):
        assert paths[kept_dir] == "dir"
    assert "log/postgresql.log" in paths
    ordered = [e.path for e in pgdata.walk(root, 15)]
    assert ordered == sorted(ordered, key=lambda p: p.split("/"))


def test_tablespaces_are_followed_to_this_version(tmp_path: Path) -> None:
    root = tmp_path / "pgdata"
    location = tmp_path / "ts"
    touch(location / "PG_15_202209061" / "5" / "16390")
    touch(location / "PG_14_202107181" / "5" / "99999")  # another version's data
    (root / "pg_tblspc").mkdir(parents=True)
    os.symlink(location, root / "pg_tblspc" / "16389")
    found = {e.path: e for e in pgdata.walk(root, 15)}
    assert found["pg_tblspc/16389"].kind == "link"
    assert found["pg_tblspc/16389"].target == str(location)
    assert found["pg_tblspc/16389/PG_15_202209061/5/16390"].kind == "file"
    assert not any("PG_14" in p for p in found)
