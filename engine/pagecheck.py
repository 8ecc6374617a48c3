"""PostgreSQL page checksums (clusters made with data checksums), checked while backing up.

The algorithm is PostgreSQL's (checksum_impl.h): an FNV-1a variant over 32 parallel
lanes of the 8 KB page with its pd_checksum field zeroed, mixed with the block number.
Here it runs over every page of a chunk at once with numpy (which releases the GIL).
A page is not judged when it is new (all zero) or written after the backup began (its
LSN is at or past the start LSN: WAL replay rewrites it); a failing page is re-read once,
since it may have been read while PostgreSQL was writing it.
"""

from __future__ import annotations

import os

import numpy as np

PAGE = 8192
SEGMENT_PAGES = 131072  # 1 GB relation segments
FNV_PRIME = np.uint32(16777619)
BASE_OFFSETS = np.array([
    0x5B1F36E9, 0xB8525960, 0x02AB50AA, 0x1DE66D2A, 0x79FF467A, 0x9BB9F8A3, 0x217E7CD2, 0x83E13D2C,
    0xF8D4474F, 0xE39EB970, 0x42C6AE16, 0x993216FA, 0x7B093B5D, 0x98DAFF3C, 0xF718902A, 0x0B1C9CDB,
    0xE58F764B, 0x187636BC, 0x5D7B3BB1, 0xE73DE7DE, 0x92BEC979, 0xCCA6C0B2, 0x304A0979, 0x85AA43D4,
    0x783125BB, 0x6CA8EAA2, 0xE407EAC6, 0x4B5CFC3E, 0x9FBF8C76, 0x15CA20BE, 0xF2CA9FD3, 0x959BD756,
], dtype=np.uint32)
def checksums(pages: np.ndarray, blocks: np.ndarray) -> np.ndarray:
    """pg_checksum_page of each row of ``pages`` (n x 2048 little-endian uint32) whose
    block numbers are ``blocks``."""
    words = pages.reshape(len(pages), PAGE // 128, 32)
    sums = np.tile(BASE_OFFSETS, (len(pages), 1))
    for row in range(PAGE // 128):
        value = words[:, row, :]
        if row == 0:
            value = value.copy()
            value[:, 2] &= np.uint32(0xFFFF0000)  # pd_checksum (bytes 8-9) counts as zero
        tmp = sums ^ value
        sums = (tmp * FNV_PRIME) ^ (tmp >> np.uint32(17))
    for _ in range(2):
        sums = (sums * FNV_PRIME) ^ (sums >> np.uint32(17))
    result = np.bitwise_xor.reduce(sums, axis=1) ^ blocks.astype(np.uint32)
    return (result % np.uint32(65535) + np.uint32(1)).astype(np.uint16)


def bad_pages(data: memoryview, first_block: int, start_lsn: int,
              only: list[int] | None = None) -> list[int]:
    """Offsets (in pages) within ``data`` of pages that fail their checksum and should not;
    ``only`` restricts the check to those page offsets (one call, whatever their number)."""
    count = len(data) // PAGE
    if count == 0:
        return []
    raw = np.frombuffer(data, dtype="<u4", count=count * PAGE // 4).reshape(count, PAGE // 4)
    index = np.arange(count) if only is None else np.asarray(only, dtype=np.int64)
    rows = raw if only is None else raw[index]
    stored = (rows[:, 2] & np.uint32(0xFFFF)).astype(np.uint16)
    lsn = (rows[:, 0].astype(np.uint64) << np.uint64(32)) | rows[:, 1].astype(np.uint64)
    upper = (rows[:, 3] >> np.uint32(16)).astype(np.uint16)  # pd_upper: 0 for a new page
    judged = (upper != 0) & (lsn < np.uint64(start_lsn))
    if not judged.any():
        return []
    chosen = index[judged]
    wrong = checksums(rows[judged], chosen + first_block) != stored[judged]
    return [int(i) for i in chosen[wrong]]


def confirm(path: str, pages: list[int], offset: int, first_block: int, start_lsn: int) -> list[int]:
    """Re-read suspect pages (a read may race with PostgreSQL writing the page); the block
    numbers that still fail."""
    failing = []
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return []
    try:
        for page in pages:
            again = os.pread(fd, PAGE, offset + page * PAGE)
            if len(again) == PAGE and bad_pages(memoryview(again), first_block + page, start_lsn):
                failing.append(first_block + page)
    finally:
        os.close(fd)
    return failing
