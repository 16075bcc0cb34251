"""Progress for long work: a bar on a terminal, periodic one-line reports otherwise (logs, CI)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

# Without a terminal, report at most this often (and always at the end).
LOG_EVERY_S = 30.0


@contextmanager
def progress_bar(label: str) -> Iterator[Callable[..., None]]:
    """Yield ``advance(done, total, **fields)``; fields are shown after the bar."""
    console = Console(file=sys.stderr)
    if not console.is_terminal:
        yield _line_reporter(label)
        return
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
        transient=False,
    ) as bar:
        task = bar.add_task(label, total=None, status="")

        def advance(done: int, total: int, **fields: object) -> None:
            status = "  ".join(f"{k} {v}" for k, v in fields.items())
            bar.update(task, completed=done, total=total or None, status=status)

        yield advance


def _line_reporter(label: str) -> Callable[..., None]:
    started = time.monotonic()
    last = [float("-inf")]

    def advance(done: int, total: int, **fields: object) -> None:
        now = time.monotonic()
        if now - last[0] < LOG_EVERY_S and done < total:
            return
        last[0] = now
        status = "  ".join(f"{k} {v}" for k, v in fields.items())
        print(
            f"lpzq: {label}: {done}/{total} after {now - started:.0f} s  {status}".rstrip(),
            file=sys.stderr,
            flush=True,
        )

    return advance
