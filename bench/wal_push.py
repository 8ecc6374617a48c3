"""WAL push per segment: make segments, take them out of Lifeboat's archive, and time one
``wal-push`` / ``archive-push`` per segment into fresh archives."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import psycopg

from bench.cluster import connect, query, wait_archived
from bench.environment import CLUSTER, Bench, BenchError, log, run
from bench.files import file_sizes, make_dir, tree_bytes, write_file
from bench.pgbackrest import PgBackRest
from bench.results import PushResult
from bench.timing import timed_call
from bench.tool_commands import lifeboat_cmd, lifeboat_config

WAL_SEGMENTS = 12


def segment_name(timeline: int, segno: int, segment_size: int) -> str:
    """The WAL file name of segment number ``segno`` on ``timeline``."""
    per = 0x100000000 // segment_size
    return f"{timeline:08X}{segno // per:08X}{segno % per:08X}"


def current_segno(conn: psycopg.Connection, segment_size: int) -> int:
    """The number of the segment the server is writing now."""
    (position,) = query(conn, "SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint")
    return int(position) // segment_size


def generate_segments(bench: Bench, count: int) -> list[str]:
    """Write at least ``count`` complete WAL segments of pgbench_accounts updates."""
    with connect(bench) as conn:
        (size,) = query(conn, "SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size'")
        (timeline,) = query(conn, "SELECT timeline_id FROM pg_control_checkpoint()")
        first = current_segno(conn, size) + 1
        rows, chunk, aid = bench.scale * 100000, 20000, 1
        while current_segno(conn, size) < first + count:
            conn.execute("UPDATE pgbench_accounts SET abalance = abalance + 1 "
                         "WHERE aid >= %s AND aid < %s", (aid, aid + chunk))
            aid = 1 if aid + chunk > rows else aid + chunk
        wait_archived(bench, conn)
    return [segment_name(int(timeline), segno, int(size)) for segno in range(first, first + count)]


def fetch_segments(bench: Bench, names: list[str]) -> list[Path]:
    """Reconstruct the segments from Lifeboat's archive (wal-get), outside the server."""
    directory = make_dir(bench, bench.paths.segments, 0o750)
    paths = []
    for name in names:
        run(bench, lifeboat_cmd(bench.paths.lb_config, "wal-get", name, directory / name))
        paths.append(directory / name)
    return paths


def push_repo(bench: Bench, build: PgBackRest) -> Path:
    return bench.paths.root / "wal" / f"{build.key}-repo"


def push_config(bench: Bench, build: PgBackRest) -> Path:
    return bench.paths.root / "wal" / f"{build.key}.conf"


def fresh_archives(bench: Bench) -> None:
    """An empty Lifeboat repository (with the cluster's identity) and a new stanza for each
    pgBackRest build."""
    paths = bench.paths
    source = paths.lb_repo / "clusters" / CLUSTER / "cluster.json"
    cluster_dir = make_dir(bench, paths.push_lb_repo / "clusters" / CLUSTER, 0o750)
    for src, dest in ((source, cluster_dir / "cluster.json"),
                      (paths.lb_repo / "lifeboat.repo", paths.push_lb_repo / "lifeboat.repo")):
        if src.exists():
            shutil.copy2(src, dest)
            os.chown(dest, bench.user.uid, bench.user.gid)
    write_file(bench, paths.push_lb_config, lifeboat_config(paths.push_lb_repo, bench))
    for build in bench.pgbackrests:
        make_dir(bench, push_repo(bench, build), 0o750)
        write_file(bench, push_config(bench, build), build.config_text(push_repo(bench, build), bench))
        run(bench, build.cmd("stanza-create", config=push_config(bench, build)))


def push_segments(bench: Bench, segments: list[Path]) -> PushResult:
    """Push each segment into the fresh archives, each tool going first in turn."""
    paths = bench.paths
    for segment in segments:  # page cache warm for both tools
        segment.read_bytes()
    # The first wal-push of a new configuration validates it in full and caches the result;
    # in steady state (PostgreSQL's archiver) the cache is warm, so warm it here, untimed.
    run(bench, lifeboat_cmd(paths.push_lb_config, "wal-get", "000000010000000000000001",
                            paths.root / "warm-up"), check=False)
    tools = ["lifeboat", *(build.key for build in bench.pgbackrests)]
    result = PushResult(ms={tool: [] for tool in tools}, cpu_ms={tool: [] for tool in tools})
    for index, segment in enumerate(segments):
        commands = {"lifeboat": lifeboat_cmd(paths.push_lb_config, "wal-push", segment)}
        for build in bench.pgbackrests:
            commands[build.key] = build.cmd("archive-push", segment, config=push_config(bench, build))
        shift = index % len(tools)
        for tool in tools[shift:] + tools[:shift]:
            elapsed, cpu = timed_call(bench, commands[tool])
            result.ms[tool].append(elapsed)
            result.cpu_ms[tool].append(cpu)
    lb_wal = paths.push_lb_repo / "clusters" / CLUSTER / "wal"
    result.bytes["lifeboat"] = tree_bytes(lb_wal)
    pushed = {"lifeboat": sum(1 for p in lb_wal.rglob("0*") if p.is_file())}
    for build in bench.pgbackrests:
        archive = push_repo(bench, build) / "archive" / CLUSTER
        result.bytes[build.key] = sum(size for path, size in file_sizes(archive).items()
                                      if re.search(r"/[0-9A-F]{24}-[0-9a-f]{40}", path))
        pushed[build.key] = sum(1 for p in archive.rglob("0*-*") if p.is_file())
    if any(count != len(segments) for count in pushed.values()):
        raise BenchError(f"expected {len(segments)} segments in each fresh archive, found {pushed}")
    return result


def wal_push_benchmark(bench: Bench) -> PushResult:
    """Make ``WAL_SEGMENTS`` segments and time pushing each with both tools."""
    log(f"generating {WAL_SEGMENTS} WAL segments")
    names = generate_segments(bench, WAL_SEGMENTS)
    segments = fetch_segments(bench, names)
    fresh_archives(bench)
    log(f"timing wal-push / archive-push of {names[0]}..{names[-1]}")
    return push_segments(bench, segments)

