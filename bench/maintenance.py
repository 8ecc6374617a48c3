"""Verify and expire, timed once at the end of a run with Lifeboat and each pgBackRest:
``verify`` re-reads every backup (and the WAL it needs), ``expire`` keeps only the newest
full backup (and what the backups after it need)."""

from __future__ import annotations

from bench.environment import Bench, log
from bench.files import write_file
from bench.results import CommandResult, Results
from bench.timing import measured
from bench.tool_commands import lifeboat_cmd, lifeboat_config

EXPIRE_RETENTION = '\n[retention]\nfull = 1\ngc_grace = "0s"\n'


def _timed(bench: Bench, results: Results, name: str, tool: str, command: list) -> None:
    log(f"{tool} {name}")
    done = measured(bench, command)
    summary = done.output.strip().splitlines()[-1] if tool == "lifeboat" and done.output.strip() else ""
    results.maintenance[name][tool].append(CommandResult(tool, done.seconds, done.max_rss_kib, summary,
                                                         done.cpu_seconds))
    log(f"  {done.seconds:.2f}s, max RSS {done.max_rss_kib // 1024} MiB")


def maintenance_benchmark(bench: Bench, results: Results) -> None:
    """``verify`` with every tool, then ``expire`` with every tool."""
    expire_config = write_file(bench, bench.paths.root / "lifeboat" / "lifeboat-expire.toml",
                               lifeboat_config(bench.paths.lb_repo, bench, EXPIRE_RETENTION))
    _timed(bench, results, "verify", "lifeboat", lifeboat_cmd(bench.paths.lb_config, "verify"))
    for build in bench.pgbackrests:
        _timed(bench, results, "verify", build.key, build.cmd("verify"))
    _timed(bench, results, "expire", "lifeboat", lifeboat_cmd(expire_config, "expire"))
    for build in bench.pgbackrests:
        _timed(bench, results, "expire", build.key, build.cmd("--repo1-retention-full=1", "expire"))
