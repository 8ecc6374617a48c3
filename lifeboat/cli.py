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
    from collections.abc import Callable
    from typing import NoReturn


def build_parser() -> argparse.ArgumentParser:
    import argparse

    from lifeboat.arguments import common_options

    class _Parser(argparse.ArgumentParser):
        def error(self, message: str) -> NoReturn:
            raise UsageError(f"{self.prog}: {message}")

    parser = _Parser(prog="lifeboat", description="PostgreSQL backup and disaster recovery.")
    common_options(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def command(name: str, help_text: str | None) -> argparse.ArgumentParser:
        # no help: an internal command, left out of the list
        p = sub.add_parser(name, description=help_text) if help_text is None else \
            sub.add_parser(name, help=help_text, description=help_text)
        common_options(p, suppress=True)
        return p

    from lifeboat import (
        agent_commands,
        alert_commands,
        audit_commands,
        console_command,
        drill_command,
        key_commands,
        observe_commands,
        repository_commands,
    )

    p = command("wal-push", "archive one WAL file (archive_command = '... wal-push %%p')")
    p.add_argument("wal_path", metavar="PATH")
    p = command("wal-get", "fetch one WAL file (restore_command = '... wal-get %%f \"%%p\"')")
    p.add_argument("--region", metavar="REGION",
                   help="from the repository's copy in this region (a restore from that region)")
    p.add_argument("wal_name", metavar="NAME")
    p.add_argument("destination", metavar="PATH")
    for module in (repository_commands, key_commands, agent_commands, drill_command, observe_commands,
                   alert_commands, audit_commands, console_command):
        module.add_arguments(command)
    return parser


def handler(name: str) -> Callable[[argparse.Namespace], int]:
    """The function that runs subcommand ``name``."""
    from lifeboat import (
        agent_commands,
        alert_commands,
        audit_commands,
        console_command,
        drill_command,
        key_commands,
        observe_commands,
        repository_commands,
        wal_commands,
    )

    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "wal-push": wal_commands.wal_push, "wal-get": wal_commands.wal_get,  # type: ignore[dict-item]
        **repository_commands.HANDLERS, **agent_commands.HANDLERS, **observe_commands.HANDLERS,
        **alert_commands.HANDLERS, **audit_commands.HANDLERS, **console_command.HANDLERS,
        **key_commands.HANDLERS,
        "drill": drill_command.drill, "drill-report": drill_command.report}
    return handlers[name]


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
        from lifeboat.audit_commands import audited

        return audited(args, handler(args.command))  # the one place commands are audited
    except LifeboatError as exc:
        _say(str(exc))
        return EXIT_ARCHIVE_DAMAGED if wal_get else exc.exit_code
    except KeyboardInterrupt:
        _say("interrupted")
        return 130
    except OSError as exc:
        if exc.filename is None:
            return _internal(exc, wal_get)
        from engine.errors import path_error  # a path that cannot be used: name it, say what to do

        _say(str(path_error(exc)))
        return EXIT_ARCHIVE_DAMAGED if wal_get else EXIT_FAILURE
    except Exception as exc:
        return _internal(exc, wal_get)


def _internal(exc: BaseException, wal_get: bool) -> int:
    """A bug: say so plainly, the traceback only when asked."""
    if os.environ.get("LIFEBOAT_DEBUG"):
        raise exc
    _say(f"internal error: {exc.__class__.__name__}: {exc} (set LIFEBOAT_DEBUG=1 for details)")
    return EXIT_ARCHIVE_DAMAGED if wal_get else EXIT_FAILURE
