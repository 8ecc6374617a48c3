"""Lifeboat's ratios to pgBackRest 2.45 next to upstream pgBackRest 2.59.1's, from
/work/shared/PEERS.md (measured 2026-11-25 on the same kind of machine and workload: pgbench
scale 100 + 1.6 GB append-only `grow` + 10k-row `hot`; 2.59.1 with block incremental and
bundling). Debian only ships 2.45, so the harness measures 2.45 and compares ratios.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PeerItem:
    work: str
    unit: str  # "s" or "MiB" (Lifeboat and 2.45 as measured here)
    peers_245: str  # PEERS.md's 2.45 figure, as printed there
    peers_2591: str  # PEERS.md's 2.59.1 figure
    ratio_2591: float  # 2.59.1 / 2.45 in PEERS.md
    bar: float | None  # to lead, Lifeboat / 2.45 must be under this (PEERS.md); None: none stated


PEER_ITEMS: dict[str, PeerItem] = {
    "full_time": PeerItem("Full backup, time", "s", "10.62 s", "8.98 s", 0.85, 0.68),
    "full_bytes": PeerItem("Full backup, bytes", "MiB", "891 MB", "896 MB", 1.01, None),
    "pgbench_time": PeerItem("Incremental after pgbench, time", "s", "4.08 s", "3.62 s", 0.89, None),
    "pgbench_bytes": PeerItem("Incremental after pgbench, bytes", "MiB", "84.8 MB", "85.6 MB", 1.01, 1.0),
    "append_time": PeerItem("Incremental append-mostly, time", "s", "6.82 s", "1.81 s", 0.27, 0.27),
    "append_bytes": PeerItem("Incremental append-mostly, bytes", "MiB", "343 MB", "26.5 MB", 0.077,
                             0.077),
    "restore_time": PeerItem("Restore of that incremental into an empty directory, time", "s",
                             "4.98 s", "5.42 s", 1.09, 0.8),
}

Measured = dict[str, tuple[float | None, float | None]]  # key -> (Lifeboat, pgBackRest 2.45)


def _value(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    return f"{value:.2f} s" if unit == "s" else f"{value:,.1f} MiB"


def _row(item: PeerItem, lifeboat: float | None, pgbackrest: float | None) -> str:
    ratio = lifeboat / pgbackrest if lifeboat is not None and pgbackrest else None
    if ratio is None:
        versus = lead = "—"
    else:
        versus = "ahead" if ratio < item.ratio_2591 else "**behind**"
        lead = "—" if item.bar is None else ("yes" if ratio < item.bar else "**no**")
    cells = [item.work, _value(lifeboat, item.unit), _value(pgbackrest, item.unit), item.peers_245,
             item.peers_2591, "—" if ratio is None else f"{ratio:.3f}x", f"{item.ratio_2591}x",
             versus, "—" if item.bar is None else f"< {item.bar}x", lead]
    return "| " + " | ".join(cells) + " |"


def peers_section(measured: Measured) -> list[str]:
    """The Markdown section: one row per PEERS.md figure that this run measured."""
    lines = [
        "## Against the peers (PEERS.md)",
        "",
        "PEERS.md measured pgBackRest 2.45 and upstream 2.59.1 (block incremental + bundle) on the",
        "same workload; only 2.45 runs here, so Lifeboat's ratio to 2.45 stands beside 2.59.1's.",
        "To lead, Lifeboat's ratio must be under the bar PEERS.md states: full backup 0.68x time",
        "(0.8 x 2.59.1's 0.85x); append-mostly incremental 0.077x bytes and 0.27x time (2.59.1's",
        "ratios); pgbench incremental 1.0x bytes; restore 0.8x time. PEERS.md states no bar for the",
        "other rows; there \"Lifeboat vs 2.59.1\" only compares the two ratios. Restore = the newest",
        "(append-mostly) incremental into an empty directory, as in PEERS.md.",
        "",
        "| Work | Lifeboat here | 2.45 here | 2.45 in PEERS.md | 2.59.1 in PEERS.md "
        "| Lifeboat / 2.45 | 2.59.1 / 2.45 | Lifeboat vs 2.59.1 | To lead | Under the bar |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for key, item in PEER_ITEMS.items():
        lifeboat, pgbackrest = measured.get(key, (None, None))
        lines.append(_row(item, lifeboat, pgbackrest))
    return lines
