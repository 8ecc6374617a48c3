"""What encryption at rest costs: backup, restore and wal-push of a small database into a
plain and an encrypted repository, alternating, with wall and CPU time. Run as root:

    .venv/bin/python -m bench.encryption_cost [--scale 10] [--runs 5]

Two throw-away clusters (the integration tests' helpers), each archiving into its own
repository, one with ``[repository.encryption]``; each run takes a full backup of both and
restores it into an empty directory (the order alternates), then pushes copies of a real
16 MB segment under unused names. A short timing on whatever machine it runs on, not a
benchmark: it prints medians and every sample.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import time
from collections.abc import Callable

from tests.integration.pg import LIFEBOAT, Lifeboat, Workspace, as_postgres

KINDS = ("plain", "encrypted")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(samples: dict[str, list[float]], what: str, work: Callable[[], object]) -> None:
    cpu, wall = _children_cpu(), time.monotonic()
    work()
    samples[what].append(time.monotonic() - wall)
    samples[f"{what} cpu"].append(_children_cpu() - cpu)


def _environment(workspace: Workspace, kind: str, scale: int) -> Lifeboat:
    env = Lifeboat.create(workspace)
    if kind == "encrypted":
        key = workspace.path("keys") / "repository.key"
        env.run("repo-key", "generate", "--output", str(key))
        env.write_config(env.cluster, extra=f'\n[repository.encryption]\nkey_file = "{key}"\n')
    env.cluster.start()
    env.run("init")
    assert env.cluster.pgbench("-i", "-s", str(scale), "-q").returncode == 0
    env.run("check")
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=10, help="pgbench scale of the database")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    workspace = Workspace()
    envs: dict[str, Lifeboat] = {}
    try:
        for kind in KINDS:
            envs[kind] = _environment(workspace, kind, args.scale)
        samples = {k: {w: [] for w in ("backup", "backup cpu", "restore", "restore cpu", "wal-push",
                                       "wal-push cpu")} for k in KINDS}
        for run in range(args.runs):
            order = KINDS if run % 2 == 0 else KINDS[::-1]
            for kind in order:
                _timed(samples[kind], "backup", lambda e=envs[kind]: e.run("backup", "--no-expire"))
            for kind in order:
                target = workspace.path("restored", create=False)
                _timed(samples[kind], "restore",
                       lambda e=envs[kind], t=target: e.run("restore", "--pgdata", str(t)))
                shutil.rmtree(target)
            for kind in order:
                env = envs[kind]
                segment = min(p for p in (env.cluster.pgdata / "pg_wal").iterdir() if len(p.name) == 24)
                folder = workspace.path(f"wal-{kind}")
                for i in range(3):
                    copy = folder / f"0000000100000000000000{0x80 + run * 3 + i:02X}"  # never archived
                    shutil.copy(segment, copy)
                    copy.chmod(0o644)
                    command = [str(LIFEBOAT), "--config", str(env.config), "--cluster", "main",
                               "wal-push", str(copy)]
                    _timed(samples[kind], "wal-push", lambda c=command: as_postgres(c, check=True))
        size = envs["plain"].cluster.value("SELECT pg_database_size('postgres')")
        stored = {k: sum(p.stat().st_size for p in e.repo.rglob("*") if p.is_file())
                  for k, e in envs.items()}
        print(f"database {size / 2**20:.0f} MiB; repositories after {args.runs} full backups: "
              + ", ".join(f"{k} {v / 2**20:.1f} MiB" for k, v in stored.items()))
        for what in samples["plain"]:
            plain, encrypted = (statistics.median(samples[k][what]) for k in KINDS)
            print(f"{what}: plain {plain:.3f} s, encrypted {encrypted:.3f} s ({encrypted / plain:.2f}x); "
                  f"samples {[round(x, 3) for x in samples['plain'][what]]} / "
                  f"{[round(x, 3) for x in samples['encrypted'][what]]}")
    finally:
        for env in envs.values():
            env.cleanup()
        workspace.remove()


if __name__ == "__main__":
    main()
