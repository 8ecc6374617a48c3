"""``lifeboat``: subcommands in the manner of pgBackRest and Barman.

Exit codes: 0 success, 1 the operation failed, 2 bad usage or configuration.
``wal-get`` (restore_command) exits 1 only when the file is legitimately not in the
archive and 128 for anything else, which PostgreSQL treats as fatal.
Messages go to stderr; results to stdout. Each subcommand imports only what it uses.
"""

from __future__ import annotations

import os
import sys

from engine.errors import EXIT_ARCHIVE_DAMAGED, EXIT_FAILURE, LifeboatError, UsageError

TYPE_CHECKING = False  # typing and argparse are not imported on the WAL path
if TYPE_CHECKING:
    import argparse
    from typing import Any, NoReturn


def _common(parser: argparse.ArgumentParser, suppress: bool) -> None:
    import argparse

    default: Any = argparse.SUPPRESS if suppress else None
    parser.add_argument("--config", metavar="FILE", default=default,
                        help="configuration file (default: $LIFEBOAT_CONFIG or "
                             "/etc/lifeboat/lifeboat.toml)")
    parser.add_argument("--cluster", metavar="NAME", default=default,
                        help="cluster to work on (optional when the file defines one)")


def build_parser() -> argparse.ArgumentParser:
    import argparse

    class _Parser(argparse.ArgumentParser):
        def error(self, message: str) -> NoReturn:
            raise UsageError(f"{self.prog}: {message}")

    parser = _Parser(prog="lifeboat", description="PostgreSQL backup and disaster recovery.")
    _common(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def command(name: str, help_text: str | None) -> argparse.ArgumentParser:
        # no help: an internal command, left out of the list
        p = sub.add_parser(name, description=help_text) if help_text is None else \
            sub.add_parser(name, help=help_text, description=help_text)
        _common(p, suppress=True)
        return p

    command("init", "create the cluster's place in the repository, checking its settings")
    command("check", "check the connection and that a forced WAL switch reaches the archive")
    p = command("wal-push", "archive one WAL file (archive_command = '... wal-push %%p')")
    p.add_argument("wal_path", metavar="PATH")
    p = command("wal-get", "fetch one WAL file (restore_command = '... wal-get %%f \"%%p\"')")
    p.add_argument("wal_name", metavar="NAME")
    p.add_argument("destination", metavar="PATH")
    p = command("backup", "take a physical backup")
    p.add_argument("--type", default="full", choices=["full", "diff", "incr"],
                   help="full (default), diff (blocks new since the last full) or incr (blocks "
                        "new since the last backup)")
    p.add_argument("--checksum", action="store_true",
                   help="read and hash every file, even those whose size and mtime are unchanged")
    p.add_argument("--no-expire", action="store_true",
                   help="do not apply retention after the backup")
    p.add_argument("--jobs", type=int, metavar="N", help="parallel workers (default: cores)")
    p = command("restore", "restore a backup into a data directory, to a point in time")
    _restore_arguments(p)
    p = command("expire", "apply retention: remove expired backups, unreferenced blocks and WAL")
    p.add_argument("--dry-run", action="store_true", help="say what would be removed, remove nothing")
    p.add_argument("--output", choices=["text", "json"], default="text")
    p = command("verify", "re-read and re-hash backups and the WAL they need; name what is damaged")
    p.add_argument("--backup", metavar="ID", help="verify one backup (default: all)")
    p.add_argument("--since-last", action="store_true",
                   help="only what no earlier verify proved (new packs and WAL)")
    p.add_argument("--output", choices=["text", "json"], default="text")
    p.add_argument("--jobs", type=int, metavar="N", help="parallel workers (default: cores)")
    p = command("copy", "bring the repository's copies in other regions up to date for the cluster")
    p.add_argument("--region", metavar="REGION", help="only this region's copy (default: all)")
    p.add_argument("--output", choices=["text", "json"], default="text")
    p = command("restore-point", "create a named restore point (pg_create_restore_point)")
    p.add_argument("name", metavar="NAME")
    p = command("info", "list backups and the WAL archive")
    p.add_argument("--output", choices=["text", "json"], default="text")
    command("version", "print the version")
    _agent_commands(command)
    from lifeboat import drill_command

    drill_command.add_arguments(command)
    from lifeboat import observe_commands

    observe_commands.add_arguments(command)
    return parser


def _agent_commands(command: Any) -> None:
    p = command("agent", "run the agent: schedules, jobs, async and streaming WAL, objectives")
    p.add_argument("--duration", type=float, metavar="SECONDS",
                   help="stop after this many seconds (default: until SIGTERM)")
    p = command("jobs", "list jobs from the catalog (newest first)")
    p.add_argument("--active", action="store_true", help="only queued, waiting and running jobs")
    p.add_argument("--limit", type=int, default=50, metavar="N")
    p.add_argument("--output", choices=["text", "json"], default="text")
    p = command("enqueue", "ask the agent to run a job (prints the job id)")
    p.add_argument("kind", choices=["backup", "restore", "verify", "drill", "expire"])
    p.add_argument("--priority", type=int, metavar="N",
                   help="higher runs first (default: restore 100, drill 60, backup 50, verify 40)")
    p.add_argument("--max-duration", metavar="DURATION", help="stop the job if it runs longer")
    p.add_argument("--requested-by", metavar="WHO", help="recorded with the job (default: user@cli)")
    p.add_argument("--wait", action="store_true",
                   help="wait until the job ends; exit 0 if it succeeded, 1 otherwise")
    p.add_argument("--wait-timeout", type=float, metavar="SECONDS")
    p.add_argument("--type", default="full", choices=["full", "diff", "incr"], help="backup type")
    p.add_argument("--checksum", action="store_true", help="backup: hash every file")
    p.add_argument("--since-last", action="store_true", help="verify: only what is new")
    p.add_argument("--drill-kind", default="full", choices=["full", "partial"])
    p.add_argument("--dry-run", action="store_true", help="expire: remove nothing")
    p.add_argument("--pgdata", metavar="DIR", help="restore: the data directory")
    p.add_argument("--backup", metavar="ID", help="restore or verify: this backup")
    target = p.add_mutually_exclusive_group()
    target.add_argument("--target-time", metavar="TIME")
    target.add_argument("--target-xid", metavar="XID")
    target.add_argument("--target-lsn", metavar="LSN")
    target.add_argument("--target-name", metavar="NAME")
    target.add_argument("--target", choices=["latest", "immediate"])
    p.add_argument("--target-exclusive", action="store_true")
    p.add_argument("--target-action", choices=["promote", "pause", "shutdown"], default="promote")
    p.add_argument("--target-timeline", metavar="TL")
    p.add_argument("--delta", action="store_true")
    p.add_argument("--force", action="store_true")
    p.add_argument("--archive-mode", choices=["preserve", "off"], default="preserve")
    p.add_argument("--start", action="store_true")
    p.add_argument("--port", type=int, metavar="P")
    p = command("events", "show the agent's events from the catalog (oldest first)")
    p.add_argument("--kind", metavar="KIND", help="only events of this kind (e.g. job_failed)")
    p.add_argument("--job", type=int, metavar="JOB", help="only events of this job")
    p.add_argument("--limit", type=int, default=100, metavar="N")
    p.add_argument("--output", choices=["text", "json"], default="text")
    p = command("cancel", "cancel a queued or running job")
    p.add_argument("job_id", type=int, metavar="JOB")
    p = command("run-job", None)
    p.add_argument("job_id", type=int, metavar="JOB")


def _restore_arguments(p: argparse.ArgumentParser) -> None:
    from pathlib import Path

    p.add_argument("--pgdata", required=True, type=Path, metavar="DIR",
                   help="data directory to restore into (must be empty unless --force)")
    p.add_argument("--backup", metavar="ID", help="backup to restore (default: the newest "
                   "that can reach the target)")
    target = p.add_mutually_exclusive_group()
    target.add_argument("--target-time", metavar="TIME", help="ISO 8601 with a zone")
    target.add_argument("--target-xid", metavar="XID")
    target.add_argument("--target-lsn", metavar="LSN")
    target.add_argument("--target-name", metavar="NAME", help="a named restore point")
    target.add_argument("--target", choices=["latest", "immediate"],
                        help="latest (end of the archive, default) or immediate (consistency)")
    p.add_argument("--target-exclusive", action="store_true",
                   help="stop just before the target instead of just after it")
    p.add_argument("--target-action", choices=["promote", "pause", "shutdown"], default="promote")
    p.add_argument("--target-timeline", metavar="TL", help="latest (default), current or a number")
    p.add_argument("--tablespace-map", action="append", default=[], metavar="OID=DIR",
                   help="restore a tablespace elsewhere (repeatable)")
    p.add_argument("--force", action="store_true",
                   help="replace the contents of a non-empty data directory")
    p.add_argument("--delta", action="store_true",
                   help="update an existing data directory in place: rewrite only the blocks "
                        "that differ, remove files the backup does not have")
    p.add_argument("--archive-mode", choices=["preserve", "off"], default="preserve",
                   help="off: the restored server does not archive WAL")
    p.add_argument("--standby", action="store_true", help="write standby.signal (no target)")
    p.add_argument("--start", action="store_true",
                   help="start the server and wait until recovery ends")
    p.add_argument("--port", type=int, metavar="P", help="port for the restored server")
    p.add_argument("--timeout", metavar="DURATION", help="give up waiting for recovery after this")
    p.add_argument("--jobs", type=int, metavar="N",
                   help="parallel workers (default: twice the configured jobs, since direct "
                        "writes leave each waiting on the disk half the time)")


def _say(message: str) -> None:
    print(f"lifeboat: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    wal_get = "wal-get" in argv
    try:
        from lifeboat import wal_commands

        fast = wal_commands.parse_fast(argv)
        if fast is not None:
            return wal_commands.wal_push(fast) if fast.command == "wal-push" else \
                wal_commands.wal_get(fast)
        args = build_parser().parse_args(argv)
        if args.command is None:
            build_parser().print_help(sys.stderr)
            return 2
        from lifeboat import commands

        return commands.run(args)
    except LifeboatError as exc:
        _say(str(exc))
        return EXIT_ARCHIVE_DAMAGED if wal_get else exc.exit_code
    except KeyboardInterrupt:
        _say("interrupted")
        return 130
    except Exception as exc:  # a bug: say so plainly, traceback only when asked
        if os.environ.get("LIFEBOAT_DEBUG"):
            raise
        _say(f"internal error: {exc.__class__.__name__}: {exc} (set LIFEBOAT_DEBUG=1 for details)")
        return EXIT_ARCHIVE_DAMAGED if wal_get else EXIT_FAILURE
