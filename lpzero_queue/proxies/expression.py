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
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, cast

import torch
from torch import Tensor

from lpzero_queue.proxies._stacked import StackedList
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


class ProxyInputError(ValueError):
    """A proxy input the expression needs is missing, empty, or not a list of tensors."""


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


def _canonical_chain(chain: Sequence[str]) -> tuple[str, ...]:
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
    left = Branch(e.left.input, _canonical_chain(e.left.unary))
    right = Branch(e.right.input, _canonical_chain(e.right.unary))
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


@dataclass(frozen=True)
class EvalResult:
    """Outcome of evaluating one expression on one architecture's inputs.

    Attributes:
        score: The proxy value; None unless status is "ok".
        status: "ok", "nonfinite" (NaN or infinite score) or "error" (an exception was raised).
        error: ``"ExceptionType: message"`` when status is "error", else None.
    """

    score: float | None
    status: Literal["ok", "nonfinite", "error"]
    error: str | None = None


@dataclass
class _Node:
    children: dict[str, _Node] = field(default_factory=dict)
    terminal: bool = False


def _input_tensors(inputs: Mapping[str, Sequence[Tensor]], name: str) -> Sequence[Tensor]:
    tensors = inputs.get(name)
    if tensors is None:
        raise ProxyInputError(f"input {name!r} is missing")
    if len(tensors) == 0:
        raise ProxyInputError(f"input {name!r} is an empty list")
    if not all(isinstance(t, Tensor) for t in tensors):
        raise ProxyInputError(f"input {name!r} must be a sequence of torch.Tensor")
    return tensors


_State = Sequence[Tensor] | StackedList | Exception


def _apply(op_name: str, state: Sequence[Tensor] | StackedList) -> Sequence[Tensor] | StackedList:
    op = UNARY_OPS[op_name]
    if isinstance(state, StackedList):
        return state.apply(op)
    return [op.fn(t) for t in state]


def _means(state: Sequence[Tensor] | StackedList) -> Tensor:
    if isinstance(state, StackedList):
        return state.means()
    return torch.stack([t.detach().to(torch.float64).mean() for t in state])


def _branch_means(
    branches: Iterable[Branch], inputs: Mapping[str, Sequence[Tensor]], stacked: bool = True
) -> dict[Branch, Tensor | Exception]:
    """Per-tensor means of each branch, sharing work between branches with a common prefix.

    The branches of one input form a trie of unary chains, walked depth first: each operator is
    applied once per trie node (not once per branch), and only one path of intermediate tensors
    is alive at a time, so memory stays bounded by the chain length, not by the number of branches.
    With ``stacked``, each input is cast to float64 once and its tensors of equal shape are
    stacked (``_stacked.StackedList``), so an operator costs one call per shape, not per tensor.
    """
    # The stacked path walks canonical chains (no `no_op`, no `abs(abs(x))`, no
    # `negate(negate(x))`): the same values exactly (the flags are validated exactly), less work.
    walked = {b: Branch(b.input, _canonical_chain(b.unary)) if stacked else b for b in branches}
    roots: dict[str, _Node] = {}
    for b in walked.values():
        node = roots.setdefault(b.input, _Node())
        for name in b.unary:
            node = node.children.setdefault(name, _Node())
        node.terminal = True
    out: dict[Branch, Tensor | Exception] = {}
    for input_name, root in roots.items():
        state: _State
        try:
            state = _input_tensors(inputs, input_name)
            if stacked:
                state = StackedList.from_tensors(state) or state  # None: an empty tensor
        except ProxyInputError as exc:
            state = exc
        stack: list[tuple[_Node, tuple[str, ...], _State]] = [(root, (), state)]
        while stack:
            node, chain, state = stack.pop()
            if chain and not isinstance(state, Exception):
                try:  # `state` holds the parent's tensors until here: apply the last operator
                    state = _apply(chain[-1], state)
                except Exception as exc:
                    state = exc
            if node.terminal:
                out[Branch(input_name, chain)] = (
                    state if isinstance(state, Exception) else _means(state)
                )
            for name, child in node.children.items():
                stack.append((child, (*chain, name), state))
    return {b: out[w] for b, w in walked.items()}


def _combine(e: Expression, left: Tensor, right: Tensor) -> float:
    n = min(left.numel(), right.numel())  # pair by position; the longer list is truncated (zip)
    pairs = BINARY_OPS[e.binary].fn(left[:n], right[:n])
    return float(pairs.mean() if e.reduce == "mean" else pairs.sum())


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
        stacked: Evaluate tensors of equal shape together (see ``_stacked``); False runs the
            reference per-tensor loop, which gives the same score up to floating-point rounding.

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
    return _combine(e, left, right)


def evaluate_many(
    exprs: Sequence[Expression], inputs: Mapping[str, Sequence[Tensor]], *, stacked: bool = True
) -> list[EvalResult]:
    """Score one architecture with many expressions, reusing shared branch work.

    Branches (input + unary chain) are computed once per call, and chains sharing a prefix share
    its computation; errors are captured per expression instead of raised.

    Args:
        exprs: The expressions.
        inputs: Input name -> list of tensors, as for :func:`evaluate`.
        stacked: As for :func:`evaluate`.

    Returns:
        One result per expression, in order: "ok" with a finite score, "nonfinite" (score None),
        or "error" with the exception text (a missing input included).
    """
    means = _branch_means((b for e in exprs for b in (e.left, e.right)), inputs, stacked)
    results: list[EvalResult] = []
    for e in exprs:
        left, right = means[e.left], means[e.right]
        try:
            for value in (left, right):
                if isinstance(value, Exception):
                    raise value
            assert isinstance(left, Tensor) and isinstance(right, Tensor)
            score = _combine(e, left, right)
        except Exception as exc:
            results.append(EvalResult(None, "error", f"{type(exc).__name__}: {exc}"))
            continue
        if math.isfinite(score):
            results.append(EvalResult(score, "ok"))
        else:
            results.append(EvalResult(None, "nonfinite"))
    return results
