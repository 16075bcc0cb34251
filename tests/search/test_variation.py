"""Tests for uniform crossover and per-gene mutation: statistics, kinds and determinism."""

from __future__ import annotations

import numpy as np
import pytest

from lpzero_queue.proxies.operators import BINARY_OPS, INPUT_NAMES, UNARY_OPS
from lpzero_queue.search.config import SearchConfig
from lpzero_queue.search.genotype import Genotype
from lpzero_queue.search.variation import crossover, make_child, mutate

A = Genotype.parse("sum(l1_norm(square(weight)), square(softmax(grad)))")
B = Genotype.parse("difference(abs(relu(act)), exp(sigmoid(head)))")  # differs in every gene
N = 3000


def test_parents_differ_in_every_gene() -> None:
    assert all(a != b for a, b in zip(A.genes, B.genes, strict=True))


@pytest.mark.parametrize("p", [0.2, 0.5, 0.8])
def test_crossover_takes_each_gene_from_b_with_probability_p(p: float) -> None:
    rng = np.random.default_rng(10)
    from_b = np.zeros(len(A.genes))
    for _ in range(N):
        child = crossover(A, B, rng, p)
        from_b += [c == b for c, b in zip(child.genes, B.genes, strict=True)]
    per_gene = from_b / N
    assert np.all(np.abs(per_gene - p) < 0.04)  # ~4.5 standard errors at N = 3000


def test_crossover_extremes_and_mismatch() -> None:
    rng = np.random.default_rng(0)
    assert crossover(A, B, rng, 0.0) == A
    assert crossover(A, B, rng, 1.0) == B
    with pytest.raises(ValueError, match="differ in length"):
        crossover(A, Genotype.parse("sum(act, head)"), rng, 0.5)


@pytest.mark.parametrize("p", [0.3, 0.5])
def test_mutation_resamples_each_gene_with_probability_p(p: float) -> None:
    rng = np.random.default_rng(11)
    changed = np.zeros(len(A.genes))
    for _ in range(N):
        child = mutate(A, rng, p)
        changed += [c != a for c, a in zip(child.genes, A.genes, strict=True)]
    # A resampled gene keeps its value with the probability of drawing it again (uniform weights).
    sizes = {"input": len(INPUT_NAMES), "unary": len(UNARY_OPS), "binary": len(BINARY_OPS)}
    expected = np.array([p * (1 - 1 / sizes[kind]) for kind in A.kinds])
    assert np.all(np.abs(changed / N - expected) < 0.04)


def test_mutation_is_gene_type_aware_and_respects_inputs() -> None:
    rng = np.random.default_rng(12)
    for _ in range(300):
        child = mutate(A, rng, 1.0, inputs=("act",))
        assert child.kinds == A.kinds  # Genotype() validates every gene against its kind
        assert child.genes[0] == child.genes[3] == "act"
    assert mutate(A, rng, 0.0) == A


def test_make_child_applies_mutation_with_its_probability() -> None:
    config = SearchConfig(crossover_p=0.0, mutation_p=1.0, mutation_apply_p=0.3)
    rng = np.random.default_rng(13)
    mutated = sum(make_child((A, B), rng, config) != A for _ in range(N)) / N
    assert abs(mutated - 0.3) < 0.04  # resampling all 7 genes to the same values is negligible


def test_make_child_is_a_function_of_the_generator() -> None:
    config = SearchConfig()
    children = [make_child((A, B), np.random.default_rng(5), config) for _ in range(3)]
    assert children[0] == children[1] == children[2]
    with pytest.raises(ValueError, match="two parents"):
        make_child((A,), np.random.default_rng(5), config)
