"""Adaptive compression: incompressible data stored raw, ratios per file kind, and the
level lowered when a backup would overrun its time budget."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.backup import blockcopy
from engine.backup.blockcopy import BlockCopier, PackSet
from engine.postgres import pgdata
from engine.repository.codec import RAW, ZSTD, Codec
from engine.repository.storage.posix import PosixStorage

BLOCK = 64 * 1024


def test_incompressible_data_is_not_compressed() -> None:
    codec = Codec("zstd", 3)
    assert codec.looks_incompressible(os.urandom(512 * 1024))
    assert codec.compress(os.urandom(512 * 1024))[0] == RAW
    page_like = (b"\x00" * 24 + b"row %d with some text " * 300)[:8192] * 64
    assert not codec.looks_incompressible(page_like)
    assert codec.compress(page_like)[0] == ZSTD


@pytest.mark.parametrize(("path", "kind"), [
    ("base/5/16384", "relation"), ("base/5/16384.3", "relation"), ("global/1262_fsm", "fsm"),
    ("base/1/2619_vm", "vm"), ("pg_tblspc/16389/PG_15_202209061/5/16390_init", "init"),
    ("pg_xact/0000", "transaction_status"), ("log/postgresql.log", "log"),
    ("postgresql.conf", "other"), ("global/pg_filenode.map", "other"),
])
def test_file_kinds(path: str, kind: str) -> None:
    assert pgdata.file_kind(path) == kind


def copy(tmp_path: Path, budget: float | None, monkeypatch: pytest.MonkeyPatch) -> BlockCopier:
    source = tmp_path / "src"
    (source / "base/5").mkdir(parents=True)
    (source / "base/5/16384").write_bytes(b"tuple data " * (BLOCK * 40 // 11))
    (source / "base/5/16385").write_bytes(os.urandom(BLOCK * 8))
    (source / "postgresql.conf").write_bytes(b"shared_buffers = 128MB\n" * 1000)
    monkeypatch.setattr(blockcopy, "ADAPT_EVERY", 0.0)
    monkeypatch.setattr(blockcopy, "CHUNK_BYTES", 4 * BLOCK)
    copier = BlockCopier(PackSet(PosixStorage(tmp_path / "repo"), "main", 1 << 20),
                         Codec("zstd", 3), BLOCK, 4 * BLOCK, jobs=1, time_budget=budget)
    list(copier.copy(pgdata.walk(source, 15)))
    return copier


def test_ratios_are_recorded_per_file_kind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kinds = copy(tmp_path, None, monkeypatch).stats.kinds
    raw, stored = kinds["relation"]
    assert raw == BLOCK * 48 - (BLOCK * 40) % 11 and stored < raw
    assert kinds["other"][0] == len(b"shared_buffers = 128MB\n") * 1000
    assert kinds["other"][1] < kinds["other"][0] / 10


def test_level_drops_when_the_budget_would_be_overrun(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    copier = copy(tmp_path, 1e-9, monkeypatch)
    assert copier.stats.level_changes[0].startswith("zstd level 3 -> 2")
    assert copier.stats.level_changes[-1].startswith("zstd level 2 -> 1")
    assert copier._codec.level == 1
    assert copy(tmp_path / "again", 3600.0, monkeypatch).stats.level_changes == []


PAGE_FILE = Path(__file__).parent / "data" / "pgbench_accounts_block7.page"


def test_page_checksum_matches_postgresql() -> None:
    """A page written by PostgreSQL 15 (initdb -k): block 7 of pgbench_accounts."""
    from engine.postgres import pagecheck

    page = PAGE_FILE.read_bytes()
    assert pagecheck.bad_pages(page, 7, 1 << 62) == []
    assert pagecheck.bad_pages(page, 8, 1 << 62) == [0]  # the block number is part of it
    damaged = bytearray(page)
    damaged[5000] ^= 0x01
    assert pagecheck.bad_pages(bytes(damaged), 7, 1 << 62) == [0]
    assert pagecheck.bad_pages(bytes(damaged), 7, 0) == []  # newer than the backup: not judged
    two = bytes(damaged) + page
    assert pagecheck.bad_pages(two, 6, 1 << 62, only=[1]) == []  # page 1 is block 7: fine
    assert pagecheck.bad_pages(bytes(8192), 0, 1 << 62) == []  # a new (zero) page


