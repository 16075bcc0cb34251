"""The deterministic generation step of the search, independent of how candidates are evaluated.

A run is a sequence of planned generations: generation 0 is the initial population, generations
``1 .. config.generations`` hold the children. Every individual draws from its own generator,
``default_rng(SeedSequence([run_seed, generation, slot]))``, so a plan does not depend on the number
of workers, on evaluation order, or on which other slots were planned in the same call. The
coordinator loop is::

    seen: set[str] = set()
    population = ()
    start = 0
    while len(population) < config.population:          # generation 0, in rounds
        planned = plan_initial(config, seed, start_slot=start,
                               needed=config.population - len(population), seen=seen)
        seen |= evaluated_texts(planned)
        population = merge_generation(population, evaluate(planned), config)
        start = planned[-1].slot + 1
    for generation in range(1, config.generations + 1):
        planned = plan_generation(population, config, seed, generation, seen=seen)
        seen |= evaluated_texts(planned)
        population = merge_generation(population, evaluate(planned), config)

where ``evaluate`` scores the candidates whose static ``rule`` is None (probe set first, with
:func:`~lpzero_queue.search.pruning.dynamic_prune` against the population as it stood at the
start of the generation) and returns ``(candidate, fitness or None)`` pairs. The state between two
steps (population, ``seen``, next slot) is rebuilt from the stored individuals, so a resumed run
plans exactly what an uninterrupted one would have.

Initial population: a round plans slots in order until ``needed`` candidates pass the static rules
(statically pruned draws are recorded with their rule and also take a slot). Candidates that then
fail dynamically leave the population short; the next round continues at the next slot with
``needed`` = what is still missing. Each round is a pure function of the previous rounds'
results, so the whole initial population is deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from lpzero_queue.proxies.expression import Expression
from lpzero_queue.search.config import SearchConfig
from lpzero_queue.search.genotype import Genotype, random_genotype
from lpzero_queue.search.pruning import static_prune
from lpzero_queue.search.selection import Member, admit, select_parents
from lpzero_queue.search.variation import make_child

__all__ = [
    "Candidate",
    "evaluated_texts",
    "individual_rng",
    "individual_seed",
    "merge_generation",
    "plan_child",
    "plan_generation",
    "plan_initial",
]

_SEED_MASK = (1 << 63) - 1  # fits a signed 64-bit database column


@dataclass(frozen=True)
class Candidate:
    """One planned individual.

    Attributes:
        generation: 0 for the initial population, then 1, 2, ...
        slot: Position within the generation (0-based, in planning order).
        genotype: The genotype as sampled.
        parents: ``(generation, slot)`` of each parent; empty in the initial population.
        seed: 63-bit digest of ``SeedSequence([run_seed, generation, slot])``, recorded with the
            individual (its draws come from :func:`individual_rng`).
        rule: The static pruning rule that rejected it, or None if it is to be evaluated.
        canonical: Text of its canonical expression (duplicates are checked against it).
    """

    generation: int
    slot: int
    genotype: Genotype
    parents: tuple[tuple[int, int], ...]
    seed: int
    rule: str | None = None
    canonical: str = ""

    @property
    def expression(self) -> Expression:
        """The expression as sampled (not canonicalised)."""
        return self.genotype.to_expression()


def _sequence(run_seed: int, generation: int, slot: int) -> np.random.SeedSequence:
    if min(run_seed, generation, slot) < 0:
        raise ValueError(f"seed parts must be >= 0, got {(run_seed, generation, slot)}")
    return np.random.SeedSequence([run_seed, generation, slot])


def individual_rng(run_seed: int, generation: int, slot: int) -> np.random.Generator:
    """One individual's generator: ``default_rng(SeedSequence([run_seed, generation, slot]))``."""
    return np.random.default_rng(_sequence(run_seed, generation, slot))


def individual_seed(run_seed: int, generation: int, slot: int) -> int:
    """The 63-bit seed recorded with an individual (derived from the same SeedSequence)."""
    state = _sequence(run_seed, generation, slot).generate_state(1, dtype=np.uint64)
    return int(state[0]) & _SEED_MASK


def evaluated_texts(candidates: Iterable[Candidate]) -> set[str]:
    """Canonical texts of the candidates that passed the static rules (they get evaluated)."""
    return {c.canonical for c in candidates if c.rule is None}


def _candidate(
    config: SearchConfig,
    run_seed: int,
    generation: int,
    slot: int,
    genotype: Genotype,
    parents: tuple[tuple[int, int], ...],
    seen: Collection[str],
) -> Candidate:
    decision = static_prune(genotype.to_expression(), seen, rps=config.rps)
    return Candidate(
        generation=generation,
        slot=slot,
        genotype=genotype,
        parents=parents,
        seed=individual_seed(run_seed, generation, slot),
        rule=decision.rule,
        canonical=decision.canonical_text,
    )


def plan_initial(
    config: SearchConfig,
    run_seed: int,
    *,
    start_slot: int = 0,
    needed: int | None = None,
    seen: Collection[str] = (),
) -> list[Candidate]:
    """Plan one round of the initial population (generation 0).

    Slots ``start_slot, start_slot + 1, ...`` each draw one random genotype from their own
    generator until ``needed`` of them pass the static rules (duplicates are checked against
    ``seen`` and the earlier slots of this round).

    Args:
        config: The search configuration.
        run_seed: The run seed.
        start_slot: First slot of this round (the slot after the previous round's last).
        needed: Candidates to evaluate in this round; None: ``config.population``.
        seen: Canonical texts evaluated in earlier rounds; not modified.

    Returns:
        Every planned candidate in slot order, statically pruned ones included (with their rule).

    Raises:
        RuntimeError: if ``needed * config.max_draws_factor`` draws do not yield enough candidates.
    """
    needed = config.population if needed is None else needed
    if needed < 0:
        raise ValueError(f"needed must be >= 0, got {needed}")
    local = set(seen)
    planned: list[Candidate] = []
    valid = 0
    slot = start_slot
    max_draws = max(1, needed) * config.max_draws_factor
    while valid < needed:
        if len(planned) >= max_draws:
            raise RuntimeError(
                f"initial population: {valid} of {needed} valid candidates in {max_draws} draws"
            )
        g = random_genotype(
            individual_rng(run_seed, 0, slot),
            config.unary_per_branch,
            inputs=config.inputs,
            reductions=config.reductions,
        )
        candidate = _candidate(config, run_seed, 0, slot, g, (), local)
        planned.append(candidate)
        if candidate.rule is None:
            valid += 1
            local.add(candidate.canonical)
        slot += 1
    return planned


def plan_child(
    population: Sequence[Member],
    config: SearchConfig,
    run_seed: int,
    generation: int,
    slot: int,
) -> tuple[Genotype, tuple[tuple[int, int], ...]]:
    """The genotype and parents of one child slot: a pure function of its arguments.

    Args:
        population: The population at the start of the generation.
        config: The search configuration.
        run_seed: The run seed.
        generation: The generation (>= 1).
        slot: The child's slot.

    Returns:
        The child genotype and the ``(generation, slot)`` of its two parents.
    """
    rng = individual_rng(run_seed, generation, slot)
    a, b = select_parents(population, rng, config)
    child = make_child((a.genotype, b.genotype), rng, config)
    return child, (a.key, b.key)


def plan_generation(
    population: Sequence[Member],
    config: SearchConfig,
    run_seed: int,
    generation: int,
    *,
    seen: Collection[str] = (),
) -> list[Candidate]:
    """Plan the children of one generation from the population at its start.

    Slots ``0, 1, ...`` each make one child (:func:`plan_child`) until
    ``config.children_in(generation)`` children pass the static rules, or until
    ``config.children_in(generation) * config.max_draws_factor`` draws were made (a converged
    population yields mostly duplicates; the generation then has fewer children).

    Args:
        population: The population at the start of the generation (not empty).
        config: The search configuration.
        run_seed: The run seed.
        generation: The generation, ``1 .. config.generations``.
        seen: Canonical texts evaluated in earlier generations; not modified.

    Returns:
        Every planned candidate in slot order, statically pruned ones included (with their rule).
    """
    if not population:
        raise ValueError("cannot plan children from an empty population")
    wanted = config.children_in(generation)
    local = set(seen)
    planned: list[Candidate] = []
    valid = 0
    slot = 0
    while valid < wanted and len(planned) < wanted * config.max_draws_factor:
        child, parents = plan_child(population, config, run_seed, generation, slot)
        candidate = _candidate(config, run_seed, generation, slot, child, parents, local)
        planned.append(candidate)
        if candidate.rule is None:
            valid += 1
            local.add(candidate.canonical)
        slot += 1
    return planned


def merge_generation(
    population: Sequence[Member],
    scored_children: Iterable[tuple[Candidate, float | None]],
    config: SearchConfig,
) -> tuple[Member, ...]:
    """Admit the scored candidates of one generation (or initial round) in slot order.

    Candidates without a finite fitness (pruned or failed: None, NaN, infinite) never enter.
    Each other one is appended while the population is below ``config.population``, else it
    competes with the current worst member (:func:`~lpzero_queue.search.selection.replace_worst`
    with ``config.replacement``), so a child may displace an earlier child of the same
    generation. The result does not depend on the order of ``scored_children``.

    Args:
        population: The population at the start of the generation.
        scored_children: ``(candidate, fitness or None)`` pairs, in any order.
        config: The search configuration.

    Returns:
        The new population.
    """
    merged = tuple(population)
    ordered = sorted(scored_children, key=lambda cf: (cf[0].generation, cf[0].slot))
    for candidate, fitness in ordered:
        if fitness is None or not math.isfinite(fitness):
            continue
        member = Member(candidate.generation, candidate.slot, candidate.genotype, fitness)
        merged = admit(merged, member, config)
    return merged
