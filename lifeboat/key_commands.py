"""Handlers of ``repo-key generate`` (a new repository key) and ``repo-key status`` (which
keys an encrypted repository uses; opening it rotates to a newly configured key)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from engine.errors import UsageError
from lifeboat.output import notice, show


def add_arguments(command: Any) -> None:
    p = command("repo-key", "the repository's encryption key: 'generate' a new one, or show the "
                            "'status' of an encrypted repository's keys")
    actions = p.add_subparsers(dest="key_action", metavar="generate|status", parser_class=type(p))
    generate = actions.add_parser("generate", help="make a new key (32 random bytes, base64) and print "
                                                   "its id")
    generate.add_argument("--output", metavar="FILE", help="write it to FILE (mode 0600, never over an "
                                                           "existing file; as root, owned by os_user) "
                                                           "instead of standard output")
    status = actions.add_parser("status", help="the keys of the encrypted repository (opening it with a "
                                               "new key_file rotates to it)")
    status.add_argument("--output", choices=["text", "json"], default="text")


def repo_key(args: argparse.Namespace) -> int:
    action = getattr(args, "key_action", None)
    if action == "generate":
        return _generate(args)
    if action == "status":
        return _status(args)
    raise UsageError("repo-key: say 'generate' or 'status'")


def _generate(args: argparse.Namespace) -> int:
    from engine.repository.encryption import format_key, generate_key, key_id

    secret = generate_key()
    if args.output is None:
        print(format_key(secret), end="")
        notice(f"key id {key_id(secret)}: keep it where only os_user can read it (mode 0600), and "
               "a copy somewhere safe: without it nothing in the repository can be read")
        return 0
    try:
        fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        from engine.errors import path_error

        raise path_error(exc, "create", args.output) from None
    try:
        os.write(fd, format_key(secret).encode())
        os.fsync(fd)
        owner = _give_to_os_user(fd, args)
    finally:
        os.close(fd)
    print(f"key {key_id(secret)} written to {args.output}{owner}")
    notice("keep a copy of it somewhere safe: without it nothing in the repository can be read")
    return 0


def _give_to_os_user(fd: int, args: argparse.Namespace) -> str:
    """As root, hand the key file to the configuration's os_user (who runs wal-push)."""
    if os.geteuid() != 0:
        return ""
    import pwd

    from engine.config.schema import load_config
    from engine.errors import LifeboatError

    try:
        user = load_config(args.config).os_user
        entry = pwd.getpwnam(user)
    except (LifeboatError, KeyError):
        return " (owned by root: chown it to the configuration's os_user)"
    os.fchown(fd, entry.pw_uid, entry.pw_gid)
    return f" (owned by {user})"


def _status(args: argparse.Namespace) -> int:
    from engine.repository.encryption import CIPHER, keys_of
    from lifeboat.wiring import open_for

    ctx = open_for(args, need_cluster=False)
    keys = keys_of(ctx.storage)
    if keys is None:
        raise UsageError(f"repository {ctx.storage.describe()} is not encrypted (the configuration "
                         "has no [repository.encryption])")
    data = {"repository": ctx.storage.describe(), "cipher": CIPHER, "wrapped_under": keys.wrapped_under,
            "rotated_from": keys.rotated_from, "current_data_key": keys.current.hex(),
            "data_keys": sorted(k.hex() for k in keys.data_keys)}

    def text() -> str:
        lines = [f"repository {data['repository']}: encrypted ({CIPHER})",
                 f"  its keys are wrapped under key {keys.wrapped_under} (the configured key)"]
        if keys.rotated_from:
            lines.append(f"  rotated now: they were wrapped under key {keys.rotated_from}; new objects "
                         f"are sealed with data key {keys.current.hex()} (old_key_files is no longer "
                         "needed)")
        lines.append(f"  data keys: {', '.join(data['data_keys'])} (new objects: "
                     f"{keys.current.hex()})")
        return "\n".join(lines)

    show(args.output, data, text)
    return 0


HANDLERS = {"repo-key": repo_key}
