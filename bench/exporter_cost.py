"""What a scrape and a refresh of the exporter cost as the catalog's history grows.

A scrape renders the cached snapshot; a refresh reads the catalog (all job, drill and
data-loss history, for the counters), the repository and the host. Run:

    .venv/bin/python -m bench.exporter_cost [--jobs 10000]

No server is needed: the cluster's PostgreSQL is absent (the refresh records lifeboat_up 0
after its connection attempt fails at once), so the numbers are the exporter's own work.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from prometheus_client import generate_latest

from collectors.exporter import Refresher, registry_for
from engine.catalog.store import Catalog
from engine.config.schema import Config
from engine.repository.storage.posix import PosixStorage


def _fill(catalog: Catalog, jobs: int, drills: int) -> None:
    now = time.time()
    with catalog.db.transaction() as cursor:
        for i in range(jobs):
            kind = "restore" if i % 50 == 0 else "backup"
            params = '{"type": "incr"}' if kind == "backup" else '{"pgdata": "/x"}'
            result = ('{"seconds": 120.0, "bytes": 1, "backup_bytes": 1, "target": "latest"}'
                      if kind == "restore" else '{"backup": "x"}')
            state = "failed" if i % 97 == 0 else "succeeded"
            cursor.execute(catalog.db.sql(
                "INSERT INTO jobs (kind, cluster, params, requested_by, priority, state, schedule, "
                "created_at, started_at, finished_at, result) VALUES (?, 'main', ?, 'bench', 50, ?, "
                "?, ?, ?, ?, ?)"),
                (kind, params, state, "nightly" if i % 2 else None, now - i * 3600, now - i * 3600,
                 now - i * 3600 + 60, result))
    for i in range(drills):
        catalog.add_drill("main", "partial" if i % 4 else "full", now - i * 86400, now - i * 86400 + 90,
                          i % 10 != 0, 80.0, {"timing": {"restore_bytes": 1}, "checks": []}, "report")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs in the catalog's history")
    parser.add_argument("--drills", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = Config.model_validate({
            "os_user": "root", "repository": {"path": str(root / "repo")},
            "catalog": {"path": str(root / "catalog.sqlite3")},
            "clusters": {"main": {"pgdata": str(root / "pgdata"), "host": str(root / "nosocket")}}})
        storage = PosixStorage(root / "repo")
        with Catalog.open(config) as catalog:
            _fill(catalog, args.jobs, args.drills)
        refresher = Refresher(config, storage, measure_objectives=False)
        registry = registry_for(refresher)
        refreshes, scrapes = [], []
        size = 0
        for _ in range(args.rounds):
            started = time.perf_counter()
            refresher.refresh()
            refreshes.append(time.perf_counter() - started)
            started = time.perf_counter()
            size = len(generate_latest(registry))
            scrapes.append(time.perf_counter() - started)
        refresher.close()
    print(f"catalog: {args.jobs} jobs, {args.drills} drills; {args.rounds} rounds")
    print(f"refresh (in the background): median {statistics.median(refreshes) * 1000:.1f} ms, "
          f"max {max(refreshes) * 1000:.1f} ms")
    print(f"scrape (renders the cache): median {statistics.median(scrapes) * 1000:.2f} ms, "
          f"max {max(scrapes) * 1000:.2f} ms, {size} bytes")


if __name__ == "__main__":
    main()
