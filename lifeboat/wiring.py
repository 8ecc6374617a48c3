"""How a command opens its context: load the configuration, note who asked, make the
directories it will write ready (as root, for ``os_user``), then switch to ``os_user``."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path

from engine.context import Context, open_context
from lifeboat.privileges import become, who


def open_for(args: argparse.Namespace, need_cluster: bool = True, state: bool = False,
             directories: Iterable[Path] = (), mode: int = 0o700) -> Context:
    """The command's context, after switching to ``os_user``. Run as root, Lifeboat's own
    state directories (with ``state``) are created first, owned by ``os_user``, who could not
    create them under root-owned parents; so are those of ``directories`` (with ``mode``: a
    data directory to restore into) that ``os_user`` could not create itself."""
    from engine.directories import give_to, lifeboat_directories

    ctx = open_context(args.config, args.cluster, need_cluster)
    args.requested_by_user = who()  # before switching user: jobs record who asked
    args.opened_context = ctx  # the audit trail records the command in its catalog
    if state:
        give_to(ctx.config.os_user, lifeboat_directories(ctx.config))
    give_to(ctx.config.os_user, directories, mode, only_where_needed=True)
    become(ctx.config.os_user)
    return ctx
