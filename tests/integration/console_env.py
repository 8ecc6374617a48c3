"""A cluster with real backups, WAL, jobs, an alert and a drill, and a console configuration
with one user per role, for the console's tests."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from dashboard.auth import hash_password
from tests.integration.agent import configure
from tests.integration.pg import Lifeboat, Workspace, free_port

PASSWORDS = {"viewer": "viewer-pw", "operator": "operator-pw", "admin": "admin-pw"}
USERS = {"vera": "viewer", "otto": "operator", "ada": "admin"}
MAX_FAILED = 3


@dataclass
class ConsoleEnv:
    env: Lifeboat
    prometheus_port: int  # nothing listens there
    before: str = ""  # an ISO time between the two writes
    writes: tuple[int, int] = (0, 0)  # rows in t before and after that time

    @property
    def config(self) -> Path:
        return self.env.config


def console_settings(prometheus_port: int, extra: str = "", session_timeout: float = 300) -> str:
    users = "".join(f'\n[console.users.{name}]\nrole = "{role}"\n'
                    f'password_hash = "{hash_password(PASSWORDS[role], n=2**10)}"\n'
                    for name, role in USERS.items())
    return (f'\n[console]\nsession_timeout = "{session_timeout:g}s"\nmax_failed_logins = {MAX_FAILED}\n'
            'lockout = "60s"\n'
            f'prometheus_url = "http://127.0.0.1:{prometheus_port}"\n{users}{extra}')


def make(workspace: Workspace, gap: float = 1.5, console_extra: str = "",
         session_timeout: float = 300) -> ConsoleEnv:
    """``console_extra``: more of ``[console]`` (``[console.oidc]``)."""
    env = Lifeboat.create(workspace)
    prometheus_port = free_port()
    configure(env, top_extra=console_settings(prometheus_port, console_extra, session_timeout))
    env.cluster.start()
    env.run("init")
    env.cluster.sql("CREATE TABLE public.t (id int primary key, note text)")
    env.cluster.sql("INSERT INTO public.t SELECT g, 'first' FROM generate_series(1, 50) g")
    env.run("backup", "--type", "full")
    env.run("backup", "--type", "incr")
    # rows written after the last backup, a time, more rows: a restore to that time replays WAL
    env.cluster.sql("INSERT INTO public.t SELECT g, 'second' FROM generate_series(51, 80) g")
    time.sleep(gap)
    from datetime import UTC, datetime

    before = datetime.now(UTC).replace(microsecond=0)
    time.sleep(gap)
    env.cluster.sql("INSERT INTO public.t SELECT g, 'late' FROM generate_series(81, 100) g")
    env.switch_and_archive()
    console = ConsoleEnv(env, prometheus_port, before.isoformat(), (80, 100))
    _history(env)
    return console


def _history(env: Lifeboat) -> None:
    """An open alert, a drill record and a failed verify job in the catalog."""
    from engine.catalog.store import Catalog
    from engine.config.schema import load_config

    config = load_config(env.config)
    with Catalog.open(config) as catalog:
        now = time.time()
        catalog.alerts.create("fp-console-test", "backup_failure", "LifeboatBackupFailure", "main",
                              "critical",
                              {"alertname": "LifeboatBackupFailure", "cluster": "main"},
                              {"summary": "a backup failed"}, "firing", 1.0, "prometheus", now - 600,
                              now - 600)
        catalog.add_drill("main", "full", now - 900, now - 840, False, 60.0,
                          {"checks": [{"name": "row_counts", "passed": False, "detail": "t: 79 of 80 rows",
                                       "seconds": 0.1}]}, "Drill report: row counts differ")
        job_id = catalog.enqueue("verify", "main", {"backup": None, "since_last": False, "jobs": None},
                                 "cron@agent", 40)
        catalog.finish(job_id, "failed", error="a block was damaged")
