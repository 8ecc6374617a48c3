"""Progress on long work: a rich progress bar on a terminal, nothing otherwise."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def byte_progress(description: str) -> Iterator[Callable[[int, int, str], None] | None]:
    """Yields ``update(done, total, phase)``, or None when stderr is not a terminal."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), TimeRemainingColumn(), transient=True,
                  console=None) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int, phase: str = "") -> None:
            bar.update(task, completed=done, total=total or None,
                       description=f"{description} {phase}".strip())

        yield update
