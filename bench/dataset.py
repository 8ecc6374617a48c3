"""The data set of PEERS.md's reference workload and the changes between incrementals.

- ``pgbench -i -s SCALE`` (the pgbench tables);
- ``grow``: an append-only table of about ``--grow-mb`` MiB. Each row is an id and 128
  hex characters (four salted md5 digests of the id), about 172 bytes on the page, so 47
  rows per 8 KiB page. Hex text has 4 bits of information per byte, so the table
  compresses to roughly half with zstd, not absurdly well, and never the same block twice;
- ``hot``: 10,000 rows that the append-mostly scenario updates one at a time.

After loading, ``VACUUM (FREEZE, ANALYZE)`` sets hint bits, visibility map and freeze
state once, so the first read of a page does not dirty it later (with data checksums a
hint-bit write would add whole pages to an incremental that no transaction changed).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

import psycopg

from bench.cluster import connect, query, wait_archived
from bench.environment import OS_USER, Bench, log, run
from bench.report import MiB

HOT_ROWS = 10_000
HOT_UPDATES = 1000
BATCH_ROWS = 1_000_000
ROW_BYTES_GUESS = 8192 / 47  # used only when `grow` is empty (--grow-mb 0)
GROW_ROWS_SQL = ("INSERT INTO grow SELECT g, md5('a' || g) || md5('b' || g) || md5('c' || g) "
                 "|| md5('d' || g) FROM generate_series(%s::bigint, %s::bigint) AS g")


@dataclass
class Dataset:
    """What was loaded and appended; the harness tracks row counts so it never scans `grow`."""

    grow_rows: int = 0  # now
    grow_bytes: int = 0  # at load
    loaded_rows: int = 0  # at load
    hot_rows: int = 0
    hot_updates: int = 0
    appended_bytes: list[int] = field(default_factory=list)
    pgbench_tps: list[float] = field(default_factory=list)

    def row_bytes(self) -> float:
        return self.grow_bytes / self.loaded_rows if self.loaded_rows else ROW_BYTES_GUESS


def relation_bytes(conn: psycopg.Connection, name: str) -> int:
    (size,) = query(conn, "SELECT pg_relation_size(%s::regclass)", (name,))
    return int(size)


def insert_grow_rows(conn: psycopg.Connection, first: int, count: int) -> None:
    """Rows ``first`` .. ``first + count - 1`` of `grow`, in statements of BATCH_ROWS rows."""
    for start in range(first, first + count, BATCH_ROWS):
        conn.execute(GROW_ROWS_SQL, (start, min(start + BATCH_ROWS, first + count) - 1))


def load_grow(conn: psycopg.Connection, target_bytes: int, data: Dataset) -> None:
    """Fill `grow` to about ``target_bytes``: a first batch measures the bytes per row."""
    conn.execute("CREATE TABLE grow (id bigint NOT NULL, payload text NOT NULL)")
    if target_bytes <= 0:
        return
    first = max(1, min(200_000, int(target_bytes / ROW_BYTES_GUESS)))
    insert_grow_rows(conn, 1, first)
    per_row = relation_bytes(conn, "grow") / first
    rest = max(0, round(target_bytes / per_row) - first)
    insert_grow_rows(conn, first + 1, rest)
    data.grow_rows = data.loaded_rows = first + rest
    data.grow_bytes = relation_bytes(conn, "grow")


def load_data(bench: Bench) -> Dataset:
    """pgbench tables, `grow` and `hot`, frozen, archived and checkpointed."""
    paths, data = bench.paths, Dataset()
    log(f"pgbench -i -s {bench.scale}")
    started = time.perf_counter()
    run(bench, [bench.bin("pgbench"), "-i", "-q", "-s", str(bench.scale), "-h", paths.sock,
                "-p", str(bench.port), "-U", OS_USER, "postgres"])
    log(f"pgbench -i took {time.perf_counter() - started:.1f}s; loading grow ({bench.grow_mb} MiB) "
        f"and hot ({HOT_ROWS} rows)")
    started = time.perf_counter()
    with connect(bench) as conn:
        load_grow(conn, bench.grow_mb * MiB, data)
        conn.execute("CREATE TABLE hot (id int PRIMARY KEY, counter bigint NOT NULL, "
                     "note text NOT NULL)")
        conn.execute("INSERT INTO hot SELECT g, 0, md5(g::text) FROM generate_series(1, %s) AS g",
                     (HOT_ROWS,))
        data.hot_rows = HOT_ROWS
        conn.execute("VACUUM (FREEZE, ANALYZE) grow, hot")
        log(f"grow: {data.grow_rows:,} rows, {data.grow_bytes / MiB:,.0f} MiB; took "
            f"{time.perf_counter() - started:.1f}s; waiting for the archiver")
        wait_archived(bench, conn)
        conn.execute("CHECKPOINT")
    return data


def run_pgbench(bench: Bench, data: Dataset) -> None:
    """``pgbench -c 4 -j 2 -T N`` (TPC-B-like, the default script) against the database."""
    log(f"pgbench -c 4 -j 2 -T {bench.pgbench_seconds}")
    done = run(bench, [bench.bin("pgbench"), "-c", "4", "-j", "2", "-T", str(bench.pgbench_seconds),
                       "-h", bench.paths.sock, "-p", str(bench.port), "-U", OS_USER, "postgres"])
    for line in done.stdout.splitlines():
        if line.startswith("tps ="):
            data.pgbench_tps.append(float(line.split()[2]))
            break


def append_and_update(bench: Bench, data: Dataset, seed: int) -> None:
    """Append about ``--append-mb`` MiB to `grow`, then 1000 single-row UPDATEs of `hot`."""
    rows = round(bench.append_mb * MiB / data.row_bytes())
    log(f"appending {rows:,} rows (~{bench.append_mb} MiB) to grow, {HOT_UPDATES} updates of hot")
    rng = random.Random(seed)
    with connect(bench) as conn:
        before = relation_bytes(conn, "grow")
        insert_grow_rows(conn, data.grow_rows + 1, rows)
        data.grow_rows += rows
        for _ in range(HOT_UPDATES):  # autocommit: one transaction per UPDATE
            conn.execute("UPDATE hot SET counter = counter + 1, note = md5(random()::text) "
                         "WHERE id = %s", (rng.randint(1, HOT_ROWS),))
        data.hot_updates += HOT_UPDATES
        data.appended_bytes.append(relation_bytes(conn, "grow") - before)


def quiesce(bench: Bench) -> None:
    """Archive everything written so far and checkpoint: both tools then start from the
    same idle state, and neither pays for flushing the workload's dirty buffers."""
    with connect(bench) as conn:
        wait_archived(bench, conn)
        conn.execute("CHECKPOINT")
        wait_archived(bench, conn)
