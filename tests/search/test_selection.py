"""Tests for members, truncation and tournament selection, and replacement of the worst member."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from lpzero_queue.search.config import SearchConfig
from lpzero_queue.search.genotype import Genotype, random_genotype
from lpzero_queue.search.selection import (
    Member,
    admit,
    rank,
    replace_worst,
    select_parents,
    worst_index,
)

G = Genotype.parse("sum(l1_norm(square(weight)), square(softmax(grad)))")


def population(fitness: list[float]) -> tuple[Member, ...]:
    rng = np.random.default_rng(0)
    return tuple(Member(0, i, random_genotype(rng, 2), f) for i, f in enumerate(fitness))


@pytest.mark.parametrize("bad", [math.nan, math.inf, None, True])
def test_member_fitness_must_be_a_finite_number(bad: object) -> None:
    with pytest.raises(ValueError):
        Member(0, 0, G, bad)  # type: ignore[arg-type]


def test_rank_breaks_ties_by_age() -> None:
    pop = (Member(2, 0, G, 0.5), Member(1, 3, G, 0.5), Member(0, 1, G, 0.9))
    assert [m.key for m in rank(pop)] == [(0, 1), (1, 3), (2, 0)]
    assert pop[worst_index(pop)].key == (1, 3)  # the older of the two worst


@pytest.mark.parametrize("n", [10, 7])
def test_truncation_picks_two_distinct_parents_from_the_top_half_only(n: int) -> None:
    pop = population([float(i) for i in range(n)])
    top = {m.key for m in rank(pop)[: -(-n // 2)]}
    config = SearchConfig(selection="truncation")
    rng = np.random.default_rng(1)
    seen: Counter[tuple[int, int]] = Counter()
    for _ in range(600):
        a, b = select_parents(pop, rng, config)
        assert a.key != b.key
        assert a.key in top and b.key in top
        seen.update([a.key, b.key])
    assert set(seen) == top  # and every top-half member is used
    assert max(seen.values()) < 1.5 * min(seen.values())  # uniformly


def test_truncation_with_one_member_returns_it_twice() -> None:
    pop = population([0.3])
    assert select_parents(pop, np.random.default_rng(0), SearchConfig()) == (pop[0], pop[0])


def test_tournament_selection() -> None:
    pop = population([float(i) for i in range(8)])
    rng = np.random.default_rng(2)
    full = SearchConfig(selection="tournament", tournament_size=8)
    for _ in range(20):
        a, b = select_parents(pop, rng, full)
        assert a.fitness == b.fitness == 7.0
    pairs = SearchConfig(selection="tournament", tournament_size=2)
    wins = Counter(m.fitness for _ in range(2000) for m in select_parents(pop, rng, pairs))
    assert 0.0 not in wins  # the worst member loses every 2-tournament without replacement
    # Member i wins with probability i / C(8, 2) = i / 28 per tournament.
    assert abs(wins[7.0] / 4000 - 7 / 28) < 0.03


def test_selection_is_a_function_of_the_generator_and_rejects_empty() -> None:
    pop = population([0.1, 0.5, 0.2, 0.9, 0.4, 0.3])
    for selection in ("truncation", "tournament"):
        config = SearchConfig(selection=selection)  # type: ignore[arg-type]
        draws = [select_parents(pop, np.random.default_rng(4), config) for _ in range(2)]
        assert draws[0] == draws[1]
        with pytest.raises(ValueError, match="empty"):
            select_parents((), np.random.default_rng(4), config)


def test_replace_worst_if_better() -> None:
    pop = population([0.4, 0.1, 0.7])
    better = Member(1, 0, G, 0.2)
    assert replace_worst(pop, better) == (pop[0], better, pop[2])  # same position
    for fitness in (0.1, -0.5):  # equal or worse: not admitted
        assert replace_worst(pop, Member(1, 0, G, fitness)) == pop
    worse = Member(1, 0, G, -0.5)
    assert replace_worst(pop, worse, "always") == (pop[0], worse, pop[2])
    with pytest.raises(ValueError, match="unknown replacement"):
        replace_worst(pop, worse, "sometimes")


def test_admit_appends_until_full() -> None:
    config = SearchConfig(population=3)
    pop: tuple[Member, ...] = ()
    for i, f in enumerate([0.5, 0.1, 0.3, 0.2, 0.0]):
        pop = admit(pop, Member(0, i, G, f), config)
    assert [m.fitness for m in pop] == [0.5, 0.2, 0.3]
