#!/usr/bin/env python3
"""Lifeboat against pgBackRest with both repositories on the S3 API (moto on loopback, over TLS).

Run as root with the project's virtualenv::

    .venv/bin/python bench/s3_run.py [--scale 20] [--grow-mb 200] [--runs 2] \\
        [--pgbench-seconds 10] [--pgbackrest /var/tmp/pgbackrest-new/pgbackrest] \\
        [--pgbackrest-block] [--out bench/results/s3.md] [--keep]

One throw-away cluster archives every WAL segment into a Lifeboat repository
(``s3://bench-lifeboat/...``) and a pgBackRest repository (``repo1-type=s3``, bucket
``bench-pgbackrest``) on the same endpoint. Full backups, incrementals after pgbench,
restores of the newest backup into empty directories and per-segment WAL pushes are timed;
every request the store answers during each command is counted (bench/s3_store.py), so the
report gives requests per backup and per restored GiB beside the times and bytes stored.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

if not __package__:  # run as a script: make the package `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cluster import connect, query, set_up
from bench.dataset import load_data
from bench.environment import (
    LIFEBOAT,
    REPO_ROOT,
    STARTED_AT,
    Bench,
    BenchError,
    Paths,
    find_pg_bin,
    free_port,
    log,
    run,
)
from bench.files import make_dir, tree_bytes
from bench.harness import execute, preflight
from bench.pgbackrest import PgBackRest, builds
from bench.s3_month import monthly_cost, simulate, tiers_config
from bench.s3_store import ACCESS_KEY, REGION, SECRET_KEY, RequestCounts, S3Store
from bench.timing import measured, timed_call
from bench.tool_commands import lifeboat_cmd
from bench.wal_push import fetch_segments, generate_segments

LIFEBOAT_BUCKET = "bench-lifeboat"
PGBACKREST_BUCKET = "bench-pgbackrest"
NEW_PGBACKREST = "/var/tmp/pgbackrest-new/pgbackrest"
PUSHED_SEGMENTS = 8
GiB = 1024**3
MiB = 1024**2
METHODS = ("GET", "HEAD", "PUT", "POST", "DELETE")


@dataclass
class Timed:
    """One timed command on S3: wall clock, CPU, peak RSS, the requests it made and bytes added."""

    seconds: float
    cpu_seconds: float
    max_rss_kib: int
    requests: RequestCounts
    stored_bytes: int = 0  # bucket bytes added (backups), or bytes restored (restores)


@dataclass
class S3Results:
    tools: tuple[str, ...]
    titles: dict[str, str]
    database_bytes: int = 0
    work: dict[str, dict[str, list[Timed]]] = field(default_factory=dict)  # work -> tool -> runs
    push_ms: dict[str, list[float]] = field(default_factory=dict)
    push_requests: dict[str, int] = field(default_factory=dict)
    versions: list[str] = field(default_factory=list)
    total_seconds: float = 0.0

    def add(self, work: str, tool: str, timed: Timed) -> None:
        self.work.setdefault(work, {t: [] for t in self.tools})[tool].append(timed)


def pgbackrest_s3_lines(store: S3Store) -> str:
    return (f"repo1-type=s3\nrepo1-s3-bucket={PGBACKREST_BUCKET}\nrepo1-s3-endpoint=127.0.0.1\n"
            f"repo1-storage-port={store.port}\nrepo1-s3-region={REGION}\nrepo1-s3-key={ACCESS_KEY}\n"
            f"repo1-s3-key-secret={SECRET_KEY}\nrepo1-s3-uri-style=path\n"
            f"repo1-storage-ca-file={store.cert}\n")


def lifeboat_url(store: S3Store, prefix: str) -> str:
    return f"s3://{LIFEBOAT_BUCKET}/{prefix}?endpoint={store.endpoint}&region={REGION}&addressing=path"


def bucket_of(tool: str) -> str:
    return LIFEBOAT_BUCKET if tool == "lifeboat" else PGBACKREST_BUCKET


def timed_on(store: S3Store, bench: Bench, tool: str, command: list, *, count_bytes: bool = True) -> Timed:
    """Run ``command`` as postgres, counting the store's requests meanwhile; with
    ``count_bytes`` the bucket bytes it added (listed after the count is taken)."""
    before_bytes = store.bucket_bytes(bucket_of(tool)) if count_bytes else 0
    before = store.app.snapshot()
    result = measured(bench, command)
    requests = store.app.snapshot().since(before)
    added = store.bucket_bytes(bucket_of(tool)) - before_bytes if count_bytes else 0
    return Timed(result.seconds, result.cpu_seconds, result.max_rss_kib, requests, added)


def backup_command(bench: Bench, tool: str, kind: str) -> list:
    if tool == "lifeboat":
        return lifeboat_cmd(bench.paths.lb_config, "backup", *([] if kind == "full" else
                                                                ["--type", kind, "--no-expire"]))
    return bench.pgbackrests[0].cmd(f"--type={kind}", "backup")


def restore_command(bench: Bench, tool: str, target: Path) -> list:
    """The newest backup into ``target``."""
    if tool == "lifeboat":
        return lifeboat_cmd(bench.paths.lb_config, "restore", "--pgdata", target)
    return bench.pgbackrests[0].cmd(f"--pg1-path={target}", "restore")


def pgbench(bench: Bench, seconds: int) -> None:
    run(bench, [bench.bin("pgbench"), "-h", bench.paths.sock, "-p", str(bench.port), "-c", "4", "-j", "2",
                "-T", str(seconds), "-n", "postgres"], timeout=seconds + 600)


def measure_s3(bench: Bench, store: S3Store, results: S3Results) -> None:
    """Rounds of full backup, pgbench, incremental, and restores of the newest backup."""
    for run_no in range(1, bench.runs + 1):
        shift = (run_no - 1) % len(results.tools)
        order = results.tools[shift:] + results.tools[:shift]
        for kind, work in (("full", "full backup"), ("incr", "incremental after pgbench")):
            if kind == "incr":
                log(f"run {run_no}: pgbench -T {bench.pgbench_seconds}")
                pgbench(bench, bench.pgbench_seconds)
            for tool in order:
                done = timed_on(store, bench, tool, backup_command(bench, tool, kind))
                results.add(work, tool, done)
                log(f"run {run_no}: {tool} {work}: {done.seconds:.2f}s, {done.requests.total} requests, "
                    f"{done.stored_bytes / MiB:.1f} MiB")
        for tool in order:
            target = make_dir(bench, bench.paths.restore / tool)
            done = timed_on(store, bench, tool, restore_command(bench, tool, target), count_bytes=False)
            if not (target / "global" / "pg_control").exists():
                raise BenchError(f"{tool} restore from S3 left no global/pg_control in {target}")
            done.stored_bytes = tree_bytes(target)
            shutil.rmtree(target)
            results.add("restore of the newest backup", tool, done)
            log(f"run {run_no}: {tool} restore: {done.seconds:.2f}s, {done.requests.total} requests")


def measure_push(bench: Bench, store: S3Store, results: S3Results) -> None:
    """Per-segment pushes into fresh archives on S3: Lifeboat's under another prefix (with the
    cluster's identity copied), pgBackRest's in a new stanza."""
    names = generate_segments(bench, PUSHED_SEGMENTS)
    segments = fetch_segments(bench, names)
    client = store.client()
    for key in ("lifeboat.repo", "clusters/bench/cluster.json"):
        client.copy_object(Bucket=LIFEBOAT_BUCKET, Key=f"push/{key}",
                           CopySource={"Bucket": LIFEBOAT_BUCKET, "Key": f"repo/{key}"})
    config = bench.paths.root / "push-lifeboat.toml"
    text = bench.paths.lb_config.read_text().replace(lifeboat_url(store, "repo"), lifeboat_url(store, "push"))
    config.write_text(text)
    build: PgBackRest = bench.pgbackrests[0]
    pgb_config = bench.paths.root / "push-pgbackrest.conf"
    pgb_config.write_text(build.config.read_text().replace(f"repo1-path={build.repo}",
                                                           f"repo1-path={build.repo}-push"))
    for path in (config, pgb_config):
        os.chown(path, bench.user.uid, bench.user.gid)
    run(bench, build.cmd("stanza-create", config=pgb_config))
    commands = {"lifeboat": lambda s: lifeboat_cmd(config, "wal-push", s),
                "pgbackrest": lambda s: build.cmd("archive-push", s, config=pgb_config)}
    for tool in results.tools:
        results.push_ms[tool] = []
    before = {tool: 0 for tool in results.tools}
    for index, segment in enumerate(segments):
        order = results.tools if index % 2 == 0 else results.tools[::-1]
        for tool in order:
            start = store.app.snapshot()
            elapsed, _cpu = timed_call(bench, commands[tool](segment))
            results.push_ms[tool].append(elapsed)
            before[tool] += store.app.snapshot().since(start).total
    results.push_requests = {tool: round(before[tool] / len(segments)) for tool in results.tools}


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def render(results: S3Results, bench: Bench) -> str:
    lb, pgb = results.tools
    lines = [
        "# Lifeboat on S3", "",
        f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; whole run "
        f"{results.total_seconds / 60:.1f} min; runs: {bench.runs} (medians)",
        f"- Data: pgbench scale {bench.scale} + `grow` {bench.grow_mb} MiB + `hot` "
        f"(databases {results.database_bytes / MiB:,.0f} MiB); pgbench -T {bench.pgbench_seconds} "
        "before each incremental",
        "- Store: moto's S3 API in the harness's process on https://127.0.0.1 (self-signed "
        "certificate), the same endpoint for both tools; every request counted",
        f"- Versions: {'; '.join(results.versions)}", "",
        f"| Work | {results.titles[lb]} | {results.titles[pgb]} | Lifeboat / it |",
        "|---|---:|---:|---:|",
    ]

    def row(label: str, a: float, b: float, fmt: str) -> None:
        ratio = f"{a / b:.2f}x" if b else "—"
        lines.append(f"| {label} | {fmt.format(a)} | {fmt.format(b)} | {ratio} |")

    for work, by_tool in results.work.items():
        runs = {tool: by_tool[tool] for tool in results.tools}
        row(f"{work.capitalize()}, wall clock", median([t.seconds for t in runs[lb]]),
            median([t.seconds for t in runs[pgb]]), "{:.2f} s")
        row(f"{work.capitalize()}, CPU time", median([t.cpu_seconds for t in runs[lb]]),
            median([t.cpu_seconds for t in runs[pgb]]), "{:.2f} s")
        row(f"{work.capitalize()}, requests", median([t.requests.total for t in runs[lb]]),
            median([t.requests.total for t in runs[pgb]]), "{:,.0f}")
        if work.startswith("restore"):
            per_gib = {tool: median([t.requests.total * GiB / t.stored_bytes for t in runs[tool]])
                       for tool in (lb, pgb)}
            row("Requests per restored GiB", per_gib[lb], per_gib[pgb], "{:,.0f}")
        else:
            row(f"{work.capitalize()}, bytes stored", median([t.stored_bytes / MiB for t in runs[lb]]),
                median([t.stored_bytes / MiB for t in runs[pgb]]), "{:,.1f} MiB")
        row(f"{work.capitalize()}, peak RSS", median([t.max_rss_kib / 1024 for t in runs[lb]]),
            median([t.max_rss_kib / 1024 for t in runs[pgb]]), "{:.0f} MiB")
    row("WAL push, median per 16 MiB segment", median(results.push_ms[lb]), median(results.push_ms[pgb]),
        "{:.0f} ms")
    row("WAL push, requests per segment", results.push_requests[lb], results.push_requests[pgb], "{:.0f}")
    lines += ["", "Requests by method (medians of the runs):", "",
              "| Work | Tool | " + " | ".join(METHODS) + " |",
              "|---|---|" + "---:|" * 5]
    for work, by_tool in results.work.items():
        for tool in results.tools:
            counts = [t.requests.by_method for t in by_tool[tool]]
            cells = [f"{median([c.get(m, 0) for c in counts]):,.0f}" for m in METHODS]
            lines.append(f"| {work} | {results.titles[tool]} | " + " | ".join(cells) + " |")
    lines += ["", "GET includes listings (ListObjectsV2); POST is multipart upload creation and "
              "completion and multi-object delete; PUT includes upload parts.", ""]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=int, default=20)
    parser.add_argument("--grow-mb", type=int, default=200)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--pgbench-seconds", type=int, default=10)
    parser.add_argument("--pgbackrest", default=NEW_PGBACKREST if Path(NEW_PGBACKREST).exists()
                        else "/usr/bin/pgbackrest")
    parser.add_argument("--pgbackrest-block", action="store_true")
    parser.add_argument("--workdir", type=Path, default=Path("/var/tmp/lifeboat-bench-s3"))
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results" / "s3.md")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--days", type=int, default=30,
                        help="simulated days of daily backups with tiers, priced (0: none; default 30)")
    parser.add_argument("--month-only", action="store_true",
                        help="only the simulated month (a small --scale keeps its days short)")
    parser.add_argument("--day-seconds", type=float, default=20.0,
                        help="wall-clock seconds of one simulated day (default 20)")
    args = parser.parse_args(argv)
    if args.scale < 1 or args.runs < 1 or args.pgbench_seconds < 1 or args.grow_mb < 0:
        parser.error("--scale, --runs and --pgbench-seconds must be at least 1, --grow-mb not negative")
    args.workdir = args.workdir.absolute()
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    user = preflight("s3_run.py", [args.pgbackrest])
    if isinstance(user, int):
        return user
    try:
        compared = builds([args.pgbackrest], args.pgbackrest_block, args.workdir)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    tls = Path(f"{args.workdir}-tls")
    tls.mkdir(mode=0o755, exist_ok=True)
    store = S3Store(free_port(), tls)
    os.environ.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY,
                      AWS_DEFAULT_REGION=REGION, AWS_CA_BUNDLE=str(store.cert))
    for bucket in (LIFEBOAT_BUCKET, PGBACKREST_BUCKET):
        store.make_bucket(bucket)
    ports = [free_port([store.port])]
    ports.append(free_port([store.port, *ports]))
    bench = Bench(Paths.under(args.workdir), user, find_pg_bin(), args.scale, args.runs, *ports,
                  grow_mb=args.grow_mb, append_mb=0, pgbench_seconds=args.pgbench_seconds,
                  pgbackrests=compared, lb_url=lifeboat_url(store, "repo"),
                  pgbackrest_extra=pgbackrest_s3_lines(store))

    def measure(bench: Bench) -> str:
        results = S3Results(("lifeboat", "pgbackrest"),
                            {"lifeboat": "Lifeboat", "pgbackrest": compared[0].label})
        version = set_up(bench)
        lifeboat = run(bench, [LIFEBOAT, "version"]).stdout.strip()
        results.versions = [f"PostgreSQL {version}", compared[0].label, lifeboat]
        load_data(bench)
        with connect(bench) as conn:
            (size,) = query(conn, "SELECT sum(pg_database_size(oid)) FROM pg_database")
        results.database_bytes = int(size)
        if not args.month_only:
            measure_s3(bench, store, results)
            log(f"timing {PUSHED_SEGMENTS} WAL pushes per tool")
            measure_push(bench, store, results)
        month = None
        if args.days:
            with open(bench.paths.lb_config, "a") as config:  # tiers from now on
                config.write("\n" + tiers_config(store, LIFEBOAT_BUCKET, args.day_seconds, lifeboat_url))
            month = simulate(bench, store, LIFEBOAT_BUCKET, PGBACKREST_BUCKET, args.days, args.day_seconds,
                             lambda tool, kind: run(bench, backup_command(bench, tool, kind)),
                             lambda seconds: pgbench(bench, seconds))
        results.total_seconds = time.monotonic() - STARTED_AT
        head = render(results, bench) if not args.month_only else \
            f"# Lifeboat on S3: a simulated month\n\n- Versions: {'; '.join(results.versions)}\n" \
            f"- Data: pgbench scale {bench.scale} + `grow` {bench.grow_mb} MiB " \
            f"(databases {results.database_bytes / MiB:,.0f} MiB)\n\n"
        return head + ("\n".join(monthly_cost(month)) if month else "")

    try:
        return execute(bench, args, measure)
    finally:
        store.stop()
        shutil.rmtree(tls, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
