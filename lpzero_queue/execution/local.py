"""In-process execution: the embedded default.

With one process, units run one after another here and the input cache stays warm across calls
(a search re-scores the same architectures every generation). With ``processes > 1`` each unit
is split by architecture over that many child processes, each with its own warm cache; an
architecture always goes to the same child (``arch_id % processes``), so its inputs are computed
once per run. Results do not depend on the number of processes: every (proxy, architecture) is
computed by the same code on the same inputs, with ``torch_threads`` intra-op threads (0 means 1,
as in Celery workers: the same settings give bit-identical results on both executors).

A deterministic scoring error is a result (``error`` rows, see ``execution.base``). A child
that dies or runs out of memory is an infrastructure failure: nothing is stored for the unit and
the run stops with :class:`UnitFailedError`; running the command again retries it.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
from collections.abc import Iterator, Sequence
from dataclasses import replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from lpzero_queue.execution.base import (
    UnitFailedError,
    describe,
    executor_label,
    resolve_device,
    score_as_result,
    use_scoring_threads,
)
from lpzero_queue.proxies.scoring import ScoreRow, WorkUnit


def _child(conn: Connection, cache_bytes: int, spill_dir: Path | None, threads: int) -> None:
    """A child process (CPU only): score the sub-units it receives until it gets None."""
    from lpzero_queue.proxies.cache import InputCache

    use_scoring_threads(threads)
    cache = InputCache(max_bytes=cache_bytes, spill_dir=spill_dir)
    while True:
        payload = conn.recv()
        if payload is None:
            return
        try:
            rows = score_as_result(WorkUnit.from_payload(payload), cache, "cpu")
            conn.send(("ok", [r.__dict__ for r in rows]))
        except Exception as exc:  # infrastructure: reported to the parent, which stops
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


class LocalExecutor:
    """Runs units in this machine's processes with warm input caches.

    Args:
        cache_bytes: RAM for cached proxy inputs, split over the processes.
        spill_dir: where evicted inputs go (None: dropped).
        processes: scoring processes; 1 scores in this process.
        torch_threads: intra-op torch threads of each scoring process; 0 means 1.
        device: ``cpu``, ``cuda`` or ``auto`` (cuda when visible). On cuda this process scores
            alone (one process per GPU, holding the cache on the device), whatever
            ``processes`` says.
    """

    def __init__(
        self,
        *,
        cache_bytes: int,
        spill_dir: Path | None = None,
        processes: int = 1,
        torch_threads: int = 0,
        device: str = "cpu",
    ) -> None:
        from lpzero_queue.proxies.cache import InputCache

        self.device = resolve_device(device)
        self.processes = 1 if self.device != "cpu" else max(1, processes)
        self.torch_threads = torch_threads or 1
        self.name = executor_label("in-process", self.torch_threads)
        self.cache = InputCache(max_bytes=cache_bytes, spill_dir=spill_dir)
        self._children: list[tuple[Any, Connection]] = []
        self._child_args = (cache_bytes // self.processes, spill_dir, self.torch_threads)

    def _start(self) -> None:
        if self._children or self.processes == 1:
            return
        ctx = mp.get_context("spawn")  # never fork a process that may hold torch state
        for _ in range(self.processes):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_child, args=(child, *self._child_args), daemon=True)
            proc.start()
            self._children.append((proc, parent))

    def close(self) -> None:
        """Stop the child processes (idempotent)."""
        for proc, conn in self._children:
            with contextlib.suppress(BrokenPipeError, OSError):
                conn.send(None)
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
        self._children = []

    def __del__(self) -> None:
        self.close()

    def run(self, units: Sequence[WorkUnit]) -> Iterator[tuple[WorkUnit, list[ScoreRow]]]:
        """Score each unit, yielding it with its rows.

        Raises:
            UnitFailedError: a scoring process died or failed for infrastructure reasons.
        """
        if self.processes == 1:
            yield from self._run_here(units)
            return
        self._start()
        for unit in units:
            parts: dict[int, list[Any]] = {}
            for arch in unit.archs:
                parts.setdefault(arch.id % self.processes, []).append(arch)
            for index, archs in parts.items():
                proc, conn = self._children[index]
                try:
                    conn.send(replace(unit, archs=tuple(archs)).to_payload())
                except OSError:  # BrokenPipeError: the child is gone
                    raise self._failed(unit, self._exited(proc)) from None
            rows: list[ScoreRow] = []
            for index in parts:
                proc, conn = self._children[index]
                try:
                    status, value = conn.recv()
                except (EOFError, OSError):
                    status, value = "error", self._exited(proc)
                if status != "ok":
                    raise self._failed(unit, value)
                rows.extend(ScoreRow(**r) for r in value)
            order = {a.id: i for i, a in enumerate(unit.archs)}
            rows.sort(key=lambda r: order[r.arch_id])
            yield unit, rows

    @staticmethod
    def _exited(proc: Any) -> str:
        proc.join(timeout=5)
        return f"scoring process {proc.pid} exited (exit code {proc.exitcode})"

    def _failed(self, unit: WorkUnit, reason: str) -> UnitFailedError:
        """Stop the children (the next run starts fresh ones) and describe the failure."""
        self.close()
        return UnitFailedError(
            f"unit ({describe(unit)}) failed: {reason}; nothing was stored for it; run the "
            "command again (lpzq search resume RUN for a search) to retry it"
        )

    def _run_here(self, units: Sequence[WorkUnit]) -> Iterator[tuple[WorkUnit, list[ScoreRow]]]:
        """Score in this process with the scoring thread count, restoring the caller's after."""
        import torch

        before = torch.get_num_threads()
        try:
            for unit in units:
                use_scoring_threads(self.torch_threads)
                try:
                    rows = score_as_result(unit, self.cache, self.device)
                except Exception as exc:
                    raise self._failed(unit, f"{type(exc).__name__}: {exc}") from exc
                torch.set_num_threads(before)
                yield unit, rows
        finally:
            torch.set_num_threads(before)
