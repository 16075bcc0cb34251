"""In-process execution: the embedded default. Units run one after another in this process, and
the input cache stays warm across calls (a search re-scores the same architectures every
generation).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from lpzero_queue.proxies.scoring import ScoreRow, WorkUnit, score_unit


class LocalExecutor:
    """Runs units in this process with one warm input cache."""

    name = "in-process"

    def __init__(self, *, cache_bytes: int, spill_dir: Path | None = None) -> None:
        from lpzero_queue.proxies.cache import InputCache

        self.cache = InputCache(max_bytes=cache_bytes, spill_dir=spill_dir)

    def run(self, units: Sequence[WorkUnit]) -> Iterator[tuple[WorkUnit, list[ScoreRow]]]:
        """Score each unit in turn, yielding it with its rows."""
        for unit in units:
            yield unit, score_unit(unit, self.cache)
