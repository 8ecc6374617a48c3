"""The report's "how it was measured" text (kept apart from the numbers in report.py)."""

from __future__ import annotations

METHOD = """\
How it was measured (details in bench/README.md):
- One PostgreSQL cluster (`initdb -k`; wal_level replica, archive_mode on, shared_buffers 512MB,
  max_wal_size 4GB, checkpoint_timeout 15min) archives every segment into both repositories:
  `lifeboat ... wal-push %p && pgbackrest ... archive-push %p`.
- Data (PEERS.md's reference workload): `pgbench -i -s {scale}`; `grow`, append-only,
  `(id bigint, payload text)` with payload = four salted md5 hex digests of the id (128
  characters, about half compressible, no block repeats), {grow_mib:,.0f} MiB; `hot`, 10,000 rows.
  Then `VACUUM (FREEZE, ANALYZE) grow, hot`, archive, `CHECKPOINT`.
- Full backups and restores: wall clock of the whole command run as `postgres`, after a `sync`,
  page cache warm; median of the runs. A run takes the three backups, then restores them; run 1
  goes Lifeboat, pgBackRest, pg_basebackup, and each later run starts with the next tool.
  The archive_command pushes to Lifeboat first, so pgBackRest's wait for the backup's last
  segment includes Lifeboat's push of it.
- Lifeboat: `lifeboat backup` (jobs: default = CPUs), zstd level 3; bytes = the new packs and
  block lists plus the manifest. Restore: `lifeboat restore --pgdata DIR --backup ID`.
- pgBackRest: `pgbackrest --type=full backup` (process-max=2, compress-type=zst, level 3,
  start-fast=y); bytes = the backup set directory. Restore: `pgbackrest restore --set=ID
  --pg1-path=DIR`.
- pg_basebackup: `pg_basebackup -Ft -Z client-zstd:3 -X fetch -c fast` (client-side zstd, the
  WAL inside base.tar.zst); bytes = the output directory (with backup_manifest).
  Restore: `tar --zstd -xf base.tar.zst -C DIR && sync -f DIR` (tar alone does not fsync).
- Incrementals, after the full backups and restores, per run: (a) `pgbench -c 4 -j 2 -T
  {pgbench_seconds}`; (b) append ~{append_mb} MiB to `grow` + 1000 single-row UPDATEs of `hot`
  (one transaction each). After each change the harness waits for the archiver, runs
  `CHECKPOINT` and waits again (untimed), then both tools take an incremental back-to-back
  with the database idle: `lifeboat backup --type incr --no-expire` and `pgbackrest
  --type=incr backup`; Lifeboat goes first in odd runs, pgBackRest in even runs. Bytes:
  Lifeboat = packs + block lists + manifest the backup added (cross-checked with `info
  --output json`: stored_bytes + list_bytes + manifest size); pgBackRest = the incremental's
  backup set directory.
- Delta restore, per run: the newest incremental (b) into the directory each tool restored
  its full backup into (later runs: the previous run's delta-restored directory):
  `lifeboat restore --delta --backup ID --pgdata DIR`, `pgbackrest restore --delta --set=ID
  --pg1-path=DIR`. Then the same incremental into an empty directory with each tool. Lifeboat's
  delta-restored directory is compared byte for byte with its clean restore (untimed).
- Before each timed restore, a scratch file the size of the database is written and deleted
  (untimed): on this VM the first big write after an idle spell costs extra kernel time.
- Repository bytes leave out both WAL archives. Sizes are apparent file sizes.
- Peak memory: max RSS of the largest single process of the command (GNU time `%M`; this
  covers pgBackRest's worker processes, Lifeboat uses threads). pg_basebackup: client only.
- WAL push: {segments} complete 16 MiB segments of pgbench_accounts updates, taken out of
  Lifeboat's archive with `wal-get`, pushed one command per segment into a fresh Lifeboat
  repository (cluster.json copied from the main one) and a fresh pgBackRest stanza. Each
  command is started by the harness directly as `postgres` (fork, setuid, exec; no runuser)
  and timed from spawn to exit; the tools alternate going first. Lifeboat's cache of the
  validated configuration is warmed beforehand, as it is for a running archiver.
- Check: Lifeboat's newest backup (the last incremental), restored and started once
  (`restore --start --archive-mode off`), had {checks}, as expected.
"""
