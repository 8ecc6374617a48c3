"""Lifeboat's command lines and configuration files, and the server's archive_command
(pgBackRest's own: bench/pgbackrest.py)."""

from __future__ import annotations

import shlex
from pathlib import Path

from bench.environment import CLUSTER, LIFEBOAT, Bench
from bench.files import make_dir, write_file


def lifeboat_config(repo: Path | str, bench: Bench, extra: str = "") -> str:
    """``lifeboat.toml`` for a repository at ``repo`` (a path, or a URL given as a string);
    ``extra`` is appended (TOML tables)."""
    where = f'url = "{repo}"' if isinstance(repo, str) else f'path = "{repo}"'
    return (f'[repository]\n{where}\n\n[compression]\nalgorithm = "zstd"\nlevel = 3\n\n'
            f'[clusters.{CLUSTER}]\npgdata = "{bench.paths.pgdata}"\nhost = "{bench.paths.sock}"\n'
            f"port = {bench.port}\n{extra}")


def lifeboat_cmd(config: Path, *args: str | Path) -> list[str | Path]:
    return [LIFEBOAT, "--config", config, "--cluster", CLUSTER, *args]


def archive_command(bench: Bench) -> str:
    """The server's archive_command: Lifeboat's wal-push, then each pgBackRest's archive-push."""
    lifeboat = shlex.join([str(LIFEBOAT), "--config", str(bench.paths.lb_config),
                           "--cluster", CLUSTER, "wal-push"])
    return " && ".join(f"{command} %p" for command in
                       [lifeboat, *(build.push_command() for build in bench.pgbackrests)])


def write_tool_configs(bench: Bench) -> None:
    """Every repository's directories and configuration files, owned by postgres."""
    paths = bench.paths
    for directory in (paths.lb_repo, paths.lb_cache):
        make_dir(bench, directory, 0o750)
    write_file(bench, paths.lb_config, lifeboat_config(bench.lb_url or paths.lb_repo, bench))
    for build in bench.pgbackrests:
        for directory in (build.repo, build.root / "log", build.root / "lock"):
            make_dir(bench, directory, 0o750)
        write_file(bench, build.config, build.config_text(build.repo, bench, bench.pgbackrest_extra))
