"""Probe queries timed on the source (the baseline) and on the restored cluster.

Each probe runs once untimed (a restored cluster starts with cold caches; the source's
are warm), then ``runs`` times, each timed from send to last row. Probes run in
read-only sessions: they are measurements, and they run on the production source too.
The comparison itself is :func:`engine.drill.model.probe_checks`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import psycopg

from engine.config.schema import Config
from engine.config.sections import ProbeConfig
from engine.drill.checks import error_text
from engine.drill.model import ProbeTiming
from engine.errors import PostgresError
from engine.postgres import connection as postgres

Connector = Callable[[str], AbstractContextManager[psycopg.Connection]]


def time_query(conn: psycopg.Connection, query: str, runs: int) -> list[float]:
    conn.execute("SET default_transaction_read_only = on")
    conn.execute(query).fetchall()  # type: ignore[arg-type]
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        conn.execute(query).fetchall()  # type: ignore[arg-type]
        timings.append(time.perf_counter() - started)
    return timings


def _run(connect: Connector, probe: ProbeConfig, database: str) -> tuple[list[float], str | None]:
    try:
        with connect(database) as conn:
            try:
                return time_query(conn, probe.sql, probe.runs), None
            except psycopg.Error as exc:
                return [], error_text(exc)
    except PostgresError as exc:
        return [], str(exc)


def baseline(config: Config, cluster: str) -> list[ProbeTiming]:
    """Time every configured probe on the source."""
    settings = config.clusters[cluster]

    def connect(database: str) -> Any:
        endpoint = postgres.Endpoint(settings.host, settings.port, settings.user, database)
        return postgres.connect(endpoint, cluster, settings.connect_timeout)

    found = []
    for probe in settings.drills.probes:
        database = probe.database or settings.database
        runs, error = _run(connect, probe, database)
        found.append(ProbeTiming(probe.name, database, baseline=runs,
                                 error=f"on the source: {error}" if error else None))
    return found


def on_restored(connect: Connector, probes: list[ProbeConfig], timings: list[ProbeTiming]) -> None:
    """Time the probes on the restored cluster, filling ``timings`` (from :func:`baseline`)."""
    for probe, timing in zip(probes, timings, strict=True):
        if timing.error is not None:
            continue
        runs, error = _run(connect, probe, timing.database)
        timing.restored = runs
        if error:
            timing.error = f"on the restored cluster: {error}"
