"""Tests for genotypes: layout, text round trip, weighted sampling and valid sampling."""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lpzero_queue.proxies import operators
from lpzero_queue.proxies.expression import (
    LPZERO_FLEXIBERT,
    LPZERO_GPT2,
    format_expression,
    parse_expression,
)
from lpzero_queue.proxies.operators import BINARY_OPS, INPUT_NAMES, UNARY_OPS
from lpzero_queue.search.genotype import (
    Genotype,
    gene_kinds,
    gene_names,
    random_genotype,
    random_valid_genotype,
)


def test_layout_names_and_kinds() -> None:
    assert gene_kinds(2) == ("input", "unary", "unary", "input", "unary", "unary", "binary")
    names = ("left.input", "left.unary[0]", "right.input", "right.unary[0]", "binary")
    assert gene_names(1) == names
    assert gene_kinds(0) == ("input", "input", "binary")


@pytest.mark.parametrize("text", [LPZERO_GPT2, LPZERO_FLEXIBERT])
def test_published_proxies_round_trip(text: str) -> None:
    g = Genotype.parse(text)
    assert g.k == 2
    assert str(g) == text
    assert Genotype.from_expression(g.to_expression()) == g


def test_genes_follow_application_order() -> None:
    g = Genotype.parse("sum(l1_norm(square(weight)), square(softmax(grad)))")
    assert g.genes == ("weight", "square", "l1_norm", "grad", "softmax", "square", "sum")


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(0, 4))
def test_random_genotypes_round_trip_through_text(seed: int, k: int) -> None:
    g = random_genotype(np.random.default_rng(seed), k)
    text = str(g)
    assert format_expression(parse_expression(text)) == text
    assert Genotype.parse(text) == g
    assert Genotype.from_expression(g.to_expression()) == g
    assert len(g.genes) == 2 * (k + 1) + 1


def test_unequal_branches_are_rejected() -> None:
    with pytest.raises(ValueError, match="equal lengths"):
        Genotype.parse("sum(abs(act), head)")


@pytest.mark.parametrize(
    "genes",
    [
        ("act", "abs", "head", "abs"),  # wrong length
        ("act", "act", "head", "abs", "sum"),  # input name in a unary gene
        ("act", "abs", "head", "abs", "abs"),  # unary name in the binary gene
        ("nope", "abs", "head", "abs", "sum"),
    ],
)
def test_invalid_genes_are_rejected(genes: tuple[str, ...]) -> None:
    with pytest.raises(ValueError):
        Genotype(genes)


def test_random_genotype_is_a_function_of_the_generator() -> None:
    a = [random_genotype(np.random.default_rng(7), 2) for _ in range(3)]
    assert a[0] == a[1] == a[2]
    assert random_genotype(np.random.default_rng(8), 2) != a[0]


def test_sampling_covers_every_name_roughly_uniformly() -> None:
    rng = np.random.default_rng(0)
    draws = [random_genotype(rng, 2) for _ in range(3000)]
    inputs = Counter(g.genes[0] for g in draws)
    unary = Counter(name for g in draws for name in (*g.genes[1:3], *g.genes[4:6]))
    binary = Counter(g.genes[-1] for g in draws)
    assert set(inputs) == set(INPUT_NAMES)
    assert set(unary) == set(UNARY_OPS)
    assert set(binary) == set(BINARY_OPS)
    for counts, n in ((inputs, 3000), (unary, 12000), (binary, 3000)):
        expected = n / len(counts)
        assert all(abs(c - expected) < 0.2 * expected for c in counts.values())


def test_operator_weights_drive_sampling(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = operators._UNARY
    monkeypatch.setitem(registry, "abs", dataclasses.replace(registry["abs"], weight=0.0))
    heavy = len(registry) - 2  # "square" as likely as all the other non-zero ones together
    monkeypatch.setitem(registry, "square", dataclasses.replace(registry["square"], weight=heavy))
    rng = np.random.default_rng(1)
    unary = Counter(name for _ in range(2000) for name in random_genotype(rng, 1).genes[1::2][:2])
    assert unary["abs"] == 0
    assert abs(unary["square"] / sum(unary.values()) - 0.5) < 0.04


def test_inputs_can_be_restricted() -> None:
    rng = np.random.default_rng(2)
    draws = [random_genotype(rng, 1, inputs=("act", "head")) for _ in range(200)]
    assert {g.genes[0] for g in draws} | {g.genes[2] for g in draws} == {"act", "head"}


def test_random_valid_genotype_samples_until_valid() -> None:
    rng = np.random.default_rng(3)
    g = random_valid_genotype(rng, 2, lambda g: g.genes[-1] == "product" and g.genes[0] == "act")
    assert g.genes[-1] == "product" and g.genes[0] == "act"
    with pytest.raises(RuntimeError, match="no valid genotype"):
        random_valid_genotype(rng, 2, lambda g: False, max_draws=20)


def test_reduce_gene_layout_and_round_trip() -> None:
    assert gene_kinds(1, reduce=True) == ("input", "unary", "input", "unary", "binary", "reduce")
    assert gene_names(0, reduce=True)[-2:] == ("binary", "reduce")
    text = "total(sum(l1_norm(square(weight)), square(softmax(grad))))"
    g = Genotype.parse(text)
    assert g.has_reduce and g.k == 2 and g.genes[-2:] == ("sum", "total")
    assert str(g) == text and Genotype(g.genes) == g
    # A mean genotype may carry the gene too (a search that lets the reduction vary).
    mean = Genotype.from_expression(parse_expression(LPZERO_GPT2), reduce_gene=True)
    assert mean.genes[-1] == "mean" and str(mean) == LPZERO_GPT2
    assert mean.to_expression() == Genotype.parse(LPZERO_GPT2).to_expression()
    with pytest.raises(ValueError, match="needs a reduce gene"):
        Genotype.from_expression(parse_expression(text), reduce_gene=False)
    with pytest.raises(ValueError, match="gene reduce must be a registered reduce name"):
        Genotype((*g.genes[:-1], "median"))


def test_reduce_gene_is_drawn_only_when_the_reduction_may_vary() -> None:
    plain = [random_genotype(np.random.default_rng(s), 2) for s in range(20)]
    mean_only = [
        random_genotype(np.random.default_rng(s), 2, reductions=("mean",)) for s in range(20)
    ]
    assert plain == mean_only  # the published space draws exactly as before
    both = [
        random_genotype(np.random.default_rng(s), 2, reductions=("mean", "total"))
        for s in range(200)
    ]
    assert all(g.has_reduce for g in both)
    counts = Counter(g.genes[-1] for g in both)
    assert set(counts) == {"mean", "total"} and min(counts.values()) > 60
    only_total = random_genotype(np.random.default_rng(0), 1, reductions=("total",))
    assert only_total.to_expression().reduce == "total"
