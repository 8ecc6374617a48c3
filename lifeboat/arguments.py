"""The options of each kind of work, defined once: a direct command (``lifeboat restore``)
and the same work queued for the agent (``lifeboat enqueue restore``) take the same options
and turn them into the same job parameters (:func:`params_from`), which engine/jobs.py
validates and runs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from engine.errors import UsageError
from engine.vocabulary import (
    ARCHIVE_MODES,
    BACKUP_TYPES,
    DRILL_KINDS,
    TARGET_ACTIONS,
    TARGETS_WITH_VALUE,
    TARGETS_WITHOUT_VALUE,
)


def common_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """``--config`` and ``--cluster``, accepted before the command and after it."""
    default: Any = argparse.SUPPRESS if suppress else None
    parser.add_argument("--config", metavar="FILE", default=default,
                        help="configuration file (default: $LIFEBOAT_CONFIG or "
                             "/etc/lifeboat/lifeboat.toml)")
    parser.add_argument("--cluster", metavar="NAME", default=default,
                        help="cluster to work on (optional when the file defines one)")


def _region(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--region", metavar="REGION",
                        help=f"{what} the repository's copy in this region ([repository.copies.REGION]) "
                             "instead of the primary repository")


def _jobs(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument("--jobs", type=int, metavar="N", help=f"parallel workers (default: {default})")


def backup_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--type", default="full", choices=BACKUP_TYPES,
                   help="full (default), diff (blocks new since the last full) or incr (blocks "
                        "new since the last backup)")
    p.add_argument("--checksum", action="store_true",
                   help="read and hash every file, even those whose size and mtime are unchanged")
    p.add_argument("--no-expire", action="store_true",
                   help="do not apply retention after the backup")
    _jobs(p, "cores")


def target_options(p: argparse.ArgumentParser, action: bool = True) -> None:
    """Where recovery stops and (``action``) what the server does there."""
    target = p.add_mutually_exclusive_group()
    helps = {"time": "ISO 8601 with a zone", "xid": "a transaction id", "lsn": "a WAL location",
             "name": "a named restore point"}
    for kind in TARGETS_WITH_VALUE:
        target.add_argument(f"--target-{kind}", metavar=kind.upper(), help=helps[kind])
    target.add_argument("--target", choices=TARGETS_WITHOUT_VALUE,
                        help="latest (end of the archive, default) or immediate (consistency)")
    p.add_argument("--target-exclusive", action="store_true",
                   help="stop just before the target instead of just after it")
    if action:
        p.add_argument("--target-action", choices=TARGET_ACTIONS, default="promote")
    p.add_argument("--target-timeline", metavar="TL", help="latest (default), current or a number")


def restore_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pgdata", required=True, type=Path, metavar="DIR",
                   help="data directory to restore into (must be empty unless --force or "
                        "--delta; created when missing)")
    p.add_argument("--backup", metavar="ID", help="backup to restore (default: the newest "
                   "that can reach the target)")
    target_options(p)
    p.add_argument("--tablespace-map", action="append", default=[], metavar="OID=DIR",
                   help="restore a tablespace elsewhere (repeatable)")
    p.add_argument("--force", action="store_true",
                   help="replace the contents of a non-empty data directory")
    p.add_argument("--delta", action="store_true",
                   help="update an existing data directory in place: rewrite only the blocks "
                        "that differ, remove files the backup does not have")
    p.add_argument("--checksum", action="store_true",
                   help="with --delta: read and hash every file, also those unchanged (size, "
                        "times, inode) since Lifeboat restored them")
    p.add_argument("--archive-mode", choices=ARCHIVE_MODES, default="preserve",
                   help="off: the restored server does not archive WAL")
    p.add_argument("--standby", action="store_true", help="write standby.signal (no target)")
    p.add_argument("--start", action="store_true",
                   help="start the server and wait until recovery ends")
    p.add_argument("--port", type=int, metavar="P", help="port for the restored server")
    p.add_argument("--timeout", metavar="DURATION", help="give up waiting for recovery after this")
    p.add_argument("--no-validate", dest="validate_restored", action="store_false",
                   help="with --start: skip counting every table's rows and pg_amcheck after "
                        "recovery (they read the whole database)")
    p.add_argument("--stop-server", action="store_true",
                   help="in place (--pgdata is the cluster's own data directory): stop the running "
                        "server first (fast shutdown)")
    _region(p, "restore from (backup and WAL)")
    _jobs(p, "twice the configured jobs: direct writes leave each waiting on the disk half "
             "the time")


def preview_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--table", required=True, metavar="TABLE",
                   help="schema.table or db.schema.table (default database: the cluster's)")
    p.add_argument("--rows", type=int, default=20, metavar="N", help="rows to show (1..200, default 20)")
    p.add_argument("--backup", metavar="ID", help="backup to restore (default: the newest that can "
                   "reach the target)")
    target_options(p, action=False)
    p.add_argument("--timeout", metavar="DURATION", help="give up waiting for recovery after this")


def verify_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backup", metavar="ID", help="verify one backup (default: all)")
    p.add_argument("--since-last", action="store_true",
                   help="skip the packs, block lists, WAL files and manifests an earlier verify "
                        "proved (the small documents are always checked)")
    _region(p, "verify")
    _jobs(p, "cores")


def expire_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dry-run", action="store_true", help="say what would be removed, remove nothing")
    _region(p, "apply the copy's retention to")


def drill_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kind", "--drill-kind", dest="kind", choices=DRILL_KINDS, default="full",
                   help="full (every table, default) or partial (critical tables, with CRUD)")


#: Each kind of work's options, for its direct command and for ``enqueue KIND``.
OPTIONS = {"backup": backup_options, "restore": restore_options, "verify": verify_options,
           "expire": expire_options, "drill": drill_options, "preview": preview_options}


def _tablespace_map(items: list[str]) -> dict[int, str]:
    mapping: dict[int, str] = {}
    for item in items:
        oid, sep, directory = item.partition("=")
        if not sep or not oid.isdigit() or not directory.startswith("/"):
            raise UsageError(f"--tablespace-map '{item}': use OID=/absolute/dir")
        mapping[int(oid)] = directory
    return mapping


def _target(args: argparse.Namespace) -> dict[str, Any]:
    kind, value = args.target or "latest", None
    for each in TARGETS_WITH_VALUE:
        given = getattr(args, f"target_{each}")
        if given is not None:
            kind, value = each, given
    return {"target": kind, "target_value": value, "target_exclusive": args.target_exclusive,
            "target_action": getattr(args, "target_action", "promote"),
            "target_timeline": args.target_timeline}


def params_from(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    """The job parameters the options of ``kind`` ask for (engine/jobs.py checks them)."""
    if getattr(args, "jobs", None) is not None and args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    if kind == "backup":
        return {"type": args.type, "checksum": args.checksum, "expire": not args.no_expire,
                "jobs": args.jobs}
    if kind == "verify":
        return {"backup": args.backup, "since_last": args.since_last, "jobs": args.jobs,
                "region": args.region}
    if kind == "expire":
        return {"dry_run": args.dry_run, "region": args.region}
    if kind == "drill":
        return {"kind": args.kind}
    from engine.config.units import parse_duration

    try:
        timeout = parse_duration(args.timeout) if args.timeout else None
    except ValueError as exc:
        raise UsageError(f"--timeout: {exc}") from None
    if kind == "preview":
        target = _target(args)
        del target["target_action"]  # a scratch copy always promotes
        return {"table": args.table, "rows": args.rows, "backup": args.backup, **target,
                "timeout": timeout}
    if args.port is not None and not 1 <= args.port <= 65535:
        raise UsageError("--port must be within 1..65535")
    return {"pgdata": str(args.pgdata.absolute()), "backup": args.backup, **_target(args),
            "tablespace_map": _tablespace_map(args.tablespace_map), "delta": args.delta,
            "checksum": args.checksum, "force": args.force, "archive_mode": args.archive_mode,
            "standby": args.standby,
            "start": args.start, "port": args.port, "timeout": timeout, "jobs": args.jobs,
            "stop_server": args.stop_server, "validate_restored": args.validate_restored,
            "region": args.region}
