"""Handlers of ``console`` (start the Streamlit ops console) and ``console hash-password``.

The console is ``streamlit run dashboard/app.py``, headless, without usage statistics,
bound to ``[console] address`` (loopback by default), given the configuration file as a
script argument and in ``$LIFEBOAT_CONFIG``. Started as root it runs as ``os_user``, as
every other command, so the catalog's files stay that user's.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from engine.errors import UsageError


def add_arguments(command: Any) -> None:
    p = command("console", "the ops console in a browser (Streamlit); 'console hash-password' makes a "
                           "password hash for [console.users]")
    p.add_argument("--address", metavar="ADDR", help="listen address (default: [console] address, 127.0.0.1)")
    p.add_argument("--port", type=int, metavar="PORT", help="listen port (default: [console] port, 8501)")
    actions = p.add_subparsers(dest="console_action", metavar="[hash-password]", parser_class=type(p))
    actions.add_parser("hash-password", help="read a password (prompt, or standard input) and print its "
                                             "scrypt hash for [console.users.NAME] password_hash")


def streamlit_command(config_path: Path, address: str, port: int) -> list[str]:
    """The command that serves the console."""
    import dashboard

    app = Path(dashboard.__file__).parent / "app.py"
    return [sys.executable, "-m", "streamlit", "run", str(app),
            "--server.address", address, "--server.port", str(port), "--server.headless", "true",
            "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
            "--server.runOnSave", "false", "--client.toolbarMode", "minimal",
            "--global.developmentMode", "false", "--", "--config", str(config_path)]


def console(args: argparse.Namespace) -> int:
    if getattr(args, "console_action", None) == "hash-password":
        return _hash_password()
    from lifeboat.wiring import open_for

    if args.port is not None and not 1 <= args.port <= 65535:
        raise UsageError("--port must be within 1..65535")
    with open_for(args, need_cluster=False, state=True) as ctx:
        settings = ctx.config.console
        if not settings.users and not settings.oidc.enabled:
            raise UsageError(f"no one could log in: add [console.users.NAME] (role and password_hash from "
                             f"'lifeboat console hash-password') or [console.oidc] to {ctx.config_path}")
        address, port = args.address or settings.address, args.port or settings.port
        command = streamlit_command(ctx.config_path, address, port)
        config_path = ctx.config_path
    print(f"lifeboat: console on http://{address}:{port}/", file=sys.stderr, flush=True)
    os.environ["LIFEBOAT_CONFIG"] = str(config_path)
    os.environ["STREAMLIT_BROWSER_GATHER_USAGE_STATS"] = "false"
    os.execv(command[0], command)  # Streamlit takes over this process (signals reach it)


def _hash_password() -> int:
    from dashboard.auth import hash_password

    if sys.stdin.isatty():
        import getpass

        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise UsageError("the two passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise UsageError("the password is empty")
    print(hash_password(password))
    return 0


HANDLERS = {"console": console}
