"""Backups and restores with Lifeboat, each pgBackRest build and pg_basebackup, each timed,
and one check that Lifeboat's restored copy starts and holds all the rows."""

from __future__ import annotations

import os
import re
import shlex
import shutil
from pathlib import Path

from bench.cluster import connect, query, stop_server
from bench.environment import CLUSTER, OS_USER, Bench, BenchError, log, run
from bench.files import file_sizes, make_dir, tree_bytes
from bench.pgbackrest import build_of
from bench.phases import lifeboat_phases, pgbackrest_phases
from bench.results import BackupResult, RestoreResult
from bench.timing import measured
from bench.tool_commands import lifeboat_cmd


def lifeboat_repo_files(bench: Bench) -> dict[str, int]:
    """Size of each pack, block list and manifest in Lifeboat's repository (the WAL archive
    left out)."""
    cluster_dir = bench.paths.lb_repo / "clusters" / CLUSTER
    return {**file_sizes(cluster_dir / "packs"), **file_sizes(cluster_dir / "lists"),
            **file_sizes(cluster_dir / "backups")}


def backup_lifeboat(bench: Bench, kind: str = "full") -> BackupResult:
    """``lifeboat backup`` (``--type incr --no-expire`` for an incremental); its bytes are
    what it added to the packs, block lists and manifests."""
    before = lifeboat_repo_files(bench)
    extra = [] if kind == "full" else ["--type", kind, "--no-expire"]
    result = measured(bench, lifeboat_cmd(bench.paths.lb_config, "backup", *extra))
    after = lifeboat_repo_files(bench)
    added = sum(max(0, size - before.get(path, 0)) for path, size in after.items())
    manifests = [Path(p) for p in after if p not in before and p.endswith(".manifest")]
    if len(manifests) != 1:
        raise BenchError(f"lifeboat backup wrote {len(manifests)} manifests, expected 1")
    label = manifests[0].name.removesuffix(".manifest")
    return BackupResult("lifeboat", label, result.seconds, added, result.max_rss_kib, manifests[0],
                        result.output.strip(), result.cpu_seconds,
                        lifeboat_phases(manifests[0], result.started_at, result.seconds))


def backup_pgbackrest(bench: Bench, tool: str, kind: str = "full") -> BackupResult:
    """``pgbackrest --type=KIND backup`` with the build ``tool``; its bytes are the new backup
    set directory."""
    build = build_of(bench, tool)
    sets = build.repo / "backup" / CLUSTER
    before = set(os.listdir(sets)) if sets.is_dir() else set()
    result = measured(bench, build.cmd(f"--type={kind}", "backup"))
    new = sorted(n for n in os.listdir(sets)
                 if n not in before and re.fullmatch(r"\d{8}-\d{6}F(_\d{8}-\d{6}[DI])?", n))
    if len(new) != 1:
        raise BenchError(f"pgbackrest backup made {len(new)} new backup sets, expected 1")
    location = sets / new[0]
    return BackupResult(tool, new[0], result.seconds, tree_bytes(location), result.max_rss_kib,
                        location, cpu_seconds=result.cpu_seconds,
                        phases=pgbackrest_phases(location / "backup.manifest", result.started_at,
                                                 result.seconds))


def backup_basebackup(bench: Bench, run_no: int) -> BackupResult:
    """``pg_basebackup`` to tar + client-side zstd; its bytes are the output directory."""
    target = make_dir(bench, bench.paths.basebackup / f"run{run_no}", 0o750)
    result = measured(bench, [bench.bin("pg_basebackup"), "-h", bench.paths.sock, "-p", str(bench.port),
                              "-U", OS_USER, "-w", "-D", target, "-Ft", "-Z", "client-zstd:3",
                              "-X", "fetch", "-c", "fast"])
    return BackupResult("basebackup", target.name, result.seconds, tree_bytes(target), result.max_rss_kib,
                        target, cpu_seconds=result.cpu_seconds)


def take_backup(bench: Bench, tool: str, run_no: int, kind: str = "full") -> BackupResult:
    """A backup of type ``kind`` (full, incr) with ``tool``; pg_basebackup only takes full ones."""
    if tool == "lifeboat":
        return backup_lifeboat(bench, kind)
    if tool == "basebackup":
        return backup_basebackup(bench, run_no)
    return backup_pgbackrest(bench, tool, kind)


def restore_command(bench: Bench, backup: BackupResult, target: Path,
                    delta: bool = False) -> list[str | Path]:
    """The command that restores ``backup`` into ``target`` (for pg_basebackup: tar, then sync);
    ``delta``: update the copy already in ``target`` in place (Lifeboat and pgBackRest)."""
    flags = ["--delta"] if delta else []
    if backup.tool == "lifeboat":
        return lifeboat_cmd(bench.paths.lb_config, "restore", *flags, "--pgdata", target,
                            "--backup", backup.label)
    if backup.tool.startswith("pgbackrest"):
        return build_of(bench, backup.tool).cmd(*flags, f"--set={backup.label}",
                                                f"--pg1-path={target}", "restore")
    archive = backup.location / "base.tar.zst"
    script = f"tar --zstd -xf {shlex.quote(str(archive))} -C {shlex.quote(str(target))} " \
             f"&& sync -f {shlex.quote(str(target))}"
    return ["/bin/sh", "-c", script]


def warm_page_cache(bench: Bench, nbytes: int) -> None:
    """Write and delete a scratch file of ``nbytes`` (untimed).

    On the development VM the first large write after a few idle seconds costs
    1.5 s more kernel time per 1.5 GB than the next one (page-cache allocation in
    the guest), which would penalise whichever restore happens to come first.
    """
    scratch = bench.paths.root / "scratch"
    chunk = bytes(1 << 20)
    with open(scratch, "wb") as handle:
        for _ in range(nbytes >> 20):
            handle.write(chunk)
    scratch.unlink()


def restore(bench: Bench, backup: BackupResult, warm_bytes: int, name: str | None = None,
            keep: bool = False) -> RestoreResult:
    """Restore ``backup`` into a new empty directory ``restore/NAME`` (default: the tool's
    name; no server start), then remove it unless ``keep``."""
    target = make_dir(bench, bench.paths.restore / (name or backup.tool))
    warm_page_cache(bench, warm_bytes)
    result = measured(bench, restore_command(bench, backup, target))
    if not (target / "global" / "pg_control").exists():
        raise BenchError(f"{backup.tool} restore left no global/pg_control in {target}")
    restored = tree_bytes(target)
    if not keep:
        shutil.rmtree(target)
    return RestoreResult(backup.tool, result.seconds, result.max_rss_kib, restored, result.cpu_seconds)


CHECKS = {"pgbench_accounts rows": "SELECT count(*) FROM pgbench_accounts",
          "grow rows": "SELECT count(*) FROM grow",
          "hot rows": "SELECT count(*) FROM hot",
          "hot updates": "SELECT coalesce(sum(counter), 0) FROM hot"}


def verify_lifeboat_restore(bench: Bench, expected: dict[str, int]) -> dict[str, int]:
    """Restore Lifeboat's newest backup, start it, compare the ``CHECKS`` with ``expected``."""
    target = make_dir(bench, bench.paths.verify)
    log(f"verifying: lifeboat restore --start into {target} (port {bench.verify_port})")
    bench.started.append(target)
    run(bench, lifeboat_cmd(bench.paths.lb_config, "restore", "--pgdata", target, "--start",
                            "--port", str(bench.verify_port), "--archive-mode", "off", "--force"))
    try:
        with connect(bench, bench.verify_port) as conn:
            found = {name: int(query(conn, sql)[0]) for name, sql in CHECKS.items()}
    finally:
        stop_server(bench, target)
    wrong = [f"{name}: {found[name]:,}, expected {expected[name]:,}"
             for name in CHECKS if found[name] != expected[name]]
    if wrong:
        raise BenchError("Lifeboat's restored copy differs from the source: " + "; ".join(wrong))
    log("restored copy: " + ", ".join(f"{name} {value:,}" for name, value in found.items()) + ": ok")
    shutil.rmtree(target)
    return found
