"""Search and test splits of a benchmark's architectures.

The search split is what a GP search fits its fitness on; the optional validation split (drawn
from the rest with the same seed) is where it chooses among its best members; the test split
(everything else) is never seen during search and is where every reported figure comes from.
``first50`` mimics the paper (the first 50 records of the file); ``sample`` draws with a seed (the
default).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

SPLIT_NAMES = ("test", "search", "validation", "all")


@dataclass(frozen=True)
class SplitSpec:
    """How the search split is drawn from a benchmark's records (by file position)."""

    # "sample": `size` positions drawn with `seed`; "first": the first `size` positions (paper).
    kind: Literal["sample", "first"] = "sample"
    size: int = 50
    seed: int = 0
    validation: int = 0  # architectures drawn (with `seed`) from the rest for model selection

    def __post_init__(self) -> None:
        if self.kind not in ("sample", "first"):
            raise ValueError(f"unknown split kind {self.kind!r}; valid: sample, first")
        if self.size < 3:
            raise ValueError(f"the search split needs at least 3 architectures, got {self.size}")
        if self.validation != 0 and self.validation < 3:
            raise ValueError(
                f"the validation split needs 0 or at least 3 architectures, got {self.validation}"
            )

    @property
    def label(self) -> str:
        """A short text naming the search (and validation) split, stored with every figure."""
        base = f"first{self.size}" if self.kind == "first" else f"sample{self.size}-seed{self.seed}"
        return f"{base}-val{self.validation}" if self.validation else base


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


def validation_positions(n_total: int, spec: SplitSpec) -> list[int]:
    """Positions of the validation split: ``spec.validation`` drawn from outside the search split.

    Drawn with a generator of its own (``default_rng([seed, 1])``), so the search split is the same
    with or without a validation split.

    Raises:
        ValueError: the benchmark has too few architectures to leave a test split.
    """
    if spec.validation == 0:
        return []
    if spec.size + spec.validation >= n_total:
        raise ValueError(
            f"the search ({spec.size}) and validation ({spec.validation}) splits must leave a "
            f"test split in a benchmark of {n_total}"
        )
    search = set(search_positions(n_total, spec))
    rest = [p for p in range(n_total) if p not in search]
    rng = np.random.default_rng([spec.seed, 1])
    return sorted(int(p) for p in rng.choice(rest, size=spec.validation, replace=False))


def split_positions(positions: Sequence[int], split: str, spec: SplitSpec) -> list[int]:
    """The positions of ``split`` ("test", "search", "validation" or "all") among ``positions``.

    Raises:
        ValueError: on an unknown split name, listing the valid ones.
    """
    if split not in SPLIT_NAMES:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLIT_NAMES)}")
    ordered = sorted(positions)
    if split == "all":
        return ordered
    search = set(search_positions(len(ordered), spec))
    validation = set(validation_positions(len(ordered), spec))
    if split == "search":
        return [p for p in ordered if p in search]
    if split == "validation":
        return [p for p in ordered if p in validation]
    return [p for p in ordered if p not in search and p not in validation]
