"""Proxy operators: the unary and binary primitives of LPZero expressions, and their registry.

Every operator is a frozen record that states its numeric guard in words, computes in float64, and
never modifies its input (all operations here are out of place; note that ``.to(torch.float64)``
returns the *same* tensor when the input already is float64, so the cast alone is not what protects
the caller). Operators are validated when they are registered (gplearn style): a primitive that
returns a non-finite value on a finite input, writes into its input, or breaks its declared output
shape, or whose ``idempotent``/``self_inverse`` flag is false on the battery, is rejected with a
``ValueError`` naming the operator and the failing case.

The built-ins are registered without running the battery at import time (no work at import time);
``tests/proxies/test_operators.py`` runs :func:`validate_unary` / :func:`validate_binary` on each.

There is no ``matmul``: branches are reduced to one scalar per tensor before the binary operator
acts (docs/method.md section 4), so a matrix product can never apply.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

import torch
from torch import Tensor

from lpzero_queue.proxies import _stacked

OutputKind = Literal["elementwise", "same_shape", "scalar"]

INPUT_DESCRIPTIONS: Mapping[str, str] = MappingProxyType(
    {
        "act": "outputs of the feed-forward activation functions, one tensor per layer",
        "head": "output of the first projection of each token mixer (query / input projection)",
        "softmax": "attention probabilities (softmax of the transform output for linear mixers)",
        "grad": "gradients of the token-mixing Linear weights after a real backward pass",
        "weight": "the token-mixing Linear weights themselves",
        "jacobs": "gradient of the output with respect to the position embeddings (optional)",
    }
)
INPUT_NAMES: tuple[str, ...] = tuple(INPUT_DESCRIPTIONS)

# Expression-level reductions of the paired per-tensor values (docs/method.md section 4). `mean` is
# the published one (the default, written without a wrapper); `total` sums the pair values instead,
# so that a proxy scales with the number of tensors (layers). Listed here because they share the
# name space of the text form with operators and inputs.
REDUCTIONS: tuple[str, ...] = ("mean", "total")

LOG_MAX = 1e30  # log/abslog clamp their argument here so +inf and huge inputs give a finite log
INVERT_MIN_ABS = 1e-12  # invert: |x| is clamped to at least this, keeping the sign (0 -> +1e12)
EXP_MAX = 80.0  # exp(80) ~ 5.5e34: finite in float64 and still far above any useful proxy value
NORM_EPS = 1e-9  # normalize / min_max_normalize denominator epsilon (as published)

_NAME_RE = re.compile(r"[a-z_][a-z0-9_]*\Z")


@dataclass(frozen=True)
class UnaryOp:
    """A unary operator applied to each tensor of a branch independently.

    Attributes:
        name: Unique snake_case name, used in the canonical text form.
        fn: The computation; returns a float64 tensor and never modifies its argument.
        guard: Human-readable statement of the numeric guard (epsilon, clamping), or "none".
        output: "elementwise" (same shape, each entry depends only on the same input entry),
            "same_shape" (same shape, depends on the whole tensor) or "scalar" (0-d tensor).
        idempotent: f(f(x)) == f(x) exactly, so runs of the operator may be collapsed.
        self_inverse: f(f(x)) == x exactly, so adjacent pairs may be cancelled.
        weight: Relative sampling weight for random genotypes.
        stacked_fn: The operator applied to every slice ``x[g]`` of a stacked ``(G, *shape)``
            tensor at once (see ``_stacked``); None for an elementwise operator (``fn`` itself
            is its stacked form) or one that must run per tensor.
    """

    name: str
    fn: Callable[[Tensor], Tensor]
    guard: str
    output: OutputKind
    idempotent: bool = False
    self_inverse: bool = False
    # The paper states no operator weights (nor does docs/method.md), so sampling is uniform.
    # (One published version of `sample_unary_key_by_prob` gave `no_op` weight 0.2 and every other
    # operator 0.1; we do not copy that: canonicalisation drops `no_op` anyway.)
    weight: float = 1.0
    stacked_fn: Callable[[Tensor], Tensor] | None = None

    @property
    def stacked(self) -> Callable[[Tensor], Tensor] | None:
        """The stacked form used by evaluation, or None when the operator runs per tensor."""
        if self.stacked_fn is not None:
            return self.stacked_fn
        return self.fn if self.output == "elementwise" else None

    def __call__(self, x: Tensor) -> Tensor:
        """Apply the operator to one tensor."""
        return self.fn(x)


@dataclass(frozen=True)
class BinaryOp:
    """A binary operator combining the two branch scalars of one pair.

    Attributes:
        name: Unique snake_case name, used in the canonical text form.
        fn: Elementwise computation on two float64 tensors of equal shape.
        guard: Human-readable statement of the numeric guard, or "none".
        commutative: fn(a, b) == fn(b, a) exactly, so canonical forms may order the branches.
    """

    name: str
    fn: Callable[[Tensor, Tensor], Tensor]
    guard: str
    commutative: bool

    def __call__(self, a: Tensor, b: Tensor) -> Tensor:
        """Apply the operator to two tensors."""
        return self.fn(a, b)


def _f64(x: Tensor) -> Tensor:
    return x.detach().to(torch.float64)


# The guards below avoid torch.where on whole tensors: its CPU kernel is several times slower
# than the arithmetic it replaces. Each form gives exactly the value of the `where` form; adding a
# boolean mask adds exactly 0 or 1, and NaN fails every comparison, so it propagates. In-place
# steps (`add_`, `log_`, ...) only ever act on tensors created inside the operator.


def _log(x: Tensor) -> Tensor:
    x = _f64(x)
    # where(x <= 0, 1, x).clamp(max=LOG_MAX): entries <= 0 become 0 + 1, the others x + 0.
    return x.clamp(min=0.0, max=LOG_MAX).add_(x <= 0).log_()


def _abslog(x: Tensor) -> Tensor:
    a = _f64(x).abs()  # a new tensor: the in-place steps below never touch the input
    return a.add_(a == 0).clamp_(max=LOG_MAX).log_()  # where(a == 0, 1, a), clamped


def _invert(x: Tensor) -> Tensor:
    x = _f64(x)
    # where(x >= 0, x.clamp(min=m), x.clamp(max=-m)) is sign * |x|.clamp(min=m), with sign -1
    # exactly where x < 0 (so -0.0 and NaN count as positive: -0.0 -> +1e12, NaN stays NaN).
    sign = (x < 0).to(torch.float64).mul_(-2.0).add_(1.0)
    return sign.div_(x.abs().clamp_(min=INVERT_MIN_ABS))


def _sqrt(x: Tensor) -> Tensor:
    # sqrt(x.clamp(min=0)) computed as 1 / rsqrt: within 1.5 ulp of torch.sqrt (measured 3.1e-16
    # relative on 1e-300..1e300), and several times faster on CPU, where torch's float64 sqrt is
    # slow, slowest on a mix of zeros and positive values. 0 -> 1/inf = 0, inf -> inf, NaN -> NaN.
    return _f64(x).clamp(min=0.0).rsqrt_().reciprocal_()


def _normalize(x: Tensor) -> Tensor:
    x = _f64(x)
    return (x - x.mean()).div_(x.std(correction=0) + NORM_EPS)


def _min_max_normalize(x: Tensor) -> Tensor:
    x = _f64(x)
    lo, hi = x.min(), x.max()
    return (x - lo).div_(hi - lo + NORM_EPS)


def _frobenius_norm(x: Tensor) -> Tensor:
    x = _f64(x)
    scale = x.abs().amax()
    # Rescaling by max|x| avoids overflow/underflow of the squares, and makes the norm of a
    # scalar exactly |x| (x / |x| = +-1), which is what makes this operator exactly idempotent.
    # torch.where instead of an `if` keeps it free of host synchronisation on accelerators.
    usable = torch.isfinite(scale) & (scale > 0)
    safe = torch.where(usable, scale, 1.0)  # 0, inf or NaN: nothing to rescale (x / 1 is x)
    norm = torch.linalg.vector_norm(x / safe)
    return torch.where(usable, safe * norm, norm)


def _mean(x: Tensor) -> Tensor:
    x = _f64(x)
    return x.sum() / x.numel()


def _l1_norm(x: Tensor) -> Tensor:
    x = _f64(x)
    return x.abs().sum() / x.numel()


def _along_first_axis(fn: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    def apply(x: Tensor) -> Tensor:
        x = _f64(x)
        if x.dim() == 0:
            return fn(x.reshape(1)).reshape(())
        return fn(x)

    return apply


_UNARY_BUILTINS: tuple[UnaryOp, ...] = (
    UnaryOp(
        "log",
        _log,
        "log of the positive part: entries <= 0 become 1 (log 0), then clamped "
        f"to <= {LOG_MAX:g} so +inf/huge inputs stay finite; NaN propagates",
        "elementwise",
    ),
    UnaryOp(
        "abslog",
        _abslog,
        f"log |x| with zeros treated as 1 (log 0), |x| clamped to <= {LOG_MAX:g}; NaN propagates",
        "elementwise",
    ),
    UnaryOp("abs", lambda x: _f64(x).abs(), "none", "elementwise", idempotent=True),
    UnaryOp(
        "square",
        lambda x: _f64(x).square(),
        "none (overflows to inf only for |x| > 1.3e154, which evaluation reports as nonfinite)",
        "elementwise",
    ),
    UnaryOp(
        "exp", lambda x: _f64(x).clamp(max=EXP_MAX).exp_(), "x clamped to <= 80", "elementwise"
    ),
    UnaryOp(
        "normalize",
        _normalize,
        f"(x - mean) / (population std + {NORM_EPS:g}); a constant tensor gives 0. Not "
        "idempotent: the epsilon shrinks the result by ~1e-9 relative",
        "same_shape",
        stacked_fn=functools.partial(_stacked.stacked_normalize, eps=NORM_EPS),
    ),
    UnaryOp("relu", lambda x: _f64(x).relu(), "none", "elementwise", idempotent=True),
    UnaryOp(
        "invert",
        _invert,
        f"1/x with |x| clamped to >= {INVERT_MIN_ABS:g} keeping the sign "
        "(0 -> +1e12). Not self-inverse: the clamp and double rounding break 1/(1/x) == x",
        "elementwise",
    ),
    UnaryOp(
        "frobenius_norm",
        _frobenius_norm,
        "computed as max|x| * ||x / max|x|||_2 (no overflow/underflow of the squares)",
        "scalar",
        idempotent=True,
        stacked_fn=_stacked.stacked_frobenius_norm,
    ),
    UnaryOp(
        "mean",
        _mean,
        "none: sum / numel ('normalized sum')",
        "scalar",
        idempotent=True,
        stacked_fn=_stacked.stacked_mean,
    ),
    UnaryOp(
        "l1_norm",
        _l1_norm,
        "none: sum |x| / numel",
        "scalar",
        idempotent=True,
        stacked_fn=_stacked.stacked_l1_norm,
    ),
    UnaryOp(
        "softmax",
        _along_first_axis(lambda x: torch.softmax(x, dim=0)),
        "max-shifted softmax over the first axis (dim 0); a 0-d tensor is taken as shape (1,)",
        "same_shape",
        stacked_fn=functools.partial(_stacked.stacked_softmax, log=False),
    ),
    UnaryOp("sigmoid", lambda x: _f64(x).sigmoid(), "none (saturates to 0/1)", "elementwise"),
    UnaryOp(
        "logsoftmax",
        _along_first_axis(lambda x: torch.log_softmax(x, dim=0)),
        "max-shifted log-softmax over the first axis (dim 0); a 0-d tensor is taken as shape (1,)",
        "same_shape",
        stacked_fn=functools.partial(_stacked.stacked_softmax, log=True),
    ),
    UnaryOp(
        "sqrt",
        _sqrt,
        "sqrt of the positive part (as 1 / rsqrt, within 1.5 ulp): entries < 0 become 0; NaN "
        "propagates",
        "elementwise",
    ),
    UnaryOp("negate", lambda x: -_f64(x), "none", "elementwise", self_inverse=True),
    UnaryOp(
        "min_max_normalize",
        _min_max_normalize,
        f"(x - min) / (max - min + {NORM_EPS:g}); not idempotent because of the epsilon",
        "same_shape",
        stacked_fn=functools.partial(_stacked.stacked_min_max_normalize, eps=NORM_EPS),
    ),
    UnaryOp(
        "to_mean_scalar",
        lambda x: _f64(x).mean(),
        "none: torch.mean",
        "scalar",
        idempotent=True,
        stacked_fn=_stacked.stacked_to_mean_scalar,
    ),
    UnaryOp(
        "to_std_scalar",
        lambda x: _f64(x).std(correction=0),
        "population std (correction 0): 0 for one element (published unbiased std: NaN)",
        "scalar",
        stacked_fn=_stacked.stacked_to_std_scalar,
    ),
    UnaryOp("no_op", _f64, "none: identity (cast to float64)", "elementwise", idempotent=True),
)

# `matmul` (in the paper) is deliberately absent: each branch is reduced to one scalar per tensor
# before the binary operator acts (docs/method.md section 4), so a matrix product can never apply;
# the published code silently fell back to an elementwise product in that case, duplicating
# `product`.
_BINARY_BUILTINS: tuple[BinaryOp, ...] = (
    BinaryOp("sum", torch.add, "none", commutative=True),
    BinaryOp("difference", torch.sub, "none", commutative=False),
    BinaryOp("product", torch.mul, "none", commutative=True),
)

_UNARY: dict[str, UnaryOp] = {op.name: op for op in _UNARY_BUILTINS}
_BINARY: dict[str, BinaryOp] = {op.name: op for op in _BINARY_BUILTINS}

UNARY_OPS: Mapping[str, UnaryOp] = MappingProxyType(_UNARY)
BINARY_OPS: Mapping[str, BinaryOp] = MappingProxyType(_BINARY)


def _battery() -> list[tuple[str, Tensor]]:
    mixed = torch.linspace(-5.0, 5.0, 48, dtype=torch.float64).reshape(2, 3, 2, 4)
    mixed[0, 0, 0, :] = torch.tensor([0.0, 1e-30, -1e30, 1e30], dtype=torch.float64)
    return [
        ("zeros 0-d", torch.zeros((), dtype=torch.float64)),
        ("negative 0-d", torch.tensor(-3.5, dtype=torch.float64)),
        ("zeros 4-d", torch.zeros(2, 3, 2, 2, dtype=torch.float64)),
        ("negatives 1-d", -torch.arange(1.0, 8.0, dtype=torch.float64)),
        ("single element 1-d", torch.tensor([2.0], dtype=torch.float64)),
        ("tiny 1e-30 2-d", torch.full((3, 4), 1e-30, dtype=torch.float64)),
        ("tiny +-1e-30 1-d", torch.tensor([1e-30, -1e-30, 1e-30], dtype=torch.float64)),
        ("huge 1e30 2-d", torch.full((2, 5), 1e30, dtype=torch.float64)),
        ("huge +-1e30 2-d", torch.tensor([[1e30, -1e30], [-1e30, 1e30]], dtype=torch.float64)),
        ("mixed 4-d", mixed),
        ("mixed float32 2-d", torch.linspace(-3.0, 4.0, 12, dtype=torch.float32).reshape(3, 4)),
    ]


def _check_name(name: str, kind: str) -> None:
    if not _NAME_RE.match(name):
        raise ValueError(f"{kind} operator name {name!r} must be snake_case ([a-z_][a-z0-9_]*)")
    if name in _UNARY or name in _BINARY or name in INPUT_DESCRIPTIONS or name in REDUCTIONS:
        raise ValueError(f"{kind} operator name {name!r} is already taken")


def _run_checked(op_name: str, case: str, fn: Callable[[], Tensor]) -> Tensor:
    try:
        result = fn()
    except Exception as exc:
        raise ValueError(f"operator {op_name!r} raised on case {case!r}: {exc!r}") from exc
    if not isinstance(result, Tensor):
        raise ValueError(f"operator {op_name!r} returned {type(result).__name__} on case {case!r}")
    if not bool(torch.isfinite(result).all()):
        raise ValueError(f"operator {op_name!r} returned a non-finite value on case {case!r}")
    return result


def _check_stacked(op: UnaryOp, case: str, x: Tensor) -> None:
    stacked_fn = op.stacked
    if stacked_fn is None:
        return
    x64 = x.to(torch.float64)
    pair = torch.stack([x64, x64 * -0.5])  # two slices of the same shape
    before = pair.clone()
    y = _run_checked(op.name, case + " (stacked)", functools.partial(stacked_fn, pair))
    if not torch.equal(pair, before):
        raise ValueError(f"operator {op.name!r}: stacked form modified its input on case {case!r}")
    want = torch.stack([op.fn(v) for v in pair])
    if y.shape != want.shape or not torch.allclose(y, want, rtol=1e-9, atol=1e-12):
        raise ValueError(
            f"operator {op.name!r}: stacked form differs from the per-tensor operator "
            f"on case {case!r}"
        )


def validate_unary(op: UnaryOp) -> None:
    """Run a unary operator on the fixed battery and check its declared behaviour.

    Args:
        op: The operator to check.

    Raises:
        ValueError: naming the operator and the failing case, if it raises, returns a non-finite
            value, modifies its input, breaks its `output` shape behaviour, if its stacked form
            (``op.stacked``) differs from applying it to each slice, or if its `idempotent` or
            `self_inverse` flag does not hold exactly.
    """
    if op.output not in ("elementwise", "same_shape", "scalar"):
        raise ValueError(f"operator {op.name!r}: unknown output kind {op.output!r}")
    if not op.weight >= 0.0:
        raise ValueError(f"operator {op.name!r}: weight must be >= 0, got {op.weight!r}")
    for case, x in _battery():
        before = x.clone()
        y = _run_checked(op.name, case, functools.partial(op.fn, x))
        if not (torch.equal(x, before) and x.dtype == before.dtype):
            raise ValueError(f"operator {op.name!r} modified its input in place on case {case!r}")
        if op.output == "scalar" and y.dim() != 0:
            raise ValueError(
                f"operator {op.name!r} declared scalar output but returned shape "
                f"{tuple(y.shape)} on case {case!r}"
            )
        if op.output != "scalar" and y.shape != x.shape:
            raise ValueError(
                f"operator {op.name!r} declared {op.output} output but changed shape "
                f"{tuple(x.shape)} -> {tuple(y.shape)} on case {case!r}"
            )
        if op.output == "elementwise" and x.numel() > 1:
            parts = torch.stack([op.fn(v).reshape(()) for v in x.reshape(-1)])
            if not torch.allclose(
                y.reshape(-1).to(torch.float64), parts.to(torch.float64), rtol=1e-12, atol=0.0
            ):
                raise ValueError(
                    f"operator {op.name!r} declared elementwise output but entries "
                    f"depend on each other on case {case!r}"
                )
        if op.idempotent or op.self_inverse:
            yy = _run_checked(op.name, case + " (applied twice)", functools.partial(op.fn, y))
            if op.idempotent and not torch.equal(yy, y):
                raise ValueError(
                    f"operator {op.name!r} declared idempotent but f(f(x)) != f(x) on case {case!r}"
                )
            if op.self_inverse and not torch.equal(yy, x.to(yy.dtype)):
                raise ValueError(
                    f"operator {op.name!r} declared self-inverse but f(f(x)) != x on case {case!r}"
                )
    for case, x in _battery():  # after the checks above, whose messages are more specific
        _check_stacked(op, case, x)


def validate_binary(op: BinaryOp) -> None:
    """Run a binary operator on pairs from the battery and check its declared behaviour.

    Args:
        op: The operator to check.

    Raises:
        ValueError: naming the operator and the failing case, if it raises, returns a non-finite
            value, modifies an input, changes the shape, or is declared commutative but is not.
    """
    cases = [(name, x.reshape(-1)) for name, x in _battery()]
    for (name_a, a), (name_b, b) in zip(cases, cases[1:] + cases[:1], strict=True):
        n = min(a.numel(), b.numel())
        a, b = a[:n], b[:n]
        case = f"{name_a} with {name_b}"
        before_a, before_b = a.clone(), b.clone()
        y = _run_checked(op.name, case, functools.partial(op.fn, a, b))
        if not (torch.equal(a, before_a) and torch.equal(b, before_b)):
            raise ValueError(f"operator {op.name!r} modified an input in place on case {case!r}")
        if y.shape != a.shape:
            raise ValueError(
                f"operator {op.name!r} changed shape {tuple(a.shape)} -> "
                f"{tuple(y.shape)} on case {case!r}"
            )
        if op.commutative and not torch.equal(y, op.fn(b, a)):
            raise ValueError(
                f"operator {op.name!r} declared commutative but f(a, b) != f(b, a) on case {case!r}"
            )


def register_unary(op: UnaryOp) -> None:
    """Validate a unary operator and add it to :data:`UNARY_OPS`.

    Args:
        op: The operator; its name must be new snake_case, distinct from every operator and input.

    Raises:
        ValueError: if the name is taken or malformed, or validation fails (see
            :func:`validate_unary`).
    """
    _check_name(op.name, "unary")
    validate_unary(op)
    _UNARY[op.name] = op


def register_binary(op: BinaryOp) -> None:
    """Validate a binary operator and add it to :data:`BINARY_OPS`.

    Args:
        op: The operator; its name must be new snake_case, distinct from every operator and input.

    Raises:
        ValueError: if the name is taken or malformed, or validation fails (see
            :func:`validate_binary`).
    """
    _check_name(op.name, "binary")
    validate_binary(op)
    _BINARY[op.name] = op
