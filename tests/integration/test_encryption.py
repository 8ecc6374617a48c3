"""An encrypted repository on a real cluster: archiving (run by PostgreSQL as postgres, with
the key file), backups and restores checked by content, nothing of the data in any object,
a key rotation between a full and an incremental backup with both still restoring, a
wrong key refused before anything is written, and a flipped byte named by verify, restore
and wal-get."""

from __future__ import annotations

import json
from pathlib import Path

from engine.repository import encryption, layout
from engine.repository.manifest import read_manifest
from engine.repository.storage.posix import PosixStorage
from engine.wal import archive
from tests.integration.pg import Lifeboat, Workspace
from tests.manifests import blocks_of

CANARY = "lifeboat-canary-7d1e0c"


def keyed_config(env: Lifeboat, path: Path, key: Path, *old: Path) -> Path:
    table = f'\n[repository.encryption]\nkey_file = "{key}"\n'
    if old:
        table += "old_key_files = [" + ", ".join(f'"{p}"' for p in old) + "]\n"
    return env.write_config(env.cluster, path, extra=table)


def new_key(env: Lifeboat, path: Path) -> str:
    """``repo-key generate`` as root: the file is made 0600 and given to postgres."""
    done = env.run("repo-key", "generate", "--output", str(path))
    assert "(owned by postgres)" in done.stdout and path.stat().st_mode & 0o777 == 0o600
    return done.stdout.split()[1]  # "key <id> written to ..."


def listing(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def sealed_at(name: str, data: bytes) -> int | None:
    """Where an object's sealed part begins (None: one that holds no data)."""
    if name in (layout.REPO_MARKER, layout.REPO_KEYS) or name.endswith("/lock"):
        return None
    if "/wal/" in name:
        return archive.HEADER.size
    if name.endswith((".json", ".manifest")):  # after the first line: kind, format, SHA-256
        return data.index(b"\n") + 1
    return 0  # a list, or a pack (its first frame)


def flip(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x10
    path.write_bytes(bytes(data))


def test_an_encrypted_repository_end_to_end(workspace: Workspace) -> None:
    env = Lifeboat.create(workspace)
    try:
        _run(env, workspace.path("keys"))
    finally:
        env.cleanup()


def _run(env: Lifeboat, keys: Path) -> None:
    first, second = keys / "first.key", keys / "second.key"
    first_id = new_key(env, first)
    keyed_config(env, env.config, first)
    source = env.cluster
    source.start()
    env.run("init")
    source.sql("CREATE TABLE secret_rows (id int PRIMARY KEY, note text)")
    source.sql(f"INSERT INTO secret_rows SELECT g, '{CANARY}-' || g FROM generate_series(1, 5000) g")
    env.run("backup")
    source.sql(f"INSERT INTO secret_rows SELECT g, '{CANARY}-' || g FROM generate_series(5001, 6000) g")

    # rotation: a new key_file, the old one listed once; then the old key is not needed at all
    second_id = new_key(env, second)
    keyed_config(env, env.config, second, first)
    status = json.loads(env.run("repo-key", "status", "--output", "json").stdout)
    assert status["wrapped_under"] == second_id and status["rotated_from"] == first_id
    assert len(status["data_keys"]) == 2
    keyed_config(env, env.config, second)
    source.sql("UPDATE secret_rows SET note = note || '-after' WHERE id % 10 = 0")
    env.run("backup", "--type", "incr")
    env.switch_and_archive()
    expected = source.table_checksums()
    full, incr = (b["id"] for b in json.loads(env.run("info", "--output", "json").stdout)
                  ["clusters"][0]["backups"])

    for backup in (incr, full):  # the full was sealed under the first key, its WAL too
        restored, done = env.restore("--backup", backup, "--no-validate")
        assert "recovery promoted" in done.stdout, done.stdout + done.stderr
        assert restored.table_checksums() == expected
        assert restored.value("SELECT note FROM secret_rows WHERE id = 5990") == f"{CANARY}-5990-after"
        restored.stop()

    # nothing of the content in any object: the rows, a block of the table, the file names
    source.sql("CHECKPOINT")
    relation = source.value("SELECT pg_relation_filepath('secret_rows')")
    page = (source.pgdata / relation).read_bytes()[8192 * 3:8192 * 4]
    assert CANARY.encode() in page
    stored = listing(env.repo)
    assert len(stored) > 20
    for name, data in stored.items():
        for sample in (CANARY.encode(), page[-512:-256], relation.encode()):
            assert sample not in data, (name, sample[:40])
        at = sealed_at(name, data)
        assert at is None or data[at:at + len(encryption.MAGIC)] == encryption.MAGIC, name

    # a wrong key is refused, naming it and the key expected, and nothing is written
    wrong = keys / "wrong.key"
    new_key(env, wrong)
    elsewhere = keyed_config(env, keys.parent / "wrong.toml", wrong)
    before = listing(env.repo)
    for command in (("backup",), ("verify",), ("restore-point", "never")):
        done = env.run(*command, config=elsewhere, check=False)
        assert done.returncode == 2, done.stderr
        assert f"wrapped under key {second_id}" in done.stderr and str(wrong) in done.stderr
    assert listing(env.repo) == before

    # a flipped byte in a sealed frame: verify names it, restore refuses it
    storage = PosixStorage(env.repo)
    encryption.attach(storage, encryption.open_keys(storage, encryption.KeySources(str(second), None, ())))
    block = blocks_of(read_manifest(storage, "main", full), relation)[3]
    pack = layout.pack_key("main", block.pack)
    flip(env.repo / pack, block.offset + 40)
    done = env.run("verify", "--backup", full, check=False)
    assert done.returncode == 1 and pack in done.stdout and relation in done.stdout, done.stdout
    _, done = env.restore("--backup", full, start=False, check=False)
    assert done.returncode == 1 and f"{relation} " in done.stderr and block.pack in done.stderr

    # ... and in an archived WAL segment: wal-get stops recovery (exit 128), naming it
    segment = sorted(k for k in stored if "/wal/0" in k)[1]
    flip(env.repo / segment, -100)
    name = segment.rsplit("/", 1)[-1]
    done = env.run("wal-get", name, str(keys / name), check=False)
    assert done.returncode == 128 and name in done.stderr, done.stderr
