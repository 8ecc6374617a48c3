"""One contract for the catalog, over SQLite and over PostgreSQL (the local server)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from engine import jobs
from engine.catalog.store import CANCELLED, FAILED, RUNNING, SUCCEEDED, Catalog, ObjectivesRecord
from engine.config.schema import parse_config
from engine.errors import CatalogError, UsageError

SERVER = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


@pytest.fixture(params=["sqlite", "postgresql"])
def config(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    top = f'[catalog]\npath = "{tmp_path}/catalog.sqlite3"\n'
    database = None
    if request.param == "postgresql":
        database = f"lifeboat_catalog_{os.getpid()}"
        try:
            with psycopg.connect(SERVER, autocommit=True, connect_timeout=5) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {database}")
                conn.execute(f"CREATE DATABASE {database}")
        except psycopg.OperationalError as exc:
            pytest.fail(f"the local PostgreSQL server (127.0.0.1:5432) is needed: {exc}")
        top += f'dsn = "postgresql://postgres@127.0.0.1:5432/{database}"\n'
    yield parse_config((f'[repository]\npath = "{tmp_path}/repo"\n{top}'
                        '[clusters.main]\npgdata = "/var/lib/pg"\n').encode(), "test.toml")
    if database:
        with psycopg.connect(SERVER, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")


def test_jobs_are_claimed_by_priority_once(config: object) -> None:
    with Catalog.open(config) as catalog:
        low = jobs.enqueue(catalog, config, "backup", "main", {}, "schedule:x", schedule="x")
        high = jobs.enqueue(catalog, config, "restore", "main", {"pgdata": "/srv/r"}, "bob")
        mid = jobs.enqueue(catalog, config, "backup", "main", {"type": "incr"}, "alice")
        assert [j.id for j in catalog.pending()] == [high, mid, low]
        assert catalog.job(mid).params == {"type": "incr", "checksum": False, "expire": True,
                                           "jobs": None}
        assert catalog.mark_running(high, "agent-a", 123)
        assert not catalog.mark_running(high, "agent-b", 456)  # taken once
        catalog.set_progress(high, 42.7, "copying")
        job = catalog.job(high)
        assert (job.state, job.progress, job.message, job.agent, job.pid) == (
            RUNNING, 42, "copying", "agent-a", 123)
        assert catalog.finish(high, SUCCEEDED, {"backup": "x"})
        assert not catalog.finish(high, FAILED, error="late")  # the first word stands
        done = catalog.job(high)
        assert done.state == SUCCEEDED and done.progress == 100 and done.result == {"backup": "x"}
        assert catalog.finish(low, CANCELLED, error="cancelled by test")
        assert [j.id for j in catalog.pending()] == [mid]
        assert [j.id for j in catalog.jobs(states=(CANCELLED,))] == [low]
        assert catalog.job(999) is None


def test_job_counts_progress_and_cli_runs(config: object) -> None:
    """What the exporter reads: counts by type and state (in SQL, on both databases), the
    byte progress of running jobs, and runs recorded by the CLI."""
    with Catalog.open(config) as catalog:
        first = jobs.enqueue(catalog, config, "backup", "main", {"type": "incr"}, "t", schedule="nightly")
        second = jobs.enqueue(catalog, config, "backup", "main", {"type": "incr"}, "t")
        third = jobs.enqueue(catalog, config, "verify", "main", {}, "t")
        for job_id, state in ((first, SUCCEEDED), (second, FAILED), (third, SUCCEEDED)):
            catalog.mark_running(job_id, "a", None)
            catalog.finish(job_id, state)
        cli = catalog.start_run("restore", "main", {"pgdata": "/x"}, "bob@cli", 100, "cli@h:9", 9)
        catalog.set_progress(cli, 50, "restoring", (5, 10))
        assert catalog.byte_progress() == {cli: (5, 10)}
        counts = set(catalog.job_counts(since=0))
        assert counts == {("main", "backup", "incr", None, FAILED, 1, 1),
                          ("main", "backup", "incr", "nightly", SUCCEEDED, 1, 1),
                          ("main", "verify", None, None, SUCCEEDED, 1, 1)}
        assert all(row[6] == 0 for row in catalog.job_counts(since=time.time() + 60))
        catalog.finish(cli, SUCCEEDED)
        assert catalog.byte_progress() == {}
        assert catalog.job(cli).agent == "cli@h:9" and catalog.job(cli).requested_by == "bob@cli"


def test_concurrent_claims_take_each_job_once(config: object) -> None:
    with Catalog.open(config) as setup:
        ids = [jobs.enqueue(setup, config, "verify", "main", {}, "t") for _ in range(20)]
    taken: list[int] = []
    seen: list[int] = []
    lock = threading.Lock()
    listed = threading.Barrier(4)

    def worker(name: str) -> None:
        with Catalog.open(config) as catalog:
            pending = catalog.pending()
            with lock:
                seen.append(len(pending))
            listed.wait(30)  # every worker holds the whole list: each job is claimed by all four
            for job in pending:
                if catalog.mark_running(job.id, name, None):
                    with lock:
                        taken.append(job.id)

    threads = [threading.Thread(target=worker, args=(f"a{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == [20] * 4
    assert sorted(taken) == ids


def test_events_drills_objectives_schedules_and_notices(config: object) -> None:
    with Catalog.open(config) as catalog:
        first = catalog.add_event("main", "job_failed", "it broke", "error", job_id=7, data={"a": 1})
        catalog.add_event(None, "agent_started", "hello")
        assert [e.id for e in catalog.events(cluster="main")] == [first]
        assert catalog.events(kind="job_failed")[0].data == {"a": 1}
        assert [e.kind for e in catalog.events()] == ["agent_started", "job_failed"]
        drill = catalog.add_drill("main", "full", 1.0, 61.0, True, 60.0, {"checks": []}, "# report")
        catalog.add_drill("main", "partial", 2.0, 12.0, False, 10.0, {}, "# r2")
        assert [d.id for d in catalog.drills("main", "full")] == [drill]
        assert [d.passed for d in catalog.drills("main")] == [False, True]
        catalog.record_objectives(ObjectivesRecord(5.0, "main", 12.0, 300.0, 40.0, 3600.0, {"x": 1}))
        catalog.record_objectives(ObjectivesRecord(9.0, "main", 400.0, 300.0, 40.0, 3600.0, {}))
        latest = catalog.latest_objectives("main")
        assert latest.rpo_exposure == 400.0 and latest.to_json()["rpo_met"] is False
        assert latest.to_json()["rto_met"] is True
        catalog.record_objectives(ObjectivesRecord(5.0 + 86400 + 1, "main", 1.0, 300.0, 40.0, 3600.0, {}))
        kept = catalog.db.execute("SELECT at FROM objectives WHERE cluster = 'main' ORDER BY at")
        assert [row[0] for row in kept] == [9.0, 86406.0]  # the day-old measurement went
        assert catalog.schedule_last("main", "nightly") is None
        catalog.set_schedule_last("main", "nightly", 100.0)
        catalog.set_schedule_last("main", "nightly", 200.0)
        assert catalog.schedule_last("main", "nightly") == 200.0
        assert catalog.claim_notice("main", "drill-full", 1000.0)
        assert not catalog.claim_notice("main", "drill-full", 1000.0)


def test_bad_jobs_and_unreachable_catalogs_are_clear_errors(config: object, tmp_path: Path) -> None:
    with Catalog.open(config) as catalog:
        with pytest.raises(UsageError, match="unknown parameter"):
            jobs.enqueue(catalog, config, "backup", "main", {"tpye": "full"}, "t")
        with pytest.raises(UsageError, match="unknown cluster"):
            jobs.enqueue(catalog, config, "backup", "other", {}, "t")
        with pytest.raises(UsageError, match="absolute"):
            jobs.enqueue(catalog, config, "restore", "main", {"pgdata": "relative"}, "t")
        assert catalog.pending() == []
    blocked = tmp_path / "file"
    blocked.write_text("")
    bad = parse_config((f'[repository]\npath = "{tmp_path}/repo"\n'
                        f'[catalog]\npath = "{blocked}/catalog.db"\n').encode(), "t.toml")
    with pytest.raises(CatalogError, match="cannot open the catalog"):
        Catalog.open(bad)
    unreachable = parse_config((f'[repository]\npath = "{tmp_path}/repo"\n'
                                '[catalog]\ndsn = "postgresql://postgres@127.0.0.1:1/x"\n').encode(),
                               "t.toml")
    with pytest.raises(CatalogError, match="cannot open the catalog database"):
        Catalog.open(unreachable)


def _open_fresh_catalog(path: str, start: object) -> None:
    from engine.catalog.db import SqliteDatabase

    start.wait()  # type: ignore[attr-defined]
    SqliteDatabase(Path(path)).close()


def test_processes_opening_a_new_sqlite_catalog_at_once_all_succeed(tmp_path: Path) -> None:
    """The agent, its exporter and a CLI command may all create the catalog together;
    SQLite alone fails one of them with "database is locked" within a few dozen rounds."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    for round_ in range(200):
        path = tmp_path / f"catalog-{round_}.sqlite3"
        start = context.Barrier(3)
        openers = [context.Process(target=_open_fresh_catalog, args=(str(path), start))
                   for _ in range(3)]
        for opener in openers:
            opener.start()
        for opener in openers:
            opener.join(60)
        assert [opener.exitcode for opener in openers] == [0, 0, 0], f"round {round_}"
