"""Variation operators: uniform crossover and per-gene mutation (docs/method.md section 5)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lpzero_queue.search.config import SearchConfig
from lpzero_queue.search.genotype import Genotype, sample_gene

__all__ = ["crossover", "make_child", "mutate"]


def crossover(a: Genotype, b: Genotype, rng: np.random.Generator, p: float) -> Genotype:
    """Uniform crossover: each gene comes from ``b`` with probability ``p``, else from ``a``.

    Genes are aligned by position, so a gene always keeps its kind.

    Args:
        a: First parent.
        b: Second parent, with the same number of unary operators per branch.
        rng: The generator (one uniform draw per gene, in gene order).
        p: Per-gene probability of taking ``b``'s gene.

    Returns:
        The child genotype.

    Raises:
        ValueError: if the parents differ in length.
    """
    if len(a.genes) != len(b.genes):
        raise ValueError(f"parents differ in length: {len(a.genes)} and {len(b.genes)} genes")
    take_b = rng.random(len(a.genes)) < p
    return Genotype(
        tuple(gb if t else ga for ga, gb, t in zip(a.genes, b.genes, take_b, strict=True))
    )


def mutate(
    g: Genotype,
    rng: np.random.Generator,
    p: float,
    *,
    inputs: Sequence[str] | None = None,
    reductions: Sequence[str] | None = None,
) -> Genotype:
    """Resample each gene with probability ``p`` from the names of its own kind.

    A resampled gene may draw its old value again (as published): the probability that a gene
    actually changes is ``p * (1 - weight of its old value)``.

    Args:
        g: The genotype.
        rng: The generator (one uniform draw per gene, then one draw per resampled gene).
        p: Per-gene resampling probability.
        inputs: Input names an input gene may take; None: every registered input.
        reductions: Reductions a reduce gene may take; None: every registered reduction.

    Returns:
        The mutated genotype.
    """
    resample = rng.random(len(g.genes)) < p
    genes = [
        sample_gene(kind, rng, inputs, reductions) if r else value
        for kind, value, r in zip(g.kinds, g.genes, resample, strict=True)
    ]
    return Genotype(tuple(genes))


def make_child(
    parents: Sequence[Genotype], rng: np.random.Generator, config: SearchConfig
) -> Genotype:
    """One child: crossover of two parents, then mutation with ``config.mutation_apply_p``.

    Draw order (fixed, so a child is reproducible from its generator): crossover draws, one
    uniform draw deciding whether to mutate, then the mutation draws if it applies.

    Args:
        parents: Exactly two parent genotypes.
        rng: The child's own generator.
        config: Supplies ``crossover_p``, ``mutation_p``, ``mutation_apply_p``, ``inputs`` and
            ``reductions``.

    Returns:
        The child genotype.
    """
    if len(parents) != 2:
        raise ValueError(f"make_child needs two parents, got {len(parents)}")
    child = crossover(parents[0], parents[1], rng, config.crossover_p)
    if rng.random() < config.mutation_apply_p:
        child = mutate(
            child, rng, config.mutation_p, inputs=config.inputs, reductions=config.reductions
        )
    return child
