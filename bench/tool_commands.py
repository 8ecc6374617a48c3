"""Command lines and configuration files of Lifeboat and pgBackRest."""

from __future__ import annotations

import shlex
from pathlib import Path

from bench.environment import CLUSTER, LIFEBOAT, PGBACKREST, Bench
from bench.files import make_dir, write_file


def lifeboat_config(repo: Path, bench: Bench) -> str:
    return (f'[repository]\npath = "{repo}"\n\n[compression]\nalgorithm = "zstd"\nlevel = 3\n\n'
            f'[clusters.{CLUSTER}]\npgdata = "{bench.paths.pgdata}"\nhost = "{bench.paths.sock}"\n'
            f"port = {bench.port}\n")


def pgbackrest_config(repo: Path, bench: Bench) -> str:
    root = bench.paths.pbr_root
    return (f"[global]\nrepo1-path={repo}\nrepo1-retention-full=9999\nprocess-max=2\n"
            f"compress-type=zst\ncompress-level=3\nstart-fast=y\nlog-path={root}/log\n"
            f"lock-path={root}/lock\nlog-level-console=warn\nlog-level-file=info\n\n"
            f"[{CLUSTER}]\npg1-path={bench.paths.pgdata}\npg1-port={bench.port}\n"
            f"pg1-socket-path={bench.paths.sock}\n")


def lifeboat_cmd(config: Path, *args: str | Path) -> list[str | Path]:
    return [LIFEBOAT, "--config", config, "--cluster", CLUSTER, *args]


def pgbackrest_cmd(config: Path, *args: str | Path) -> list[str | Path]:
    return [PGBACKREST, f"--config={config}", f"--stanza={CLUSTER}", *args]


def archive_command(bench: Bench) -> str:
    """The server's archive_command: Lifeboat's wal-push, then pgBackRest's archive-push."""
    lifeboat = shlex.join([str(LIFEBOAT), "--config", str(bench.paths.lb_config),
                           "--cluster", CLUSTER, "wal-push"])
    pgbackrest = shlex.join([PGBACKREST, f"--config={bench.paths.pbr_config}",
                             f"--stanza={CLUSTER}", "archive-push"])
    return f"{lifeboat} %p && {pgbackrest} %p"


def write_tool_configs(bench: Bench) -> None:
    """Both repositories' directories and configuration files, owned by postgres."""
    paths = bench.paths
    for directory in (paths.lb_repo, paths.lb_cache, paths.pbr_repo,
                      paths.pbr_root / "log", paths.pbr_root / "lock"):
        make_dir(bench, directory, 0o750)
    write_file(bench, paths.lb_config, lifeboat_config(paths.lb_repo, bench))
    write_file(bench, paths.pbr_config, pgbackrest_config(paths.pbr_repo, bench))
