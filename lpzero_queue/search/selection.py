"""Population members, parent selection and replacement of the worst member.

A population is a sequence of :class:`Member` in population order; replacing a member puts the
child at the same position, so the order is deterministic. Ranking breaks fitness ties by age
(lower ``(generation, slot)`` ranks higher, and is the one replaced among equally bad members),
so that no decision depends on dict or set order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lpzero_queue.search.config import SearchConfig
from lpzero_queue.search.genotype import Genotype

__all__ = ["Member", "admit", "rank", "replace_worst", "select_parents", "worst_index"]


@dataclass(frozen=True)
class Member:
    """A scored individual in the population.

    Attributes:
        generation: Generation it was planned in (0: initial population).
        slot: Its slot within that generation; ``(generation, slot)`` identifies it in a run.
        genotype: Its genotype as sampled.
        fitness: Its signed correlation with the ground truth (higher is better); always finite.
    """

    generation: int
    slot: int
    genotype: Genotype
    fitness: float

    def __post_init__(self) -> None:
        if isinstance(self.fitness, bool) or not isinstance(self.fitness, int | float):
            raise ValueError(f"member fitness must be a number, got {self.fitness!r}")
        if not math.isfinite(self.fitness):
            raise ValueError(f"member fitness must be finite, got {self.fitness!r}")
        object.__setattr__(self, "fitness", float(self.fitness))

    @property
    def key(self) -> tuple[int, int]:
        """``(generation, slot)``: the member's identity within a run."""
        return (self.generation, self.slot)


def _rank_key(m: Member) -> tuple[float, int, int]:
    return (-m.fitness, m.generation, m.slot)


def rank(population: Sequence[Member]) -> list[Member]:
    """Members best first: by fitness descending, ties by ``(generation, slot)`` ascending."""
    return sorted(population, key=_rank_key)


def worst_index(population: Sequence[Member]) -> int:
    """Position of the worst member: lowest fitness, ties broken towards the oldest member."""
    if not population:
        raise ValueError("the population is empty")
    return min(range(len(population)), key=lambda i: (population[i].fitness, population[i].key))


def select_parents(
    population: Sequence[Member], rng: np.random.Generator, config: SearchConfig
) -> tuple[Member, Member]:
    """Draw the two parents of one child.

    - ``"truncation"`` (published): the top half by :func:`rank`, ``ceil(n / 2)`` members; two
      *distinct* members drawn uniformly (crossing a member with itself would be a no-op); with a
      single member in the top half, that member twice.
    - ``"tournament"``: for each parent independently, ``min(tournament_size, n)`` members drawn
      uniformly without replacement; the best of them by :func:`rank` wins. The two parents may
      coincide.

    Args:
        population: The population (at least one member).
        rng: The child's generator.
        config: Supplies ``selection`` and ``tournament_size``.

    Returns:
        The two parents, in draw order.

    Raises:
        ValueError: if the population is empty.
    """
    if not population:
        raise ValueError("cannot select parents from an empty population")
    if config.selection == "truncation":
        top = rank(population)[: -(-len(population) // 2)]
        if len(top) == 1:
            return top[0], top[0]
        i, j = rng.choice(len(top), size=2, replace=False)
        return top[int(i)], top[int(j)]
    size = min(config.tournament_size, len(population))
    winners = []
    for _ in range(2):
        entrants = rng.choice(len(population), size=size, replace=False)
        winners.append(min((population[int(e)] for e in entrants), key=_rank_key))
    return winners[0], winners[1]


def replace_worst(
    population: Sequence[Member], child: Member, replacement: str = "if_better"
) -> tuple[Member, ...]:
    """The population after ``child`` competes with the current worst member.

    Args:
        population: The population (at least one member).
        child: The scored child (its fitness is finite by construction of :class:`Member`).
        replacement: ``"if_better"`` (default): the child takes the worst member's position only
            if its fitness is strictly higher (implicit elitism: the best is never lost);
            ``"always"``: it takes that position unconditionally.

    Returns:
        The new population, same size and order; unchanged when the child is not admitted.

    Raises:
        ValueError: on an empty population or an unknown replacement policy.
    """
    if replacement not in ("if_better", "always"):
        raise ValueError(f"unknown replacement {replacement!r}; valid: if_better, always")
    worst = worst_index(population)
    if replacement == "if_better" and not child.fitness > population[worst].fitness:
        return tuple(population)
    new = list(population)
    new[worst] = child
    return tuple(new)


def admit(population: Sequence[Member], child: Member, config: SearchConfig) -> tuple[Member, ...]:
    """Add ``child``: appended while the population is below ``config.population``, else it
    competes with the worst member under ``config.replacement`` (see :func:`replace_worst`)."""
    if len(population) < config.population:
        return (*population, child)
    return replace_worst(population, child, config.replacement)
