"""The report's "how it was measured" text (kept apart from the numbers in report.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench.results import MiB

if TYPE_CHECKING:
    from bench.results import Results

METHOD = """\
How it was measured (details in bench/README.md):
- One PostgreSQL cluster (`initdb -k`; wal_level replica, archive_mode on, shared_buffers 512MB,
  max_wal_size 4GB, checkpoint_timeout 15min) archives every segment into every repository:
  `lifeboat ... wal-push %p && pgbackrest ... archive-push %p` (one archive-push per pgBackRest
  build, in the order of the columns).
- Data (PEERS.md's reference workload): `pgbench -i -s {scale}`; `grow`, append-only,
  `(id bigint, payload text)` with payload = four salted md5 hex digests of the id (128
  characters, about half compressible, no block repeats), {grow_mib:,.0f} MiB; `hot`, 10,000 rows.
  Then `VACUUM (FREEZE, ANALYZE) grow, hot`, archive, `CHECKPOINT`.
- Every timed command runs as `postgres` after a `sync`{cold}.
- Full backups and restores: wall clock of the whole command; median of the runs. A run takes
  every tool's backup, then restores them; each later run starts with the next tool. The
  archive_command pushes to Lifeboat first, so a pgBackRest's wait for its backup's last segment
  includes the pushes before its own.
- Lifeboat: `lifeboat backup` (jobs: default = CPUs), zstd level 3; bytes = the new packs and
  block lists plus the manifest. Restore: `lifeboat restore --pgdata DIR --backup ID`.
- pgBackRest: `pgbackrest --type=full backup` (process-max=2, compress-type=zst, level 3,
  start-fast=y; block + bundle builds: `repo1-block=y`, `repo1-bundle=y`); bytes = the backup
  set directory. Restore: `pgbackrest restore --set=ID --pg1-path=DIR`.
- pg_basebackup: `pg_basebackup -Ft -Z client-zstd:3 -X fetch -c fast` (client-side zstd, the
  WAL inside base.tar.zst); bytes = the output directory (with backup_manifest).
  Restore: `tar --zstd -xf base.tar.zst -C DIR && sync -f DIR` (tar alone does not fsync).
- Incrementals, after the full backups and restores, per run: (a) nothing changed; (b) `pgbench
  -c 4 -j 2 -T {pgbench_seconds}`; (c) append ~{append_mb} MiB to `grow` + 1000 single-row UPDATEs
  of `hot` (one transaction each). Before each, the harness waits for the archiver, runs
  `CHECKPOINT` and waits again (untimed); then every tool takes an incremental back-to-back with
  the database idle: `lifeboat backup --type incr --no-expire`, `pgbackrest --type=incr backup`;
  the first tool changes from run to run. Bytes: Lifeboat = packs + block lists + manifest the
  backup added (cross-checked with `info --output json`); pgBackRest = the incremental's backup
  set directory.
- Delta restore, per run: the newest incremental (c) into the directory each tool restored its
  full backup into (later runs: the previous run's delta-restored directory): `lifeboat restore
  --delta`, `pgbackrest restore --delta`. Then the same incremental into an empty directory.
  Lifeboat's delta-restored directory is compared byte for byte with its clean restore (untimed).
- Before each timed restore, a scratch file the size of the database is written and deleted
  (untimed): on this VM the first big write after an idle spell costs extra kernel time.
- Verify and expire, once, after the last run: `lifeboat verify` (every backup and the WAL it
  needs) and `pgbackrest verify`; then `lifeboat expire` with `[retention] full = 1`,
  `gc_grace = "0s"` and `pgbackrest expire --repo1-retention-full=1`.
- Repository bytes leave out the WAL archives. Sizes are apparent file sizes.
- Peak memory: max RSS of the largest single process of the command (GNU time `%M`; this
  covers pgBackRest's worker processes, Lifeboat uses threads). pg_basebackup: client only.
- WAL push: {segments} complete 16 MiB segments of pgbench_accounts updates, taken out of
  Lifeboat's archive with `wal-get`, pushed one command per segment into fresh archives
  (Lifeboat: cluster.json copied from the main repository; pgBackRest: new stanzas). Each
  command is started by the harness directly as `postgres` (fork, setuid, exec; no runuser)
  and timed from spawn to exit; the tools take turns going first. Page cache warm, and
  Lifeboat's cache of the validated configuration too, as for a running archiver.
- Check: Lifeboat's newest backup (the last incremental), restored and started once
  (`restore --start --archive-mode off`), had {checks}, as expected.
"""

COLD = (", then `echo 3 > /proc/sys/vm/drop_caches` (cold page cache; not for WAL pushes, "
        "whose segment an archiver finds just written)")


def method_text(results: Results, segments: int) -> str:
    checks = ", ".join(f"{name} {value:,}" for name, value in results.verified.items()) or "(no check)"
    grow_mib = results.dataset.grow_bytes / MiB if results.dataset else 0.0
    return METHOD.format(segments=segments, checks=checks, scale=results.scale, grow_mib=grow_mib,
                         pgbench_seconds=results.pgbench_seconds, append_mb=results.append_mb,
                         cold=COLD if results.cold else " (page cache warm: the data fits in memory)")
