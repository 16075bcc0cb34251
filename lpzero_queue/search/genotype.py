"""Genotypes: fixed-length tuples of operator and input names, one per gene.

A genotype with ``k`` unary operators per branch has ``2 * (k + 1) + 1`` genes, by name:

    left.input, left.unary[0] .. left.unary[k-1], right.input, right.unary[0] .. right.unary[k-1],
    binary

optionally followed by a ``reduce`` gene (``mean`` or ``total``, the reduction over layer pairs),
present when the search lets the reduction vary (an even number of genes); without it the
reduction is the published ``mean``. A genotype maps one to one to the
:class:`~lpzero_queue.proxies.expression.Expression`
``binary(left.unary[k-1](...left.unary[0](left.input)), ...)`` (unary operators in application
order). Genes hold names, never registry positions; the text form of a genotype is the text form
of its expression (not canonicalised: ``no_op`` genes are kept so that the mapping is 1:1; a
``mean`` reduce gene prints as the published form, so the text does not tell whether the gene is
there: :meth:`Genotype.from_expression` takes it as an argument).
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from lpzero_queue.proxies.expression import (
    Branch,
    Expression,
    format_expression,
    parse_expression,
)
from lpzero_queue.proxies.operators import BINARY_OPS, INPUT_NAMES, REDUCTIONS, UNARY_OPS

__all__ = [
    "GeneKind",
    "Genotype",
    "gene_kinds",
    "gene_names",
    "has_reduce_gene",
    "random_genotype",
    "random_valid_genotype",
    "sample_gene",
]

GeneKind = Literal["input", "unary", "binary", "reduce"]


def gene_kinds(k: int, reduce: bool = False) -> tuple[GeneKind, ...]:
    """The kind of each gene of a genotype with ``k`` unary operators per branch."""
    unary: GeneKind = "unary"
    branch: tuple[GeneKind, ...] = ("input", *[unary] * k)
    tail: tuple[GeneKind, ...] = ("binary", "reduce") if reduce else ("binary",)
    return (*branch, *branch, *tail)


def gene_names(k: int, reduce: bool = False) -> tuple[str, ...]:
    """Readable names of the genes, e.g. ``("left.input", "left.unary[0]", ..., "binary")``."""
    names: list[str] = []
    for side in ("left", "right"):
        names.append(f"{side}.input")
        names.extend(f"{side}.unary[{i}]" for i in range(k))
    return (*names, "binary", *(("reduce",) if reduce else ()))


@dataclass(frozen=True)
class Genotype:
    """A fixed-length tuple of gene values (names), see the module docstring for the layout.

    Attributes:
        genes: Input, unary and binary names in gene order, then the reduction if present.
    """

    genes: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "genes", tuple(self.genes))
        n = len(self.genes)
        if n < 3:
            raise ValueError(f"a genotype has 2 * (k + 1) + 1 genes (+1 reduce gene), got {n}")
        kinds = self.kinds
        for name, kind, value in zip(
            gene_names(self.k, self.has_reduce), kinds, self.genes, strict=True
        ):
            if value not in _registry(kind):
                raise ValueError(f"gene {name} must be a registered {kind} name, got {value!r}")

    @property
    def has_reduce(self) -> bool:
        """Whether the last gene is the reduction (an even number of genes)."""
        return len(self.genes) % 2 == 0

    @property
    def k(self) -> int:
        """Unary operators per branch."""
        return (len(self.genes) - 3 - int(self.has_reduce)) // 2

    @property
    def kinds(self) -> tuple[GeneKind, ...]:
        """The kind of each gene."""
        return gene_kinds(self.k, self.has_reduce)

    @classmethod
    def from_expression(cls, e: Expression, *, reduce_gene: bool | None = None) -> Genotype:
        """The genotype of an expression whose two branches have the same number of operators.

        Args:
            e: The expression.
            reduce_gene: Whether the genotype carries a reduction gene; None: only when the
                expression's reduction is not the published ``mean``.

        Raises:
            ValueError: if the branches differ in length, or ``reduce_gene`` is False for an
                expression whose reduction is not ``mean``.
        """
        if len(e.left.unary) != len(e.right.unary):
            raise ValueError(
                f"branches of {format_expression(e)!r} have {len(e.left.unary)} and "
                f"{len(e.right.unary)} unary operators; a genotype needs equal lengths"
            )
        if reduce_gene is None:
            reduce_gene = e.reduce != "mean"
        if not reduce_gene and e.reduce != "mean":
            raise ValueError(f"{format_expression(e)!r} needs a reduce gene ({e.reduce})")
        tail = (e.binary, e.reduce) if reduce_gene else (e.binary,)
        return cls((e.left.input, *e.left.unary, e.right.input, *e.right.unary, *tail))

    @classmethod
    def parse(cls, text: str) -> Genotype:
        """Read a genotype from the text form of its expression (see :meth:`__str__`)."""
        return cls.from_expression(parse_expression(text))

    def to_expression(self) -> Expression:
        """The expression this genotype encodes (not canonicalised)."""
        k = self.k
        left = Branch(self.genes[0], self.genes[1 : k + 1])
        right = Branch(self.genes[k + 1], self.genes[k + 2 : 2 * k + 2])
        reduce = self.genes[-1] if self.has_reduce else "mean"
        return Expression(self.genes[2 * k + 2], left, right, reduce)  # type: ignore[arg-type]

    def __str__(self) -> str:
        return format_expression(self.to_expression())


def _registry(kind: GeneKind) -> Sequence[str]:
    if kind == "input":
        return INPUT_NAMES
    if kind == "unary":
        return tuple(UNARY_OPS)
    if kind == "reduce":
        return REDUCTIONS
    return tuple(BINARY_OPS)


def _choices(
    kind: GeneKind, inputs: Sequence[str] | None, reductions: Sequence[str] | None = None
) -> tuple[list[str], list[float]]:
    """Names of one gene kind (registry order) and their cumulative sampling weights."""
    if kind == "input":
        names = list(INPUT_NAMES if inputs is None else inputs)
        weights = [1.0] * len(names)  # inputs carry no weight: uniform
    elif kind == "reduce":
        names = list(REDUCTIONS if reductions is None else reductions)
        weights = [1.0] * len(names)  # uniform over the allowed reductions
    elif kind == "unary":
        names = list(UNARY_OPS)
        weights = [float(UNARY_OPS[n].weight) for n in names]
    else:
        names = list(BINARY_OPS)
        weights = [float(getattr(BINARY_OPS[n], "weight", 1.0)) for n in names]
    cumulative = list(itertools.accumulate(weights))
    if not names or not cumulative[-1] > 0:
        raise ValueError(f"no {kind} name can be sampled (empty choice or all weights zero)")
    return names, cumulative


def sample_gene(
    kind: GeneKind,
    rng: np.random.Generator,
    inputs: Sequence[str] | None = None,
    reductions: Sequence[str] | None = None,
) -> str:
    """Draw one gene value of ``kind`` with the registry weights (inputs, reductions: uniform).

    Args:
        kind: "input", "unary", "binary" or "reduce".
        rng: The generator to draw from (exactly one uniform draw).
        inputs: Input names to choose from; None: every registered input.
        reductions: Reductions to choose from; None: every registered reduction.

    Returns:
        The drawn name: the first whose cumulative weight exceeds ``u * total`` (u uniform in
        [0, 1)), so a name of weight 0 is never drawn.
    """
    names, cumulative = _choices(kind, inputs, reductions)
    return names[bisect.bisect_right(cumulative, rng.random() * cumulative[-1])]


def has_reduce_gene(reductions: Sequence[str] | None) -> bool:
    """Whether genotypes carry a reduce gene: unless the only reduction is the published mean."""
    return reductions is not None and tuple(reductions) != ("mean",)


def random_genotype(
    rng: np.random.Generator,
    k: int,
    *,
    inputs: Sequence[str] | None = None,
    reductions: Sequence[str] | None = None,
) -> Genotype:
    """Draw a genotype gene by gene, in gene order, each with :func:`sample_gene`.

    Args:
        rng: The generator to draw from.
        k: Unary operators per branch.
        inputs: Input names to choose from; None: every registered input.
        reductions: Reductions a reduce gene may take; None or ``("mean",)``: no reduce gene
            (the published mean), so draws are exactly those of a search without the gene.

    Returns:
        The genotype (possibly trivial or constant: validity is the caller's rule).
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    kinds = gene_kinds(k, has_reduce_gene(reductions))
    return Genotype(tuple(sample_gene(kind, rng, inputs, reductions) for kind in kinds))


def random_valid_genotype(
    rng: np.random.Generator,
    k: int,
    is_valid: Callable[[Genotype], bool],
    *,
    inputs: Sequence[str] | None = None,
    reductions: Sequence[str] | None = None,
    max_draws: int = 10_000,
) -> Genotype:
    """Draw genotypes with :func:`random_genotype` until ``is_valid`` accepts one.

    Args:
        rng: The generator to draw from.
        k: Unary operators per branch.
        is_valid: Acceptance rule, e.g. "not statically pruned".
        inputs: Input names to choose from; None: every registered input.
        reductions: Reductions a reduce gene may take (see :func:`random_genotype`).
        max_draws: Give up after this many rejected draws.

    Returns:
        The first accepted genotype.

    Raises:
        RuntimeError: if ``max_draws`` draws were all rejected.
    """
    for _ in range(max_draws):
        g = random_genotype(rng, k, inputs=inputs, reductions=reductions)
        if is_valid(g):
            return g
    raise RuntimeError(f"no valid genotype in {max_draws} draws")
