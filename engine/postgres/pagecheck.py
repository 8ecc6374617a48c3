"""PostgreSQL page checksums (clusters made with data checksums), checked while backing up.

The algorithm is PostgreSQL's (storage/checksum_impl.h): an FNV-1a variant over 32
parallel lanes of the 8 KB page with its pd_checksum field counted as zero, mixed with
the block number. It runs over every byte backed up, so it is written in C
(``engine/postgres/_pagecheck.c``), which releases the GIL. A page is not judged when it is new
(all zero) or written after the backup began (its LSN is at or past the start LSN: WAL
replay rewrites it); a failing page is re-read once, since it may have been read while
PostgreSQL was writing it.
"""

from __future__ import annotations

import os

from engine.postgres._pagecheck import bad_pages as _bad_pages

PAGE = 8192
SEGMENT_PAGES = 131072  # 1 GB relation segments


def bad_pages(data: bytes | memoryview, first_block: int, start_lsn: int,
              only: list[int] | None = None) -> list[int]:
    """Offsets (in pages) within ``data`` of pages that fail their checksum and should not;
    ``only`` restricts the check to those page offsets."""
    return _bad_pages(data, first_block, start_lsn, only)


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
            if len(again) == PAGE and _bad_pages(again, first_block + page, start_lsn):
                failing.append(first_block + page)
    finally:
        os.close(fd)
    return failing
