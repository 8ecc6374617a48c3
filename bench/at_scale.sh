#!/usr/bin/env bash
# Peak memory and time of each Lifeboat command, and of pgBackRest's, at one database size,
# page cache dropped before each timed command. For sizes where bench/run.py does not fit
# on the disk (it keeps three restored copies at once for its delta restores; at scale 400
# + 6.4 GB that is over 80 GB): here one restored copy exists at a time.
#
#   bench/at_scale.sh SCALE GROW_MIB PGBACKREST [WORKDIR]   (as root)
#   REUSE=1 bench/at_scale.sh ...   keeps the loaded database of an earlier run at the same size
#   STEPS="base incremental" bench/at_scale.sh ...   also incrementals and delta restores
#
# Prints one line per timed command: tool, work, seconds, user + system CPU, max RSS (KiB).
set -euo pipefail
SCALE=${1:?usage: at_scale.sh SCALE GROW_MIB PGBACKREST [WORKDIR]}
GROW_MIB=${2:?}
PGBR=${3:?}
W=${4:-/var/tmp/lifeboat-at-scale}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LIFEBOAT="$ROOT/.venv/bin/lifeboat"
BIN=/usr/lib/postgresql/15/bin
PORT=${PORT:-54987}
as_pg() { runuser -u postgres -- "$@"; }
sql() { as_pg "$BIN/psql" -h "$W" -p "$PORT" -d postgres -qAt -c "$1"; }
cold() { sync; echo 3 > /proc/sys/vm/drop_caches; }
timed() {  # tool work command...
  local tool=$1 work=$2; shift 2
  cold
  local out
  out=$(as_pg /usr/bin/time -f "%e %U %S %M" "$@" 2>&1 >/dev/null | tail -n 1)
  read -r wall user sys rss <<<"$out"
  printf '%s\t%s\t%s s\tCPU %.2f s\t%s KiB\n' "$tool" "$work" "$wall" "$(echo "$user + $sys" | bc)" "$rss"
}

LOADED="$W/.loaded-$SCALE-$GROW_MIB"
if [ "${REUSE:-0}" = 1 ] && [ -f "$LOADED" ]; then
  # the data of an earlier run at this size: only the repositories start afresh
  as_pg "$BIN/pg_ctl" -D "$W/pgdata" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$W/lifeboat-repo" "$W/pgbackrest-repo" "$W/pgbackrest-log" "$W/pgbackrest-lock" "$W/restore"
  as_pg mkdir "$W/lifeboat-repo" "$W/pgbackrest-repo" "$W/pgbackrest-log" "$W/pgbackrest-lock"
  as_pg "$BIN/pg_ctl" -D "$W/pgdata" -l "$W/postgresql.log" -w start >/dev/null
  trap 'as_pg "$BIN/pg_ctl" -D "$W/pgdata" -m fast stop >/dev/null 2>&1 || true' EXIT
else
  as_pg "$BIN/pg_ctl" -D "$W/pgdata" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$W"; mkdir -p "$W"; chown postgres "$W"
  as_pg mkdir "$W/lifeboat-repo" "$W/pgbackrest-repo" "$W/pgbackrest-log" "$W/pgbackrest-lock"
  as_pg "$BIN/initdb" -k -D "$W/pgdata" >/dev/null
  cat >> "$W/pgdata/postgresql.conf" <<CONF
port = $PORT
listen_addresses = ''
unix_socket_directories = '$W'
shared_buffers = 512MB
max_wal_size = 4GB
checkpoint_timeout = 15min
wal_level = replica
archive_mode = on
archive_command = '/bin/true'
CONF
  as_pg "$BIN/pg_ctl" -D "$W/pgdata" -l "$W/postgresql.log" -w start >/dev/null
  trap 'as_pg "$BIN/pg_ctl" -D "$W/pgdata" -m fast stop >/dev/null 2>&1 || true' EXIT

  # the data of bench/run.py (bench/dataset.py), loaded before archiving starts
  as_pg "$BIN/pgbench" -h "$W" -p "$PORT" -i -s "$SCALE" -q postgres >/dev/null 2>&1
  sql "CREATE TABLE grow (id bigint NOT NULL, payload text NOT NULL)"
  rows=$((GROW_MIB * 6015))  # about 172 bytes a row on the page
  step=5000000
  for ((first = 1; first <= rows; first += step)); do
    last=$((first + step - 1 < rows ? first + step - 1 : rows))
    sql "INSERT INTO grow SELECT g, md5('a' || g) || md5('b' || g) || md5('c' || g) || md5('d' || g) FROM generate_series($first::bigint, $last::bigint) AS g"
  done
  sql "VACUUM (FREEZE, ANALYZE)"
  sql "CHECKPOINT"
  touch "$LOADED"
fi
size=$(sql "SELECT pg_size_pretty(sum(pg_database_size(oid))) FROM pg_database")

cat > "$W/lifeboat.toml" <<CONF
[repository]
path = "$W/lifeboat-repo"

[compression]
algorithm = "zstd"
level = 3

[retention]
full = 1
gc_grace = "0s"
expire_after_backup = false

[clusters.scale]
pgdata = "$W/pgdata"
host = "$W"
port = $PORT
CONF
cat > "$W/pgbackrest.conf" <<CONF
[global]
repo1-path=$W/pgbackrest-repo
repo1-retention-full=9999
process-max=2
compress-type=zst
compress-level=3
start-fast=y
repo1-bundle=y
repo1-block=y
log-path=$W/pgbackrest-log
lock-path=$W/pgbackrest-lock
log-level-console=warn

[scale]
pg1-path=$W/pgdata
pg1-socket-path=$W
pg1-port=$PORT
CONF
chown postgres "$W/lifeboat.toml" "$W/pgbackrest.conf"
LB=("$LIFEBOAT" --config "$W/lifeboat.toml" --cluster scale)
PB=("$PGBR" --config="$W/pgbackrest.conf" --stanza=scale)
sql "ALTER SYSTEM SET archive_command = '${LB[*]} wal-push %p && ${PB[*]} archive-push %p'"
sql "SELECT pg_reload_conf()" >/dev/null
as_pg "${LB[@]}" init >/dev/null
as_pg "${PB[@]}" stanza-create >/dev/null
echo "# scale $SCALE + grow $GROW_MIB MiB: databases $size; $("$PGBR" version); $(git -C "$ROOT" rev-parse --short HEAD)"

# STEPS: "base" (full backups, the no-change incremental, restores, verify, expire) and/or
# "incremental" (incrementals after pgbench and after appends, and delta restores)
STEPS=${STEPS:-base}
has_step() { [[ " $STEPS " == *" $1 "* ]]; }
wait_archived() {  # until the segment written now is archived
  local wal; wal=$(sql "SELECT pg_walfile_name(pg_switch_wal())")
  for _ in $(seq 1800); do
    [ "$(sql "SELECT coalesce(last_archived_wal >= '$wal', false) FROM pg_stat_archiver")" = t ] && return
    sleep 0.5
  done
  echo "WAL $wal not archived in 15 minutes" >&2; exit 1
}
quiesce() { wait_archived; sql "CHECKPOINT"; wait_archived; }  # untimed, before an incremental
lb_bytes() {  # repository bytes the newest Lifeboat backup added
  as_pg "${LB[@]}" info --output json | python3 -c \
    'import json, sys; print(json.load(sys.stdin)["clusters"][0]["backups"][-1]["stored_bytes"])'
}
pb_newest() { find "$W/pgbackrest-repo/backup/scale" -maxdepth 1 -name '2*' -printf '%f\n' | sort | tail -n 1; }
bytes_line() { printf '%s\t%s, bytes\t%.1f MiB\n' "$1" "$2" "$(echo "$3 / 1048576" | bc -l)"; }

if has_step base; then
  timed lifeboat "full backup" "${LB[@]}" backup --type full --no-expire
  timed pgbackrest "full backup" "${PB[@]}" backup --type=full
  timed pgbackrest "full backup" "${PB[@]}" backup --type=full
  timed lifeboat "full backup" "${LB[@]}" backup --type full --no-expire
  timed lifeboat "incremental, nothing changed" "${LB[@]}" backup --type incr --no-expire
  timed pgbackrest "incremental, nothing changed" "${PB[@]}" backup --type=incr
  as_pg mkdir "$W/restore"
  timed lifeboat "restore into an empty directory" "${LB[@]}" restore --pgdata "$W/restore"
  rm -rf "$W/restore"; as_pg mkdir "$W/restore"
  timed pgbackrest "restore into an empty directory" "${PB[@]}" restore --pg1-path="$W/restore"
  rm -rf "$W/restore"
fi
if has_step incremental; then
  if ! has_step base; then  # untimed full backups to start from
    as_pg "${LB[@]}" backup --type full --no-expire >/dev/null
    as_pg "${PB[@]}" backup --type=full >/dev/null
  fi
  older=$(pb_newest)
  as_pg mkdir "$W/restore"  # Lifeboat's older copy (untimed); pgBackRest's is made later (disk)
  as_pg "${LB[@]}" restore --pgdata "$W/restore" >/dev/null
  as_pg "$BIN/pgbench" -h "$W" -p "$PORT" -c 4 -j 2 -T 30 postgres >/dev/null 2>&1
  quiesce
  timed lifeboat "incremental after pgbench" "${LB[@]}" backup --type incr --no-expire
  bytes_line lifeboat "incremental after pgbench" "$(lb_bytes)"
  timed pgbackrest "incremental after pgbench" "${PB[@]}" backup --type=incr
  bytes_line pgbackrest "incremental after pgbench" "$(du -sb "$W/pgbackrest-repo/backup/scale/$(pb_newest)" | cut -f1)"
  first=$(sql "SELECT max(id) + 1 FROM grow")
  sql "INSERT INTO grow SELECT g, md5('a' || g) || md5('b' || g) || md5('c' || g) || md5('d' || g) FROM generate_series($first::bigint, $first + 54 * 6015 - 1) AS g"
  quiesce
  timed lifeboat "incremental append-mostly" "${LB[@]}" backup --type incr --no-expire
  bytes_line lifeboat "incremental append-mostly" "$(lb_bytes)"
  timed pgbackrest "incremental append-mostly" "${PB[@]}" backup --type=incr
  bytes_line pgbackrest "incremental append-mostly" "$(du -sb "$W/pgbackrest-repo/backup/scale/$(pb_newest)" | cut -f1)"
  timed lifeboat "delta restore of the newest over an older copy" "${LB[@]}" restore --delta --pgdata "$W/restore"
  rm -rf "$W/restore"; as_pg mkdir "$W/restore"
  as_pg "${PB[@]}" restore --set="$older" --pg1-path="$W/restore" >/dev/null
  timed pgbackrest "delta restore of the newest over an older copy" "${PB[@]}" restore --delta --pg1-path="$W/restore"
  rm -rf "$W/restore"
fi
if has_step base; then
  timed lifeboat "verify" "${LB[@]}" verify
  timed lifeboat "expire (keep the newest full)" "${LB[@]}" expire
fi
