"""In-process execution: the embedded default.

With one process, units run one after another here and the input cache stays warm across calls
(a search re-scores the same architectures every generation). With ``processes > 1`` each unit
is split by architecture over that many child processes, each with its own warm cache; an
architecture always goes to the same child (``arch_id % processes``), so its inputs are computed
once per run. Results do not depend on the number of processes: every (proxy, architecture) is
computed by the same code on the same inputs.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
from collections.abc import Iterator, Sequence
from dataclasses import replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from lpzero_queue.proxies.scoring import ScoreRow, WorkUnit, score_unit


def _child(conn: Connection, cache_bytes: int, spill_dir: Path | None, threads: int) -> None:
    """A child process: score the sub-units it receives until it gets None."""
    import torch

    from lpzero_queue.proxies.cache import InputCache

    if threads:
        torch.set_num_threads(threads)
    cache = InputCache(max_bytes=cache_bytes, spill_dir=spill_dir)
    while True:
        payload = conn.recv()
        if payload is None:
            return
        try:
            rows = score_unit(WorkUnit.from_payload(payload), cache)
            conn.send(("ok", [r.__dict__ for r in rows]))
        except Exception as exc:  # reported to the parent, which raises it
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


class LocalExecutor:
    """Runs units in this machine's processes with warm input caches."""

    name = "in-process"

    def __init__(
        self,
        *,
        cache_bytes: int,
        spill_dir: Path | None = None,
        processes: int = 1,
        torch_threads: int = 0,
    ) -> None:
        from lpzero_queue.proxies.cache import InputCache

        self.processes = max(1, processes)
        self.cache = InputCache(max_bytes=cache_bytes, spill_dir=spill_dir)
        self._children: list[tuple[Any, Connection]] = []
        self._child_args = (cache_bytes // self.processes, spill_dir, torch_threads or 1)

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
        """Score each unit, yielding it with its rows."""
        if self.processes == 1:
            for unit in units:
                yield unit, score_unit(unit, self.cache)
            return
        self._start()
        for unit in units:
            parts: dict[int, list[Any]] = {}
            for arch in unit.archs:
                parts.setdefault(arch.id % self.processes, []).append(arch)
            for index, archs in parts.items():
                self._children[index][1].send(replace(unit, archs=tuple(archs)).to_payload())
            rows: list[ScoreRow] = []
            for index in parts:
                status, value = self._children[index][1].recv()
                if status != "ok":
                    self.close()
                    raise RuntimeError(f"scoring process failed: {value}")
                rows.extend(ScoreRow(**r) for r in value)
            order = {a.id: i for i, a in enumerate(unit.archs)}
            rows.sort(key=lambda r: order[r.arch_id])
            yield unit, rows
