"""Tests for the deterministic generation step and a full simulated search with resume.

The simulated fitness is a fixed function of the canonical expression text: an additive score per
input and operator name (so that the search has something to climb) plus a hash-derived term; the
probe scores are drawn to correlate with the truth at about that fitness, and 5% of expressions
(by hash) fail with an error.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from lpzero_queue.proxies.expression import canonicalize, format_expression, parse_expression
from lpzero_queue.proxies.operators import BINARY_OPS, INPUT_NAMES, UNARY_OPS
from lpzero_queue.search.config import SearchConfig
from lpzero_queue.search.generation import (
    Candidate,
    evaluated_texts,
    individual_seed,
    merge_generation,
    plan_child,
    plan_generation,
    plan_initial,
)
from lpzero_queue.search.genotype import Genotype, has_reduce_gene
from lpzero_queue.search.pruning import dynamic_prune
from lpzero_queue.search.selection import Member

_W = np.random.default_rng(1234)
NAME_SCORE = {
    name: float(_W.normal()) for name in (*INPUT_NAMES, *sorted(UNARY_OPS), *sorted(BINARY_OPS))
}
TRUTH = [float(i) for i in range(10)]
Population = tuple[Member, ...]


def _hash_unit(text: str) -> float:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2**64


@functools.cache
def synthetic_fitness(canonical: str) -> float:
    e = parse_expression(canonical)
    names = (e.left.input, e.right.input, *e.left.unary, *e.right.unary, e.binary)
    score = sum(NAME_SCORE[n] for n in names)
    return 0.9 * math.tanh(score / 3) + 0.1 * (2 * _hash_unit(canonical) - 1)


@functools.cache
def synthetic_probe(canonical: str) -> tuple[list[float | None], list[str]]:
    h = _hash_unit(canonical)
    if h < 0.05:
        return [None] * len(TRUTH), ["error"] * len(TRUTH)
    f = synthetic_fitness(canonical)
    noise = np.random.default_rng(int(h * 2**32)).normal(size=len(TRUTH))
    z = (np.asarray(TRUTH) - np.mean(TRUTH)) / np.std(TRUTH)
    scores = f * z + math.sqrt(1 - f * f) * 0.5 * noise
    return [float(s) for s in scores], ["ok"] * len(TRUTH)


def evaluate(
    planned: Sequence[Candidate], population: Population, config: SearchConfig, order_seed: int
) -> list[tuple[Candidate, float | None]]:
    """Score candidates like an executor would, returning the results in a shuffled order."""
    fitness = [m.fitness for m in population]
    out: list[tuple[Candidate, float | None]] = []
    for c in planned:
        if c.rule is not None:
            out.append((c, None))
            continue
        scores, statuses = synthetic_probe(c.canonical)
        stopped = dynamic_prune(scores, statuses, TRUTH, fitness, config)
        out.append((c, None if stopped else synthetic_fitness(c.canonical)))
    order = np.random.default_rng(order_seed).permutation(len(out))
    return [out[i] for i in order]


def new_state() -> dict[str, Any]:
    return {"population": [], "planned": [], "next_slot": 0, "generation": 0}


def store(state: dict[str, Any]) -> str:
    return json.dumps(state)


@functools.cache
def parse_genotype(text: str, reduce_gene: bool = False) -> Genotype:
    # cached: the "stored" state is re-read at every step
    return Genotype.from_expression(parse_expression(text), reduce_gene=reduce_gene)


@functools.cache
def canonical_text(text: str) -> str:
    return format_expression(canonicalize(parse_expression(text)))


def load_population(state: dict[str, Any], config: SearchConfig) -> Population:
    gene = has_reduce_gene(config.reductions)
    return tuple(
        Member(g, s, parse_genotype(text, gene), f) for g, s, text, f in state["population"]
    )


def load_seen(state: dict[str, Any]) -> set[str]:
    return {canonical_text(text) for _, _, text, rule in state["planned"] if rule is None}


def step(state: dict[str, Any], config: SearchConfig, seed: int, order_seed: int) -> dict[str, Any]:
    """One coordinator step (an initial round or a generation), from stored state only."""
    population = load_population(state, config)
    seen = load_seen(state)
    generation = state["generation"]
    if generation == 0:
        planned = plan_initial(
            config,
            seed,
            start_slot=state["next_slot"],
            needed=config.population - len(population),
            seen=seen,
        )
    else:
        planned = plan_generation(population, config, seed, generation, seen=seen)
    assert not config.rps or not evaluated_texts(planned) & seen
    merged = merge_generation(population, evaluate(planned, population, config, order_seed), config)
    done_initial = generation == 0 and len(merged) == config.population
    return {
        "population": [[m.generation, m.slot, str(m.genotype), m.fitness] for m in merged],
        "planned": state["planned"]
        + [[c.generation, c.slot, str(c.genotype), c.rule] for c in planned],
        "next_slot": planned[-1].slot + 1 if generation == 0 else 0,
        "generation": generation + 1 if generation or done_initial else 0,
    }


def run(
    config: SearchConfig,
    seed: int,
    *,
    order_seed: int = 0,
    state: dict[str, Any] | None = None,
    stop_after: int | None = None,
) -> dict[str, Any]:
    state = new_state() if state is None else state
    while state["generation"] <= config.generations:
        if stop_after is not None and state["generation"] > stop_after:
            break
        state = json.loads(store(step(state, config, seed, order_seed)))  # through "storage"
    return state


SMALL = SearchConfig(population=16, children=60, per_generation=8)


@pytest.fixture(scope="module")
def full_run() -> dict[str, Any]:
    return run(SearchConfig(), seed=3)


def test_full_search_runs_1000_children_in_generations_of_40(full_run: dict[str, Any]) -> None:
    config = SearchConfig()
    assert config.generations == 25
    children = [p for p in full_run["planned"] if p[0] >= 1]
    assert {p[0] for p in children} == set(range(1, 26))
    for generation in range(1, 26):
        valid = [p for p in children if p[0] == generation and p[3] is None]
        assert len(valid) == 40
    assert len(full_run["population"]) == 80
    assert len({(g, s) for g, s, _, _ in full_run["population"]}) == 80


def test_full_search_improves_fitness(full_run: dict[str, Any]) -> None:
    initial = [f for g, _, _, f in full_run["population"] if g == 0]
    final = [f for *_, f in full_run["population"]]
    initial_run = run(SearchConfig(children=0), seed=3)
    start = [f for *_, f in initial_run["population"]]
    assert max(final) > max(start)
    assert np.median(final) > np.median(start) + 0.2
    assert len(initial) < 80  # children displaced part of the initial population


def test_resumed_search_ends_with_the_same_population(full_run: dict[str, Any]) -> None:
    stopped = run(SearchConfig(), seed=3, stop_after=7)
    assert stopped["generation"] == 8
    resumed = run(SearchConfig(), seed=3, state=json.loads(store(stopped)), order_seed=99)
    assert resumed == full_run


def test_run_is_independent_of_evaluation_order_and_depends_on_the_seed() -> None:
    a = run(SMALL, seed=5, order_seed=1)
    assert run(SMALL, seed=5, order_seed=2) == a
    assert run(SMALL, seed=6, order_seed=1)["population"] != a["population"]


def test_no_rps_prunes_nothing() -> None:
    config = SearchConfig(population=16, children=60, per_generation=8, rps=False)
    state = run(config, seed=5)
    assert all(rule is None for *_, rule in state["planned"])


def test_plan_initial_is_deterministic_and_slot_wise() -> None:
    config = SearchConfig(population=30)
    plan = plan_initial(config, 11)
    assert plan == plan_initial(config, 11)
    assert [c.slot for c in plan] == list(range(len(plan)))
    valid = [c for c in plan if c.rule is None]
    assert len(valid) == 30 and len({c.canonical for c in valid}) == 30
    assert any(c.rule is not None for c in plan)  # constant draws are recorded with their rule
    assert all(c.parents == () and c.generation == 0 for c in plan)
    assert plan[0].seed == individual_seed(11, 0, 0)
    # A later round continues at the next slot; a slot's genotype depends on its slot only.
    second = plan_initial(config, 11, start_slot=5, needed=3, seen=evaluated_texts(plan[:5]))
    assert [c.genotype for c in second] == [c.genotype for c in plan[5 : 5 + len(second)]]
    assert plan_initial(config, 12)[0].genotype != plan[0].genotype


def test_plan_generation_is_independent_of_call_order() -> None:
    state = run(SMALL, seed=5, stop_after=2)
    population = load_population(state, SMALL)
    seen = load_seen(state)
    first = [plan_generation(population, SMALL, 5, g, seen=seen) for g in (3, 4)]
    second = [plan_generation(population, SMALL, 5, g, seen=seen) for g in (4, 3)][::-1]
    assert first == second
    keys = {m.key for m in population}
    for c in first[0]:
        assert (c.genotype, c.parents) == plan_child(population, SMALL, 5, 3, c.slot)
        assert set(c.parents) <= keys and c.generation == 3
    with pytest.raises(ValueError, match="empty population"):
        plan_generation((), SMALL, 5, 3)


def test_converged_population_gives_up_after_max_draws() -> None:
    g = Genotype.parse("sum(abs(act), square(head))")
    population = tuple(Member(0, i, g, 0.5) for i in range(4))
    config = SearchConfig(population=4, per_generation=5, children=5, mutation_apply_p=0.0)
    planned = plan_generation(population, config, 0, 1, seen={"sum(abs(act), square(head))"})
    assert len(planned) == 5 * config.max_draws_factor
    assert {c.rule for c in planned} == {"duplicate"}


def test_merge_skips_failures_and_is_order_free() -> None:
    g = Genotype.parse("sum(abs(act), square(head))")
    population = tuple(Member(0, i, g, 0.1 * i) for i in range(3))
    config = SearchConfig(population=3)
    cands = [Candidate(1, s, g, ((0, 0), (0, 1)), 0) for s in range(4)]
    scored = list(zip(cands, [0.5, None, math.nan, 0.6], strict=True))
    merged = merge_generation(population, scored, config)
    assert merge_generation(population, scored[::-1], config) == merged
    assert sorted(m.key for m in merged) == [(0, 2), (1, 0), (1, 3)]


def test_config_round_trips_and_rejects_bad_values() -> None:
    config = SearchConfig(
        selection="tournament",
        inputs=("act", "head"),
        builder="faithful",
        reductions=("mean", "total"),
        linear_scope="all",
    )
    assert SearchConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert SearchConfig.from_dict({}) == SearchConfig()
    with pytest.raises(ValueError, match="unknown search setting 'popsize'; valid settings: "):
        SearchConfig.from_dict({"popsize": 3})
    bad = [
        ({"selection": "roulette"}, "'selection'.*valid: truncation, tournament"),
        ({"crossover_p": 1.5}, "'crossover_p'"),
        ({"population": 1}, "'population'.*>= 2"),
        ({"population": True}, "'population'"),
        ({"probe_size": 60}, "'probe_size'"),
        ({"fitness": "pearson"}, "valid: spearman, kendall"),
        ({"inputs": ["act", "nope"]}, "'inputs'"),
        ({"batch_size": 0}, "'batch_size'"),
        ({"rps": "yes"}, "'rps'"),
        ({"reductions": ["total", "sum"]}, "'reductions'.*distinct names from mean, total"),
        ({"reductions": []}, "'reductions'"),
        ({"reductions": "total"}, "'reductions'"),
    ]
    for values, message in bad:
        with pytest.raises(ValueError, match=message):
            SearchConfig.from_dict(values)
    assert [SMALL.children_in(g) for g in range(1, SMALL.generations + 1)] == [8] * 7 + [4]


def test_default_probe_size_follows_the_sample() -> None:
    assert SearchConfig.from_dict({}).probe_size == 10
    assert SearchConfig.from_dict({"sample": 8}).probe_size == 8
    assert SearchConfig.from_dict({"sample": 3}).probe_size == 3
    assert SearchConfig.from_dict({"sample": 30}).probe_size == 10
    assert SearchConfig.from_dict({"sample": 8, "probe_size": 0}).probe_size == 0
    # Only a value the user gave can be impossible.
    with pytest.raises(ValueError, match=r"'probe_size': 12; .*\[3, sample=8\]"):
        SearchConfig.from_dict({"sample": 8, "probe_size": 12})
    with pytest.raises(ValueError, match="'sample'"):
        SearchConfig.from_dict({"sample": 2})


def test_search_with_a_free_reduction_is_deterministic_and_uses_both() -> None:
    config = dataclasses.replace(SMALL, reductions=("mean", "total"))
    a = run(config, seed=5, order_seed=1)
    assert run(config, seed=5, order_seed=2) == a
    texts = [text for _, _, text, _ in a["planned"]]
    assert any(t.startswith("total(") for t in texts)
    assert any(not t.startswith("total(") for t in texts)
