"""The evaluation engine: many expressions over many architectures in few large tensor operations.

A branch (an input and its canonical unary chain) reduces every tensor of its input list to one
mean; an expression pairs two such vectors. The engine computes every distinct branch of a batch
of expressions once per *pack* of architectures:

- **Packing.** The input lists of the architectures of a pack are concatenated and stacked by
  shape (``_stacked.StackedList``): each group is one segmented float64 buffer holding the
  tensors of every architecture of the pack that share a shape, so an operator costs one call
  per shape for the whole pack, and a per-tensor reduction is one row reduction. Each slice is
  computed independently, so the value of a tensor does not depend on what else is packed with
  it beyond floating-point rounding of the row kernels. On the CPU a pack is one architecture
  (the float64 copies of a whole shard would not fit in memory); on an accelerator, as many as
  ``pack_bytes`` allows.
- **Shared sub-expressions.** The branches of one input form a trie of unary chains walked depth
  first: a common prefix is computed once for every branch and architecture that has it.
- **Memo.** Branch means are a few floats per tensor; a caller that keeps a ``memo`` per
  architecture (the worker's input cache does) never computes a branch twice for it: a search
  re-evaluates the same branches generation after generation (children inherit their parents'
  branches). A memoised value is the value computed before, bit for bit.
- **Few host round trips.** Scores stay on the device until one transfer per architecture.

A branch whose computation raises for a pack of several architectures is computed again one
architecture at a time, so an error is attributed to the architecture that caused it.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor

from lpzero_queue.proxies._stacked import StackedList
from lpzero_queue.proxies.operators import BINARY_OPS, UNARY_OPS
from lpzero_queue.proxies.outcomes import ProxyRejectedError, is_proxy_outcome, is_time_limit

if TYPE_CHECKING:
    from lpzero_queue.proxies.expression import Branch, Expression

__all__ = [
    "DEVICE_GROUP_BYTES",
    "BranchValue",
    "EvalResult",
    "Memo",
    "ProxyInputError",
    "branch_values",
    "evaluate_archs",
    "pair_score",
    "score_results",
]

# Group size on accelerators: one kernel per shape and pack (host page faults, which bound the
# CPU groups to MAX_GROUP_BYTES, do not apply to device memory).
DEVICE_GROUP_BYTES = 1 << 30
# Branches memoised per architecture at most (~2000 distinct canonical branches exist with two
# unary operators; each entry is one float64 per tensor of the input).
MEMO_MAX_BRANCHES = 8192

BranchValue = Tensor | Exception
Memo = MutableMapping["Branch", BranchValue]


class ProxyInputError(ProxyRejectedError):
    """A proxy input the expression needs is missing, empty, or not a list of tensors."""


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


def input_tensors(inputs: Mapping[str, Sequence[Tensor]], name: str) -> Sequence[Tensor]:
    """The tensors of input ``name``, checked (ProxyInputError when missing or malformed)."""
    tensors = inputs.get(name)
    if tensors is None:
        raise ProxyInputError(f"input {name!r} is missing")
    if len(tensors) == 0:
        raise ProxyInputError(f"input {name!r} is an empty list")
    if not all(isinstance(t, Tensor) for t in tensors):
        raise ProxyInputError(f"input {name!r} must be a sequence of torch.Tensor")
    return tensors


def pair_score(e: Expression, left: Tensor, right: Tensor) -> Tensor:
    """The score as a 0-d float64 tensor on the branches' device (no host round trip)."""
    n = min(left.numel(), right.numel())  # pair by position; the longer list is truncated (zip)
    pairs = BINARY_OPS[e.binary].fn(left[:n], right[:n])
    return pairs.mean() if e.reduce == "mean" else pairs.sum()


def _trie(chains: Sequence[tuple[str, ...]]) -> _Node:
    root = _Node()
    for chain in chains:
        node = root
        for name in chain:
            node = node.children.setdefault(name, _Node())
        node.terminal = True
    return root


def _bare(exc: Exception) -> Exception:
    """``exc`` without its traceback and chained exceptions, to be kept as a value.

    A traceback holds its frames and their locals: an error memoised with it would keep the
    packed float64 buffers of the branch that raised it alive for the whole run (a GPT-2 search
    grew past 20 GB that way).
    """
    exc.__traceback__ = None
    exc.__context__ = None
    exc.__cause__ = None
    return exc


def _walk(root: _Node, state: StackedList | Exception) -> dict[tuple[str, ...], Tensor | Exception]:
    """Depth-first over the trie: each operator applied once per node; one path alive at a time."""
    out: dict[tuple[str, ...], Tensor | Exception] = {}
    stack: list[tuple[_Node, tuple[str, ...], StackedList | Exception]] = [(root, (), state)]
    while stack:
        node, chain, value = stack.pop()
        if chain and not isinstance(value, Exception):
            try:  # `value` holds the parent's tensors until here: apply the last operator
                value = value.apply(UNARY_OPS[chain[-1]])
            except Exception as exc:
                value = _bare(exc)
        if node.terminal:
            out[chain] = value if isinstance(value, Exception) else value.means()
        for name, child in node.children.items():
            stack.append((child, (*chain, name), value))
    return out


def _pack_values(
    input_name: str,
    chains: Sequence[tuple[str, ...]],
    pack: Sequence[Mapping[str, Sequence[Tensor]]],
    group_bytes: int | None,
) -> list[dict[tuple[str, ...], BranchValue]]:
    """Every chain of one input on every architecture of a pack."""
    from lpzero_queue.proxies.expression import Branch, reference_branch_means

    out: list[dict[tuple[str, ...], BranchValue]] = [{} for _ in pack]
    lists: list[Sequence[Tensor] | ProxyInputError] = []
    for inputs in pack:
        try:
            lists.append(input_tensors(inputs, input_name))
        except ProxyInputError as exc:
            lists.append(exc.with_traceback(None))
    ok = [i for i, ts in enumerate(lists) if not isinstance(ts, Exception)]
    for i, ts in enumerate(lists):
        if isinstance(ts, Exception):
            out[i] = dict.fromkeys(chains, ts)
    if not ok:
        return out
    packed = StackedList.from_tensors(
        [t for i in ok for t in lists[i]],  # type: ignore[union-attr]
        max_group_bytes=group_bytes,
    )
    if packed is None:  # an empty tensor: the per-tensor loop reports it as published
        for i in ok:
            branches = [Branch(input_name, c) for c in chains]
            got = reference_branch_means(branches, pack[i])
            out[i] = {c: got[b] for c, b in zip(chains, branches, strict=True)}
        return out
    walked = _walk(_trie(chains), packed)
    offsets = [0]
    for i in ok:
        offsets.append(offsets[-1] + len(lists[i]))  # type: ignore[arg-type]
    for j, i in enumerate(ok):
        for chain, value in walked.items():
            if isinstance(value, Exception) and len(ok) > 1:  # whose is it? ask each alone
                (alone,) = _pack_values(input_name, [chain], [pack[i]], group_bytes)
                value = alone[chain]
            elif isinstance(value, Tensor):
                value = value[offsets[j] : offsets[j + 1]]
            out[i][chain] = value
    return out


def _packs(archs: Sequence[Mapping[str, Sequence[Tensor]]], pack_bytes: int) -> list[list[int]]:
    """Consecutive architectures whose inputs hold at most ``pack_bytes`` (one at least)."""
    packs: list[list[int]] = []
    size = 0
    for i, inputs in enumerate(archs):
        nbytes = 8 * sum(t.numel() for ts in inputs.values() for t in ts)  # as float64
        if packs and size + nbytes <= pack_bytes:
            packs[-1].append(i)
            size += nbytes
        else:
            packs.append([i])
            size = nbytes
    return packs


def _device(inputs: Mapping[str, Sequence[Tensor]]) -> torch.device:
    for ts in inputs.values():
        for t in ts:
            return t.device
    return torch.device("cpu")


def branch_values(
    branches: Sequence[Branch],
    archs: Sequence[Mapping[str, Sequence[Tensor]]],
    *,
    memos: Sequence[Memo | None] | None = None,
    pack_bytes: int | None = None,
) -> list[dict[Branch, BranchValue]]:
    """Per-tensor means of each branch on each architecture (an Exception where it raised).

    Args:
        branches: The branches (any chains; computed in canonical form, the same values).
        archs: Each architecture's inputs (input name -> tensors).
        memos: Per architecture, a memo to read and fill (None: no memo).
        pack_bytes: Float64 bytes of inputs packed together; None: one architecture per pack on
            the CPU, ``DEVICE_GROUP_BYTES`` on other devices.

    Returns:
        Per architecture, branch -> ``(n,)`` float64 tensor of per-tensor means, or an Exception.
    """
    from lpzero_queue.proxies.expression import Branch, canonical_chain

    memo_list = list(memos) if memos is not None else [None] * len(archs)
    canon = {b: Branch(b.input, canonical_chain(b.unary)) for b in branches}
    values: list[dict[Branch, BranchValue]] = [{} for _ in archs]
    for i, memo in enumerate(memo_list):
        if memo is not None:
            values[i] = {c: memo[c] for c in set(canon.values()) if c in memo}
    on_cpu = bool(archs) and _device(archs[0]).type == "cpu"
    if pack_bytes is None:
        pack_bytes = 0 if on_cpu else DEVICE_GROUP_BYTES
    group_bytes = None if on_cpu else DEVICE_GROUP_BYTES  # None: _stacked.MAX_GROUP_BYTES
    for pack in _packs(archs, pack_bytes):
        todo = sorted({c for i in pack for c in canon.values() if c not in values[i]}, key=str)
        by_input: dict[str, list[tuple[str, ...]]] = {}
        for c in todo:
            by_input.setdefault(c.input, []).append(c.unary)
        for input_name, chains in by_input.items():
            got = _pack_values(input_name, chains, [archs[i] for i in pack], group_bytes)
            for i, per_chain in zip(pack, got, strict=True):
                for chain, value in per_chain.items():
                    c = Branch(input_name, chain)
                    values[i].setdefault(c, _bare(value) if isinstance(value, Exception) else value)
                    memo = memo_list[i]
                    if (
                        memo is not None
                        and len(memo) < MEMO_MAX_BRANCHES
                        and _memoisable(values[i][c])
                    ):
                        memo[c] = values[i][c]
    return [{b: v[c] for b, c in canon.items()} for v in values]


def _memoisable(value: BranchValue) -> bool:
    """A value or a declared error of the inputs; never a failure a retry may not repeat."""
    return not isinstance(value, Exception) or (
        is_proxy_outcome(value) and not is_time_limit(value)
    )


def score_results(
    exprs: Sequence[Expression], per_branch: Mapping[Branch, BranchValue]
) -> list[EvalResult]:
    """Each expression's result from its branches' values, with one host transfer.

    Returns:
        One result per expression, in order: "ok" with a finite score, "nonfinite" (score None),
        or "error" with the exception text (a declared outcome, ``proxies.outcomes``).

    Raises:
        Exception: a branch failed with an exception that is not a proxy outcome (a bug, out
            of memory, a device error).
    """
    scores: list[Tensor] = []
    errors: dict[int, str] = {}
    for j, e in enumerate(exprs):
        left, right = per_branch[e.left], per_branch[e.right]
        failed = next((v for v in (left, right) if isinstance(v, Exception)), None)
        if failed is not None:  # never raised here: raising would attach this frame to it
            if not is_proxy_outcome(failed):
                raise failed  # a bug or a failing device: the unit is retried, nothing stored
            errors[j] = f"{type(failed).__name__}: {failed}"
            continue
        assert isinstance(left, Tensor) and isinstance(right, Tensor)
        try:
            scores.append(pair_score(e, left, right))
        except Exception as exc:
            if not is_proxy_outcome(exc):
                raise  # a bug or a failing device: the unit is retried, nothing is stored
            errors[j] = f"{type(exc).__name__}: {exc}"
    host = iter(torch.stack(scores).tolist() if scores else [])  # one transfer
    results: list[EvalResult] = []
    for j in range(len(exprs)):
        if j in errors:
            results.append(EvalResult(None, "error", errors[j]))
            continue
        score = float(next(host))
        finite = score - score == 0.0  # False for NaN and +-inf
        results.append(EvalResult(score, "ok") if finite else EvalResult(None, "nonfinite"))
    return results


def evaluate_archs(
    exprs: Sequence[Expression],
    archs: Sequence[Mapping[str, Sequence[Tensor]]],
    *,
    memos: Sequence[Memo | None] | None = None,
    pack_bytes: int | None = None,
) -> list[list[EvalResult]]:
    """Score many architectures with many expressions (see the module docstring).

    Args:
        exprs: The expressions.
        archs: Each architecture's inputs, as for
            :func:`~lpzero_queue.proxies.expression.evaluate`; all on one device.
        memos: Per architecture, a branch memo to read and fill (None: none).
        pack_bytes: See :func:`branch_values`.

    Returns:
        Per architecture, one result per expression, in order: "ok" with a finite score,
        "nonfinite" (score None), or "error" with the exception text (a missing input included).
    """
    values = branch_values(
        [b for e in exprs for b in (e.left, e.right)], archs, memos=memos, pack_bytes=pack_bytes
    )
    return [score_results(exprs, per_branch) for per_branch in values]
