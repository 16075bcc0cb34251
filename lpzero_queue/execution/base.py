"""The executor interface: how a coordinator hands units of scoring work out and gets rows back."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

from lpzero_queue.proxies.scoring import ScoreRow, WorkUnit


class Executor(Protocol):
    """Runs units of work; results may arrive in any order, each with its unit."""

    name: str

    def run(self, units: Sequence[WorkUnit]) -> Iterator[tuple[WorkUnit, list[ScoreRow]]]:
        """Run ``units`` and yield each with its rows as soon as it is done."""
        ...
