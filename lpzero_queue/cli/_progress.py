"""A progress bar on stderr for long work (hidden when stderr is not a terminal)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


@contextmanager
def progress_bar(label: str) -> Iterator[Callable[..., None]]:
    """Yield ``advance(done, total, **fields)``; fields are shown after the bar."""
    console = Console(file=sys.stderr)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
        disable=not console.is_terminal,
        transient=False,
    ) as bar:
        task = bar.add_task(label, total=None, status="")

        def advance(done: int, total: int, **fields: object) -> None:
            status = "  ".join(f"{k} {v}" for k, v in fields.items())
            bar.update(task, completed=done, total=total or None, status=status)

        yield advance
