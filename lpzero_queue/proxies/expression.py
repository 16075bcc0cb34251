"""Proxy expressions: data type, canonical text form, static canonicalisation and evaluation.

An expression is ``binary(u_k(...u_1(X1)), v_m(...v_1(X2)))`` (docs/method.md section 4): two
branches, each an input name and a chain of unary operators (any length, default 2), combined by a
binary operator, plus an expression-level reduction of the paired per-tensor values: ``mean``
(published, the default) or ``total`` (their sum, which scales with the number of tensors, i.e. with
depth).
Expressions are stored and printed by name in one canonical text form, e.g.
``sum(l1_norm(square(weight)), square(softmax(grad)))``, or with the non-default reduction as a
wrapper, ``total(sum(l1_norm(square(weight)), square(softmax(grad))))``;
:func:`parse_expression` reads it back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, cast

import torch
from torch import Tensor

from lpzero_queue.proxies._engine import (
    EvalResult,
    Memo,
    ProxyInputError,
    branch_values,
    evaluate_archs,
    input_tensors,
    pair_score,
    score_results,
)
from lpzero_queue.proxies.operators import BINARY_OPS, INPUT_NAMES, REDUCTIONS, UNARY_OPS
from lpzero_queue.proxies.parser import DEFAULT_REDUCTION, ExpressionSyntaxError, parse_raw

__all__ = [
    "LPZERO_FLEXIBERT",
    "LPZERO_GPT2",
    "REDUCTIONS",
    "Branch",
    "EvalResult",
    "Expression",
    "ExpressionSyntaxError",
    "ProxyInputError",
    "Reduction",
    "canonicalize",
    "constant_branch_value",
    "evaluate",
    "evaluate_archs",
    "evaluate_many",
    "format_expression",
    "is_provably_constant",
    "parse_expression",
]

# The published proxies (GPT-2's was fitted to perplexity, hence lower-is-better).
LPZERO_GPT2 = "sum(l1_norm(square(weight)), square(softmax(grad)))"  # lower is better
LPZERO_FLEXIBERT = "sum(square(negate(head)), logsoftmax(frobenius_norm(act)))"  # higher is better

# Operators that map every 0-d tensor to one fixed value (softmax -> 1, the others -> 0).
SCALAR_NORMALIZERS = frozenset(
    {"softmax", "logsoftmax", "normalize", "min_max_normalize", "to_std_scalar"}
)


Reduction = Literal["mean", "total"]


@dataclass(frozen=True)
class Branch:
    """One leaf of an expression: an input and the unary chain applied to each of its tensors.

    Attributes:
        input: Input name, one of ``INPUT_NAMES``.
        unary: Unary operator names in application order (innermost first); may be empty.
    """

    input: str
    unary: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "unary", tuple(self.unary))  # accept lists, store a tuple
        if self.input not in INPUT_NAMES:
            raise ValueError(f"unknown input {self.input!r}; expected one of: {INPUT_NAMES}")
        for name in self.unary:
            if name not in UNARY_OPS:
                raise ValueError(f"unknown unary operator {name!r}")

    def __str__(self) -> str:
        text = self.input
        for name in self.unary:
            text = f"{name}({text})"
        return text


@dataclass(frozen=True)
class Expression:
    """A proxy: a binary operator combining two branches, and a reduction over the pairs.

    Attributes:
        binary: Binary operator name, one of ``BINARY_OPS``.
        left: First argument of the binary operator.
        right: Second argument of the binary operator.
        reduce: How the per-pair values become the score: ``"mean"`` (published) or ``"total"``
            (their sum, so the score scales with the number of paired tensors).
    """

    binary: str
    left: Branch
    right: Branch
    reduce: Reduction = "mean"  # the published reduction; printed without a wrapper

    def __post_init__(self) -> None:
        if self.binary not in BINARY_OPS:
            raise ValueError(f"unknown binary operator {self.binary!r}")
        if self.reduce not in REDUCTIONS:
            raise ValueError(f"unknown reduction {self.reduce!r}; expected one of: {REDUCTIONS}")
        if not (isinstance(self.left, Branch) and isinstance(self.right, Branch)):
            raise TypeError("left and right must be Branch instances")

    def __str__(self) -> str:
        return format_expression(self)

    @property
    def hash(self) -> str:
        """SHA-256 hex digest of the canonical text form (not of the canonicalised expression)."""
        return hashlib.sha256(format_expression(self).encode("utf-8")).hexdigest()


def format_expression(e: Expression) -> str:
    """Print an expression in the canonical text form.

    Args:
        e: The expression.

    Returns:
        Function-call notation by name, one space after each comma and no other whitespace; a
        reduction other than the default ``mean`` wraps the binary call, e.g. ``total(sum(a, b))``.
    """
    call = f"{e.binary}({e.left}, {e.right})"
    return call if e.reduce == DEFAULT_REDUCTION else f"{e.reduce}({call})"


def parse_expression(text: str) -> Expression:
    """Parse the text form of an expression (any whitespace between tokens).

    Args:
        text: e.g. ``"sum(l1_norm(square(weight)), square(softmax(grad)))"`` or
            ``"total(sum(l1_norm(square(weight)), square(softmax(grad))))"``.

    Returns:
        The expression; ``parse_expression(format_expression(e)) == e``.

    Raises:
        ExpressionSyntaxError: with the 0-based ``position`` and what was ``expected`` there.
    """
    reduce, binary, (left_input, left_ops), (right_input, right_ops) = parse_raw(text)
    left, right = Branch(left_input, left_ops), Branch(right_input, right_ops)
    # The parser only accepts registered reductions; __post_init__ checks it again.
    return Expression(binary, left, right, cast(Reduction, reduce))


def canonical_chain(chain: Sequence[str]) -> tuple[str, ...]:
    # A stack is the reduced prefix: it never holds two equal adjacent idempotent or self-inverse
    # operators, so cascades (negate(abs(abs(negate(x)))) ...) reduce in one pass.
    stack: list[str] = []
    for name in chain:
        op = UNARY_OPS[name]
        if name == "no_op":
            continue
        if stack and stack[-1] == name:
            if op.idempotent:
                continue
            if op.self_inverse:
                stack.pop()
                continue
        stack.append(name)
    return tuple(stack)


def canonicalize(e: Expression) -> Expression:
    """Return the canonical form of an expression, with the same value on every input.

    Drops ``no_op``; collapses runs of an exactly idempotent operator (``abs``, ``relu``, and the
    scalar reductions ``frobenius_norm``, ``mean``, ``l1_norm``, ``to_mean_scalar``); cancels
    adjacent pairs of an exactly self-inverse operator (``negate`` only: ``invert`` is not, because
    of its clamp and floating-point rounding); orders the branches of a commutative binary operator
    (``sum``, ``product``) by their text so that ``sum(a, b)`` and ``sum(b, a)`` coincide. The
    reduction is kept.

    Args:
        e: The expression.

    Returns:
        The canonical expression (idempotent: canonicalising it again changes nothing).
    """
    left = Branch(e.left.input, canonical_chain(e.left.unary))
    right = Branch(e.right.input, canonical_chain(e.right.unary))
    if BINARY_OPS[e.binary].commutative and str(right) < str(left):
        left, right = right, left
    return Expression(e.binary, left, right, e.reduce)


def constant_branch_value(branch: Branch) -> float | None:
    """The value of a branch that is the same for every input, if a static rule proves it.

    A scalar-producing operator followed (anywhere later) by one of ``SCALAR_NORMALIZERS`` maps
    every tensor to one fixed value; the operators after it only transform that constant.

    Args:
        branch: The branch.

    Returns:
        The constant per-tensor (hence per-branch) value, or None if not provably constant.
    """
    seen_scalar = False
    for i, name in enumerate(branch.unary):
        if seen_scalar and name in SCALAR_NORMALIZERS:
            value = torch.zeros((), dtype=torch.float64)  # any input gives the same result
            for rest in branch.unary[i:]:
                value = UNARY_OPS[rest].fn(value)
            return float(value)
        if UNARY_OPS[name].output == "scalar":
            seen_scalar = True
    return None


def is_provably_constant(e: Expression) -> str | None:
    """Name the static rule proving that an expression scores every architecture the same.

    Rules (docs/method.md section 6), checked on the canonical form:
      - ``"difference_of_identical_branches"``: ``difference(x, x)`` is 0 for every pair, so the
        score is 0 under either reduction.
      - ``"scalar_then_normalizer"``: both branches are constant by :func:`constant_branch_value`,
        so every pair has the same value ``k = binary(left, right)``. Under ``mean`` the score is
        ``k``; under ``total`` it is ``n * k`` with ``n`` the number of pairs (the shorter input
        list), which varies with the number of layers, so the rule fires for ``total`` only when
        ``k == 0``. (With ``k != 0`` such a proxy ranks exactly like the pair count: a depth
        baseline, not a constant.)
      - ``"product_with_zero_branch"``: ``product`` with a branch that is provably constant 0;
        every pair is 0, so the score is 0 under either reduction.

    One constant branch under ``sum``/``difference`` (or a non-zero one under ``product``) is
    *not* constant: under ``mean`` the proxy is then an affine function of the other branch (same
    ranking up to sign), which is a duplicate-detection matter, not a constant; under ``total`` the
    constant adds ``n * c``, which depends on the architecture.

    Args:
        e: The expression.

    Returns:
        The rule name, or None if no rule proves the expression constant.
    """
    c = canonicalize(e)
    if c.binary == "difference" and c.left == c.right:
        return "difference_of_identical_branches"
    left, right = constant_branch_value(c.left), constant_branch_value(c.right)
    if left is not None and right is not None:
        if c.reduce == "mean":
            return "scalar_then_normalizer"
        pair = BINARY_OPS[c.binary].fn(
            torch.tensor(left, dtype=torch.float64), torch.tensor(right, dtype=torch.float64)
        )
        if float(pair) == 0.0:
            return "scalar_then_normalizer"
    if c.binary == "product" and 0.0 in (left, right):
        return "product_with_zero_branch"
    return None


def _reference_apply(op_name: str, state: Sequence[Tensor]) -> Sequence[Tensor]:
    op = UNARY_OPS[op_name]
    return [op.fn(t) for t in state]


def reference_branch_means(
    branches: Iterable[Branch], inputs: Mapping[str, Sequence[Tensor]]
) -> dict[Branch, Tensor | Exception]:
    """Per-tensor means of each branch by the published per-tensor loop (the reference).

    Each operator acts on each tensor of the list in turn; branches sharing a chain prefix share
    its computation (chains in sorted order, one path of intermediates alive at a time). The
    stacked engine (``_engine``) gives the same values up to floating-point rounding.
    """
    chains: dict[str, set[tuple[str, ...]]] = {}
    for b in branches:
        chains.setdefault(b.input, set()).add(b.unary)
    out: dict[Branch, Tensor | Exception] = {}
    for input_name, wanted in chains.items():
        state: Sequence[Tensor] | Exception
        try:
            state = input_tensors(inputs, input_name)
        except ProxyInputError as exc:
            state = exc
        path: list[tuple[tuple[str, ...], Sequence[Tensor] | Exception]] = [((), state)]
        for chain in sorted(wanted):  # sorted: a chain's prefixes are on the path before it
            while chain[: len(path[-1][0])] != path[-1][0]:
                path.pop()
            for depth in range(len(path[-1][0]) + 1, len(chain) + 1):
                parent = path[-1][1]
                try:
                    value = (
                        parent
                        if isinstance(parent, Exception)
                        else _reference_apply(chain[depth - 1], parent)
                    )
                except Exception as exc:
                    value = exc
                path.append((chain[:depth], value))
            value = path[-1][1]
            out[Branch(input_name, chain)] = (
                value
                if isinstance(value, Exception)
                else torch.stack([t.detach().to(torch.float64).mean() for t in value])
            )
    return out


def _branch_means(
    branches: Sequence[Branch], inputs: Mapping[str, Sequence[Tensor]], stacked: bool
) -> dict[Branch, Tensor | Exception]:
    if stacked:
        return branch_values(branches, [inputs])[0]
    return reference_branch_means(branches, inputs)


def evaluate(
    e: Expression, inputs: Mapping[str, Sequence[Tensor]], *, stacked: bool = True
) -> float:
    """Score one architecture with an expression, as published (docs/method.md section 4).

    Each branch applies its unary chain to every tensor of its input list independently and
    reduces each result to its mean; the two lists of scalars are paired by position (like
    ``zip``: the longer list is truncated to the shorter); the binary operator acts on each pair;
    the score is the mean over pairs (``reduce="mean"``) or their sum (``reduce="total"``). Inputs
    are never modified.

    Args:
        e: The expression.
        inputs: Input name -> list of tensors (one per module instance), e.g. from the extractor.
        stacked: Evaluate with the stacked engine (``_engine``: tensors of equal shape together);
            False runs the reference per-tensor loop, which gives the same score up to
            floating-point rounding.

    Returns:
        The score as a Python float (float64); may be NaN or infinite.

    Raises:
        ProxyInputError: if an input the expression uses is missing or empty.
    """
    means = _branch_means((e.left, e.right), inputs, stacked)
    left, right = means[e.left], means[e.right]
    for value in (left, right):
        if isinstance(value, Exception):
            raise value
    assert isinstance(left, Tensor) and isinstance(right, Tensor)
    return float(pair_score(e, left, right))


def evaluate_many(
    exprs: Sequence[Expression],
    inputs: Mapping[str, Sequence[Tensor]],
    *,
    stacked: bool = True,
    memo: Memo | None = None,
) -> list[EvalResult]:
    """Score one architecture with many expressions, reusing shared branch work.

    Branches (input + unary chain) are computed once per call, and chains sharing a prefix share
    its computation; errors are captured per expression instead of raised.
    :func:`evaluate_archs` does the same for many architectures at once.

    Args:
        exprs: The expressions.
        inputs: Input name -> list of tensors, as for :func:`evaluate`.
        stacked: As for :func:`evaluate`.
        memo: Branch memo of these inputs, read and filled (stacked only; see ``_engine``).

    Returns:
        One result per expression, in order: "ok" with a finite score, "nonfinite" (score None),
        or "error" with the exception text (a missing input included).
    """
    if stacked:
        return evaluate_archs(exprs, [inputs], memos=[memo])[0]
    means = reference_branch_means([b for e in exprs for b in (e.left, e.right)], inputs)
    return score_results(exprs, means)
