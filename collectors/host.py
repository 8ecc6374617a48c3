"""The host's load, I/O utilisation and network bandwidth (the seed's resource monitoring),
read from /proc between two refreshes, so throttling can be seen next to its causes."""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field

_SECTOR_DEVICES = ("sd", "vd", "xvd", "nvme", "hd", "mmcblk", "dm-", "md")


@dataclass
class HostSample:
    load1: float
    io_utilization: dict[str, float] = field(default_factory=dict)  # device -> 0..1
    network_bytes_per_second: dict[str, float] = field(default_factory=dict)  # rx/tx


def _disk_busy_ms(text: str) -> dict[str, int]:
    """Milliseconds each whole disk spent doing I/O (/proc/diskstats field 13)."""
    busy: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 14:
            continue
        name = parts[2]
        if not name.startswith(_SECTOR_DEVICES) or _is_partition(name):
            continue
        busy[name] = int(parts[12])
    return busy


_PARTITION = re.compile(r"^((nvme\d+n\d+|mmcblk\d+)p\d+|(sd|vd|xvd|hd)[a-z]+\d+)$")


def _is_partition(name: str) -> bool:
    return bool(_PARTITION.match(name))


def _network_bytes(text: str) -> tuple[int, int]:
    """Bytes received and sent through every interface but loopback (/proc/net/dev)."""
    rx = tx = 0
    for line in text.splitlines()[2:]:
        name, _, counters = line.partition(":")
        if name.strip() == "lo" or not counters:
            continue
        values = counters.split()
        rx += int(values[0])
        tx += int(values[8])
    return rx, tx


def _read(path: str) -> str:
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return ""


class HostMonitor:
    """Rates between consecutive :meth:`sample` calls (the first call gives load only)."""

    def __init__(self, proc: str = "/proc") -> None:
        self.proc = proc
        self._previous: tuple[float, dict[str, int], tuple[int, int]] | None = None

    def sample(self) -> HostSample:
        now = time.monotonic()
        busy = _disk_busy_ms(_read(f"{self.proc}/diskstats"))
        network = _network_bytes(_read(f"{self.proc}/net/dev"))
        try:
            load1 = os.getloadavg()[0] if self.proc == "/proc" else float(
                _read(f"{self.proc}/loadavg").split()[0])
        except (OSError, IndexError, ValueError):
            load1 = 0.0
        result = HostSample(load1)
        if self._previous is not None:
            then, busy_then, network_then = self._previous
            elapsed = max(now - then, 1e-3)
            for device, ms in busy.items():
                if device in busy_then:
                    result.io_utilization[device] = min(1.0, max(0, ms - busy_then[device])
                                                        / 1000.0 / elapsed)
            result.network_bytes_per_second = {
                "receive": max(0, network[0] - network_then[0]) / elapsed,
                "transmit": max(0, network[1] - network_then[1]) / elapsed}
        else:
            result.io_utilization = dict.fromkeys(busy, 0.0)
            result.network_bytes_per_second = {"receive": 0.0, "transmit": 0.0}
        self._previous = (now, busy, network)
        return result
