"""Running ``lifeboat agent`` in the background for a test, and reading its catalog."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tests.integration.pg import LIFEBOAT, Lifeboat, Workspace, free_port


def agent_settings(workspace: Workspace, extra: str = "", max_jobs: int = 2, isolate: bool = True) -> str:
    """``[catalog]`` and ``[agent]`` sections in directories postgres can write; the agent's
    exporter on a free port and its alert loop pointed at a port where nothing listens
    (unless ``extra`` sets them, or ``isolate`` is off for a caller that writes both), so
    agents of concurrent runs never meet on the defaults."""
    state = workspace.path("agent-state")
    own = ""
    if isolate and "[exporter]" not in extra:
        own += f"\n[exporter]\nport = {free_port()}\n"
    if isolate and "[alerts]" not in extra:
        own += f'\n[alerts]\nprometheus_url = "http://127.0.0.1:{free_port()}"\n'
    return (f'\n[catalog]\npath = "{state}/catalog.sqlite3"\n\n'
            f'[agent]\nstate_dir = "{state}"\nmax_concurrent_jobs = {max_jobs}\n'
            f'poll_interval = "0.2s"\nobjectives_interval = "1s"\n{extra}{own}')


def configure(env: Lifeboat, cluster_extra: str = "", top_extra: str = "", max_jobs: int = 2) -> None:
    """Rewrite env's configuration: cluster keys first, then the agent's sections."""
    env.write_config(env.cluster, extra=cluster_extra + agent_settings(env.workspace, top_extra,
                                                                        max_jobs))


@contextlib.contextmanager
def running_agent(env: Lifeboat, duration: float = 240) -> Iterator[subprocess.Popen[str]]:
    log = env.workspace.root / f"agent-{time.monotonic_ns()}.log"
    with open(log, "w") as handle:
        process = subprocess.Popen([str(LIFEBOAT), "--config", str(env.config), "agent",
                                    "--duration", str(duration)], stdout=handle, stderr=handle,
                                   text=True)
        process.log = log  # type: ignore[attr-defined]  # what the agent printed, for failures
        try:
            yield process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def jobs(env: Lifeboat) -> list[dict[str, Any]]:
    done = env.run("jobs", "--output", "json", "--limit", "500")
    return list(json.loads(done.stdout)["jobs"])


def job(env: Lifeboat, job_id: int) -> dict[str, Any]:
    return next(j for j in jobs(env) if j["id"] == job_id)


def wait_for(condition: Callable[[], Any], timeout: float = 60, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def wait_job(env: Lifeboat, job_id: int, states: tuple[str, ...] = ("succeeded", "failed", "cancelled"),
             timeout: float = 120) -> dict[str, Any]:
    return wait_for(lambda: (lambda j: j if j["state"] in states else None)(job(env, job_id)),
                    timeout, f"job {job_id} to reach {states}")


def wait_running(env: Lifeboat, job_id: int, timeout: float = 30) -> dict[str, Any]:
    """The job once it runs and its process is known (the agent marks it running, then
    starts the process and records its pid)."""
    return wait_for(lambda: (lambda j: j if j["state"] == "running" and j["pid"] else None)(
        job(env, job_id)), timeout, f"job {job_id} to run")


def enqueue(env: Lifeboat, *args: str) -> int:
    done = env.run("enqueue", *args)
    return int(done.stdout.strip())


def events(env: Lifeboat, kind: str | None = None) -> list[dict[str, Any]]:
    """Events from the catalog, oldest first."""
    args = ["events", "--output", "json", "--limit", "1000"] + (["--kind", kind] if kind else [])
    return list(json.loads(env.run(*args).stdout)["events"])


def slow_archiving(env: Lifeboat, seconds: int) -> None:
    """Make archive_command sleep first, so a backup waits that long for its WAL."""
    command = f"sleep {seconds}; {env.archive_command()}" if seconds else env.archive_command()
    env.cluster.sql(f"ALTER SYSTEM SET archive_command = '{command}'")
    env.cluster.sql("SELECT pg_reload_conf()")


def receiver_pids(stream: Path) -> list[int]:
    """Live pg_receivewal processes writing into ``stream`` (a zombie has no command line)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv[0].endswith(b"pg_receivewal") and str(stream).encode() in argv:
                pids.append(int(entry))
    return pids
