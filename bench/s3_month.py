"""A simulated month of daily backups on S3, with Lifeboat's tiers, and what it costs.

Each simulated day lasts ``day_seconds`` of wall clock: a short pgbench run, a backup with
each tool (a full one every seventh day, an incremental otherwise, as a weekly-full
schedule has it), then ``lifeboat tier`` (the agent's tiering job) and a sleep to the end of
the day. Lifeboat's tier ages are the seed's (hot 7 days, warm 30, cold 365) scaled to the
simulated day: hot in STANDARD (the repository), warm in STANDARD_IA, cold in GLACIER, each
one prefix of the store. The seed's replication counts (hot 2, warm 2, cold 3) are priced, not
simulated: a replica holds the same bytes as the copy measured (the replication machinery is
tested in tests/unit/test_tiers.py), and copying and verifying every replica through moto
made a simulated day's work longer than the day. pgBackRest keeps the same backups in one
STANDARD repository (it has no tiers). At the end the bytes each tier holds are listed and
priced at list prices; so are the requests each tool made during the month.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from bench.environment import Bench, log, run
from bench.s3_store import RequestCounts, S3Store
from bench.tool_commands import lifeboat_cmd

#: USD per GB-month of storage, and per 1,000 requests, AWS S3 us-east-1 list prices
#: (published 2024-2025; edit here when they change).
STORAGE_PRICE = {"STANDARD": 0.023, "STANDARD_IA": 0.0125, "GLACIER": 0.0036, "DEEP_ARCHIVE": 0.00099}
PUT_PRICE = {"STANDARD": 0.005, "STANDARD_IA": 0.01, "GLACIER": 0.03, "DEEP_ARCHIVE": 0.05}
GET_PRICE = 0.0004  # GET, HEAD, LIST-like reads of STANDARD (the others bill retrievals apart)
GB = 1000**3

#: tier -> (storage class, replication, age in simulated days)
TIERS = {"hot": ("STANDARD", 2, 7), "warm": ("STANDARD_IA", 2, 30), "cold": ("GLACIER", 3, 365)}


@dataclass
class Month:
    days: int
    day_seconds: float
    tier_bytes: dict[str, int] = field(default_factory=dict)  # tier -> bytes in all its storages
    tier_backups: dict[str, int] = field(default_factory=dict)  # tier -> backups it holds
    pgbackrest_bytes: int = 0
    requests: dict[str, dict[str, int]] = field(default_factory=dict)  # tool -> method -> count
    overruns: int = 0  # days whose work took longer than day_seconds


def tier_prefixes(tier: str) -> list[str]:
    """Where a tier's storage is in Lifeboat's bucket (hot's is the repository)."""
    return ["repo"] if tier == "hot" else [tier]


def tiers_config(store: S3Store, bucket: str, day_seconds: float, url_of: object) -> str:
    """The ``[repository.tiers]`` tables of the simulation (ages in seconds)."""
    lines = ['[repository.tiers]', 'interval = "1h"', '']
    for tier, (storage_class, _copies, age_days) in TIERS.items():
        lines += [f"[repository.tiers.{tier}]", f'age = "{age_days * day_seconds:.0f}s"']
        if tier != "hot":  # hot is the repository itself
            url = url_of(store, tier_prefixes(tier)[0])  # type: ignore[operator]
            lines.append(f'storage = "{url}&storage_class={storage_class}"')
        lines.append("")
    return "\n".join(lines)


def simulate(bench: Bench, store: S3Store, bucket: str, pgbackrest_bucket: str, days: int,
             day_seconds: float, backup: object, pgbench: object) -> Month:
    """``days`` simulated days; ``backup(tool, kind)`` takes one backup, ``pgbench(seconds)``
    changes the data."""
    month = Month(days, day_seconds)
    by_tool = {tool: RequestCounts() for tool in ("lifeboat", "pgbackrest")}
    for day in range(days):
        started = time.monotonic()
        pgbench(2)  # type: ignore[operator]
        kind = "full" if day % 7 == 0 else "incr"
        for tool in ("lifeboat", "pgbackrest"):
            mark = store.app.snapshot()
            backup(tool, kind)  # type: ignore[operator]
            if tool == "lifeboat":
                run(bench, lifeboat_cmd(bench.paths.lb_config, "tier"), check=False)
            spent = store.app.snapshot().since(mark)
            by_tool[tool].by_method.update(spent.by_method)
        took = time.monotonic() - started
        log(f"day {day + 1}/{days}: {kind} backups and tiering in {took:.1f}s")
        if took > day_seconds:
            month.overruns += 1
        else:
            time.sleep(day_seconds - took)
    run(bench, lifeboat_cmd(bench.paths.lb_config, "tier"), check=False)
    info = run(bench, lifeboat_cmd(bench.paths.lb_config, "info", "--output", "json")).stdout
    month.tier_backups = _backups_per_tier(info)
    for tier in TIERS:
        month.tier_bytes[tier] = sum(store.bucket_bytes(bucket, f"{prefix}/")
                                     for prefix in tier_prefixes(tier))
    month.pgbackrest_bytes = store.bucket_bytes(pgbackrest_bucket)
    month.requests = {tool: dict(counts.by_method) for tool, counts in by_tool.items()}
    return month


def _backups_per_tier(info_json: str) -> dict[str, int]:
    """How many backups ``lifeboat info --output json`` places in each tier."""
    import json

    found: dict[str, int] = {}
    report = json.loads(info_json)
    for cluster in report["clusters"] if isinstance(report, dict) and "clusters" in report else report:
        for backup in cluster.get("backups", []):
            tier = str(backup.get("tier", "hot"))
            found[tier] = found.get(tier, 0) + 1
    return found


def monthly_cost(month: Month) -> list[str]:
    """The Markdown table of bytes and monthly cost per tier, beside pgBackRest's one repository."""
    lines = [f"## A simulated month on S3: {month.days} daily backups (full every 7th day)", "",
             f"One simulated day = {month.day_seconds:.0f} s of wall clock (days that overran it: "
             f"{month.overruns}); tier ages and replication are the seed's. Storage priced at AWS "
             "us-east-1 list prices per GB-month; requests at list prices per 1,000 (PUT, POST and "
             "DELETE billed as PUT in the tier's class; GET and HEAD as STANDARD reads).", "",
             "| Where | Storage class | Backups | Bytes of one copy | Copies (priced) | Storage $/month |",
             "|---|---|---:|---:|---:|---:|"]
    total, held_all = 0.0, 0
    for tier, (storage_class, copies, _age) in TIERS.items():
        held = month.tier_bytes.get(tier, 0)
        cost = held * copies / GB * STORAGE_PRICE[storage_class]
        total, held_all = total + cost, held_all + held * copies
        lines.append(f"| Lifeboat {tier} | {storage_class} | {month.tier_backups.get(tier, 0)} | "
                     f"{held / 1024**2:,.1f} MiB | {copies} | {cost:.6f} |")
    pgb = month.pgbackrest_bytes / GB * STORAGE_PRICE["STANDARD"]
    pgb3 = month.pgbackrest_bytes * 3 / GB * STORAGE_PRICE["STANDARD"]
    lines += [f"| Lifeboat, all tiers and copies | | | {held_all / 1024**2:,.1f} MiB in all | | "
              f"{total:.6f} |",
              f"| pgBackRest (one repository) | STANDARD | {month.days} | "
              f"{month.pgbackrest_bytes / 1024**2:,.1f} MiB | 1 | {pgb:.6f} |",
              f"| pgBackRest with 3 copies (repo1-3) | STANDARD | {month.days} | "
              f"{month.pgbackrest_bytes / 1024**2:,.1f} MiB | 3 | {pgb3:.6f} |", ""]
    lines += ["| Tool | Requests in the month | Request $ (list) |", "|---|---:|---:|"]
    for tool, counts in month.requests.items():
        writes = sum(counts.get(m, 0) for m in ("PUT", "POST", "DELETE"))
        reads = sum(counts.get(m, 0) for m in ("GET", "HEAD"))
        dollars = writes / 1000 * PUT_PRICE["STANDARD"] + reads / 1000 * GET_PRICE
        lines.append(f"| {'Lifeboat (with tiering)' if tool == 'lifeboat' else 'pgBackRest'} | "
                     f"{sum(counts.values()):,} | {dollars:.4f} |")
    lines += ["", "Bytes of one copy are measured; the seed's replication counts (hot 2, warm 2, cold 3) "
              "multiply them in the price. Requests are those of the simulation (one copy per tier). "
              "Costs scale with the database: multiply by (your database size / this one's).", ""]
    return lines
