"""Search and test splits of a benchmark's architectures.

The search split is what a GP search fits its fitness on; the test split (everything else) is
never seen during search and is where every reported figure comes from. ``first50`` mimics the
paper (the first 50 records of the file); ``sample`` draws with a seed (the default).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

SPLIT_NAMES = ("test", "search", "all")


@dataclass(frozen=True)
class SplitSpec:
    """How the search split is drawn from a benchmark's records (by file position)."""

    # "sample": `size` positions drawn with `seed`; "first": the first `size` positions (paper).
    kind: Literal["sample", "first"] = "sample"
    size: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ("sample", "first"):
            raise ValueError(f"unknown split kind {self.kind!r}; valid: sample, first")
        if self.size < 3:
            raise ValueError(f"the search split needs at least 3 architectures, got {self.size}")

    @property
    def label(self) -> str:
        """A short text naming the search split, stored with every figure."""
        return f"first{self.size}" if self.kind == "first" else f"sample{self.size}-seed{self.seed}"


def search_positions(n_total: int, spec: SplitSpec) -> list[int]:
    """Positions (0-based file order) of the search split.

    Raises:
        ValueError: the benchmark has too few architectures to leave a test split.
    """
    if spec.size >= n_total:
        raise ValueError(
            f"the search split ({spec.size}) must be smaller than the benchmark ({n_total})"
        )
    if spec.kind == "first":
        return list(range(spec.size))
    rng = np.random.default_rng(spec.seed)
    return sorted(int(p) for p in rng.choice(n_total, size=spec.size, replace=False))


def split_positions(positions: Sequence[int], split: str, spec: SplitSpec) -> list[int]:
    """The positions of ``split`` ("test", "search" or "all") among ``positions``.

    Raises:
        ValueError: on an unknown split name, listing the valid ones.
    """
    if split not in SPLIT_NAMES:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLIT_NAMES)}")
    ordered = sorted(positions)
    if split == "all":
        return ordered
    search = set(search_positions(len(ordered), spec))
    if split == "search":
        return [p for p in ordered if p in search]
    return [p for p in ordered if p not in search]
