"""Progress for long work: a bar with an ETA on a terminal, else a line every 30 s (logs, CI)."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

if TYPE_CHECKING:
    from lpzero_queue.execution.train_tasks import JobRequest
    from lpzero_queue.storage import Engine

# Without a terminal, report at most this often (and always at the end).
LOG_EVERY_S = 30.0
# How often the rows of running training jobs are read for their progress.
TRAIN_POLL_S = 2.0


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
        TextColumn("eta"),
        TimeRemainingColumn(),
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
        elapsed = now - started
        # The rate of the first few percent is mostly start-up: no ETA from it.
        settled = 0 < done < total and done * 20 >= total
        eta = f"eta {eta_text(elapsed * (total - done) / done)}" if settled else ""
        status = "  ".join([eta, *(f"{k} {v}" for k, v in fields.items())]).strip()
        print(
            f"lpzq: {label}: {done}/{total} after {elapsed:.0f} s  {status}".rstrip(),
            file=sys.stderr,
            flush=True,
        )

    return advance


def eta_text(seconds: float) -> str:
    """``42 s``, ``7 min 5 s`` or ``2 h 3 min``: the time left at the rate so far."""
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


@contextmanager
def training_progress(engine: Engine, requests: Sequence[JobRequest], label: str) -> Iterator[None]:
    """Show the progress of training ``requests`` (in steps, over all jobs) while the block runs.

    A job's row records the last checkpointed step (its heartbeat writes it), so a thread reads the
    rows: the same for jobs trained in this process and on Celery workers. A finished job counts
    all its steps, whatever its outcome.
    """
    from lpzero_queue.errors import StorageError
    from lpzero_queue.storage import job_progress

    steps = {r.key: int(r.hyperparameters["steps"]) for r in requests}
    total = sum(steps.values())
    stop = threading.Event()
    shown: list[tuple[int, int]] = []

    def poll(advance: Callable[..., None]) -> None:
        try:
            jobs = job_progress(engine, list(steps))
        except StorageError:  # a busy database only delays the next report
            return
        finished = sum(j.finished for j in jobs)
        done = sum(steps[j.job_key] if j.finished else j.step for j in jobs)
        if not shown or shown[-1] != (done, finished):
            shown.append((done, finished))
            advance(done, total, jobs=f"{finished}/{len(steps)} finished")

    with progress_bar(label) as advance:

        def watch() -> None:
            while not stop.wait(TRAIN_POLL_S):
                poll(advance)

        thread = threading.Thread(target=watch, name="lpzq-train-progress", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            poll(advance)
