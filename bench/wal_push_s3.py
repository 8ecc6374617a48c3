"""``wal-push`` per 16 MB segment into a posix repository and into an S3 bucket (a moto
server on loopback), one process per segment as archive_command runs it, on the same real
WAL; and what opening the S3 path costs a process (``python -X importtime``).

    .venv/bin/python -m bench.wal_push_s3 [--segments 20]

As root, with PostgreSQL's binaries (a throwaway cluster makes the WAL). A short timing,
not a benchmark: the numbers are in the README and in engine/repository/storage/s3.py.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from tests.integration.pg import LIFEBOAT, Cluster, Workspace
from tests.s3_fake import ACCESS_KEY_ID, SECRET_ACCESS_KEY, new_bucket, s3_url, start_moto


def real_segments(workspace: Workspace, count: int) -> list[Path]:
    """``count`` complete WAL segments of pgbench writes, copied out of pg_wal."""
    cluster = Cluster.create(workspace, "pg", {"archive_mode": "off", "wal_keep_size": "'4GB'",
                                                "max_wal_size": "'8GB'", "fsync": "off"})
    cluster.start()
    try:
        first = cluster.value("SELECT pg_walfile_name(pg_current_wal_lsn())")
        scale = count * 3 // 2 + 2  # pgbench -i writes about 0.75 segments of WAL per scale unit
        assert cluster.pgbench("-i", "-s", str(scale), "-q").returncode == 0
        current = cluster.value("SELECT pg_walfile_name(pg_current_wal_lsn())")
        wal = cluster.pgdata / "pg_wal"
        names = sorted(n for n in os.listdir(wal) if re.fullmatch(r"[0-9A-F]{24}", n)
                       and first < n < current)[:count]
        out = workspace.path("segments")
        for name in names:
            shutil.copy(wal / name, out / name)
        return [out / name for name in names]
    finally:
        cluster.stop("immediate")


def config(workspace: Workspace, name: str, repository: str) -> Path:
    path = workspace.root / f"{name}.toml"
    path.write_text(f'os_user = "root"\n{repository}\n[clusters.main]\npgdata = "/nonexistent"\n')
    return path


def time_pushes(config_path: Path, segments: list[Path], env: dict[str, str]) -> list[float]:
    subprocess.run([str(LIFEBOAT), "--config", str(config_path), "--cluster", "main", "info"],
                   check=True, capture_output=True, env=env)  # validate once: the cache
    took = []
    for segment in segments:
        started = time.perf_counter()
        subprocess.run([str(LIFEBOAT), "--config", str(config_path), "--cluster", "main", "wal-push",
                        str(segment)], check=True, env=env)
        took.append((time.perf_counter() - started) * 1000)
    return took


def agent_pushes(config_path: Path, segments: list[Path], env: dict[str, str]) -> list[float]:
    """What async archiving's agent pays per segment: one process, one open client."""
    code = ("import sys, time\n"
            "from engine.config.cache import archive_settings\n"
            "from engine.repository.codec import Codec\n"
            "from engine.repository.storage import open_storage\n"
            "from engine.wal import archive\n"
            "s = archive_settings(sys.argv[1], 'main')\n"
            "storage = open_storage(s.repository, s.credentials)\n"
            "for path in sys.argv[2:]:\n"
            "    started = time.perf_counter()\n"
            "    archive.push(storage, 'main', path, Codec(s.algorithm, s.level))\n"
            "    print((time.perf_counter() - started) * 1000)\n")
    done = subprocess.run([sys.executable, "-c", code, str(config_path), *map(str, segments)],
                          check=True, capture_output=True, text=True, env=env)
    return [float(line) for line in done.stdout.split()]


def confirmations(config_path: Path, spool: Path, repository: str, segments: list[Path],
                  env: dict[str, str]) -> list[float]:
    """What ``wal-push`` pays in async mode for a segment the agent acknowledged."""
    from engine.wal.async_archive import ack_path, ack_text

    took = []
    for segment in segments:
        Path(ack_path(str(spool), segment.name)).write_text(ack_text(segment.stat(), "main", repository))
        started = time.perf_counter()
        subprocess.run([str(LIFEBOAT), "--config", str(config_path), "--cluster", "main", "wal-push",
                        str(segment)], check=True, env=env)
        took.append((time.perf_counter() - started) * 1000)
    return took


def init_repository(config_path: Path, env: dict[str, str], sysid_from: Path) -> None:
    """What ``lifeboat init`` writes, without a server: the marker and the cluster's identity."""
    code = (
        "import sys\n"
        "from engine.context import open_context\n"
        "from engine.repository import clusterinfo, layout\n"
        "ctx = open_context(sys.argv[1], 'main')\n"
        "data = open(sys.argv[2], 'rb').read(40)\n"
        "ctx.storage.put_if_absent(layout.REPO_MARKER, clusterinfo.marker())\n"
        "sysid = int.from_bytes(data[24:32], 'little')\n"
        "clusterinfo.write(ctx.storage, 'main', clusterinfo.ClusterInfo(sysid, 150000, 16 * 1024 * 1024, "
        "8192, '2026-01-01T00:00:00+00:00'))\n")
    subprocess.run([sys.executable, "-c", code, str(config_path), str(sysid_from)], check=True, env=env)


def import_time(config_path: Path, segment: Path, env: dict[str, str]) -> tuple[float, float]:
    """Milliseconds of imports of one S3 wal-push process (``python -X importtime``), and the
    S3 driver's share (botocore with it)."""
    done = subprocess.run([sys.executable, "-X", "importtime", str(LIFEBOAT), "--config",
                           str(config_path), "--cluster", "main", "wal-push", str(segment)],
                          capture_output=True, text=True, env=env, check=True)
    total = driver = 0
    for line in done.stderr.splitlines():
        parts = line.split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        name = parts[2].rstrip()
        depth = len(name) - len(name.lstrip())
        if depth == 1:  # a top-level import: its cumulative time holds what it imported
            total += int(parts[1])
        if name.strip() == "engine.repository.storage.s3":
            driver = int(parts[1])
    return total / 1000, driver / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--segments", type=int, default=20)
    args = parser.parse_args()
    workspace = Workspace()
    endpoint, server = start_moto()
    try:
        segments = real_segments(workspace, args.segments)
        env = {**os.environ, "LIFEBOAT_CACHE_DIR": str(workspace.root / "cache"),
               "AWS_EC2_METADATA_DISABLED": "true"}
        env = {k: v for k, v in env.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
        secret = workspace.root / "secret"
        secret.write_text(SECRET_ACCESS_KEY)
        posix = config(workspace, "posix", f'[repository]\npath = "{workspace.path("repo")}"\n')
        s3 = config(workspace, "s3", f'[repository]\nurl = "{s3_url(endpoint, new_bucket(endpoint))}"\n'
                                     f'[repository.s3]\naccess_key_id = "{ACCESS_KEY_ID}"\n'
                                     f'secret_access_key_file = "{secret}"\n')
        results = {}
        for name, path in (("posix", posix), ("s3 (moto on loopback)", s3)):
            init_repository(path, env, segments[0])
            results[f"{name}, sync"] = time_pushes(path, segments, env)
        async_segments = [workspace.path("async") / p.name for p in segments]
        for source, copy in zip(segments, async_segments, strict=True):
            shutil.copy(source, copy)  # not yet in the new bucket's archive
        spool = workspace.path("spool") / "main"
        spool.mkdir()
        url = s3_url(endpoint, new_bucket(endpoint))
        s3_async = config(workspace, "s3-async", f'[repository]\nurl = "{url}"\n[repository.s3]\n'
                                                 f'access_key_id = "{ACCESS_KEY_ID}"\n'
                                                 f'secret_access_key_file = "{secret}"\n'
                                                 f'[clusters.main.archive]\nmode = "async"\n'
                                                 f'spool = "{spool.parent}"\n')
        init_repository(s3_async, env, segments[0])
        results["s3, async: the agent's push"] = agent_pushes(s3_async, async_segments, env)
        results["s3, async: wal-push"] = confirmations(s3_async, spool, url, async_segments, env)
        for name, took in results.items():
            print(f"{name:30s} per segment: median {statistics.median(took):6.1f} ms, "
                  f"mean {statistics.mean(took):6.1f} ms, max {max(took):6.1f} ms ({len(took)} segments)")
        total, driver = import_time(s3, segments[0], env)
        print(f"imports of one S3 wal-push (python -X importtime): {total:.0f} ms, of which the S3 "
              f"driver (botocore) {driver:.0f} ms")

    finally:
        server.stop()
        workspace.remove()


if __name__ == "__main__":
    main()
