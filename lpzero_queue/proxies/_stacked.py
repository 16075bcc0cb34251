"""Stacked evaluation: a branch's tensors grouped by shape, one operator call per group.

The published evaluation applies every unary operator to every tensor of an input list in turn:
one torch call per tensor per operator, and a float64 copy of the input for every operator applied
to it directly. Here an input list is cast to float64 once and its tensors of equal shape are
stacked into one ``(G, *shape)`` tensor; an operator then acts on each group at once through its
*stacked* form, which applies the operator to every slice ``x[g]`` along the leading axis
independently, so the result is the per-tensor one up to floating-point rounding:

- elementwise operators are their own stacked form (every entry is computed alone);
- scalar reductions reduce each row of ``x.reshape(G, -1)``, giving shape ``(G,)``;
- ``normalize`` / ``min_max_normalize`` take their statistics per row;
- ``softmax`` / ``logsoftmax`` act over the slice's first axis, i.e. ``dim=1`` of the stack
  (a 0-d slice is taken as shape ``(1,)``, as the per-tensor operators do).

An operator without a stacked form (a registered plug-in) runs per tensor, and its results are
regrouped. After a scalar reduction every group holds 0-d slices, so the groups merge into one
``(N,)`` tensor and later operators cost one call whatever the number of tensors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from lpzero_queue.proxies.operators import UnaryOp

__all__ = [
    "StackedList",
    "stacked_frobenius_norm",
    "stacked_l1_norm",
    "stacked_mean",
    "stacked_min_max_normalize",
    "stacked_normalize",
    "stacked_softmax",
    "stacked_to_mean_scalar",
    "stacked_to_std_scalar",
]


# Stacked groups hold at most this many float64 bytes (a larger tensor is a group alone). Bigger
# buffers tend to get fresh pages on every allocation (glibc maps big blocks directly and unmaps
# them on free), and those page faults cost more than the operators: GPT-2 evaluation took 2.4x
# longer with unbounded groups (MALLOC_MMAP_THRESHOLD_=1GiB removed the gap). Of 2, 4, 8 and
# 16 MiB, 8 was fastest on FlexiBERT and GPT-2 inputs.
MAX_GROUP_BYTES = 8 << 20


def _rows(x: Tensor) -> Tensor:
    """``(G, *shape)`` as float64 ``(G, prod(shape))`` (a 0-d slice is one entry)."""
    x = x.detach().to(torch.float64)
    return x.reshape(x.shape[0], -1)


def stacked_mean(x: Tensor) -> Tensor:
    """``mean`` of each slice: sum / numel."""
    r = _rows(x)
    return r.sum(dim=1) / r.shape[1]


def stacked_l1_norm(x: Tensor) -> Tensor:
    """``l1_norm`` of each slice: sum |x| / numel."""
    r = _rows(x)
    return r.abs().sum(dim=1) / r.shape[1]


def stacked_to_mean_scalar(x: Tensor) -> Tensor:
    """``to_mean_scalar`` of each slice."""
    return _rows(x).mean(dim=1)


def _centered_std(r: Tensor) -> tuple[Tensor, Tensor]:
    """``(r - row mean, row population std)``, the std as ``||r - mean||_2 / sqrt(n)``.

    ``Tensor.std(dim=1)`` takes several times longer on CPU (Welford's update per row); this
    two-pass form is as accurate, so only rounding differs.
    """
    centered = r - r.mean(dim=1, keepdim=True)
    norm = torch.linalg.vector_norm(centered, dim=1, keepdim=True)
    return centered, norm / math.sqrt(r.shape[1])


def stacked_to_std_scalar(x: Tensor) -> Tensor:
    """``to_std_scalar`` (population std) of each slice."""
    return _centered_std(_rows(x))[1][:, 0]


def stacked_frobenius_norm(x: Tensor) -> Tensor:
    """``frobenius_norm`` of each slice.

    The plain norm when it lies in ``(1e-100, 1e100)``: then no square overflows and the squares
    that underflow weigh less than 1e-100 relative, so it equals the rescaled norm of the
    per-tensor operator up to rounding (and is exactly |x| for a 0-d slice). Other rows (0, huge,
    tiny, inf or NaN norms) take the rescaled form.
    """
    r = _rows(x)
    plain = torch.linalg.vector_norm(r, dim=1)  # (G,)
    in_range = (plain > 1e-100) & (plain < 1e100)  # False for NaN
    if r.device.type == "cpu" and bool(in_range.all()):  # elsewhere: no host round trip
        return plain
    scale = r.abs().amax(dim=1)  # (G,) max |x|
    usable = torch.isfinite(scale) & (scale > 0)
    safe = torch.where(usable, scale, 1.0)
    norm = torch.linalg.vector_norm(r / safe[:, None], dim=1)
    return torch.where(in_range, plain, torch.where(usable, safe * norm, norm))


def stacked_normalize(x: Tensor, eps: float) -> Tensor:
    """``normalize`` of each slice: (x - mean) / (population std + eps)."""
    centered, std = _centered_std(_rows(x))
    return centered.div_(std + eps).reshape(x.shape)


def stacked_min_max_normalize(x: Tensor, eps: float) -> Tensor:
    """``min_max_normalize`` of each slice: (x - min) / (max - min + eps)."""
    r = _rows(x)
    lo, hi = r.amin(dim=1, keepdim=True), r.amax(dim=1, keepdim=True)
    return (r - lo).div_(hi - lo + eps).reshape(x.shape)


def stacked_softmax(x: Tensor, log: bool) -> Tensor:
    """``softmax`` (or ``logsoftmax``) of each slice over its first axis."""
    x = x.detach().to(torch.float64)
    if x.dim() == 1:  # 0-d slices: each is taken as shape (1,)
        return stacked_softmax(x[:, None], log).reshape(x.shape)
    return torch.log_softmax(x, dim=1) if log else torch.softmax(x, dim=1)


def _index(positions: list[int], like: Tensor) -> Tensor:
    return torch.tensor(positions, dtype=torch.long, device=like.device)


class StackedList:
    """A list of tensors held as float64 groups of equal shape, stacked on a leading axis.

    A group holds at most ``MAX_GROUP_BYTES`` (one tensor at least).

    Attributes:
        n: Number of tensors in the list.
        groups: ``(positions, stacked)`` pairs: ``stacked[j]`` is tensor ``positions[j]``
            (``positions`` a 1-d int64 tensor on the device of ``stacked``).
    """

    def __init__(self, n: int, groups: list[tuple[Tensor, Tensor]]) -> None:
        self.n = n
        self.groups = groups

    @classmethod
    def from_tensors(
        cls, tensors: Sequence[Tensor], max_group_bytes: int | None = None
    ) -> StackedList | None:
        """Cast and stack a list (one float64 copy of it); None if a tensor is empty.

        Empty tensors are left to the per-tensor loop, which reports them exactly as published.
        ``max_group_bytes`` bounds a group (None: ``MAX_GROUP_BYTES``, which suits the CPU).
        """
        limit = MAX_GROUP_BYTES if max_group_bytes is None else max_group_bytes
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, t in enumerate(tensors):
            if t.numel() == 0:
                return None
            by_shape.setdefault(tuple(t.shape), []).append(i)
        groups: list[tuple[Tensor, Tensor]] = []
        for shape, same in by_shape.items():
            per_tensor = 8 * math.prod(shape)  # float64 bytes
            size = max(1, limit // per_tensor)
            for start in range(0, len(same), size):
                positions = same[start : start + size]
                first = tensors[positions[0]]
                stacked = torch.empty(
                    (len(positions), *shape), dtype=torch.float64, device=first.device
                )
                for j, i in enumerate(positions):
                    stacked[j].copy_(tensors[i].detach())  # the cast happens in the copy
                groups.append((_index(positions, stacked), stacked))
        return cls(len(tensors), groups)

    @classmethod
    def _regroup(cls, n: int, items: list[tuple[int, Tensor]]) -> StackedList:
        by_shape: dict[tuple[int, ...], list[tuple[int, Tensor]]] = {}
        for i, t in items:
            by_shape.setdefault(tuple(t.shape), []).append((i, t))
        groups: list[tuple[Tensor, Tensor]] = []
        for pairs in by_shape.values():
            stacked = torch.stack([t for _, t in pairs])
            groups.append((_index([i for i, _ in pairs], stacked), stacked))
        return cls(n, groups)

    def apply(self, op: UnaryOp) -> StackedList:
        """The list after ``op`` acted on each of its tensors (never modifies this one)."""
        stacked_fn = op.stacked
        if stacked_fn is None:  # no stacked form: the operator runs per tensor
            items = [(i, op.fn(s[j])) for pos, s in self.groups for j, i in enumerate(pos.tolist())]
            return self._regroup(self.n, items)
        groups = [(pos, stacked_fn(s)) for pos, s in self.groups]
        for (_, s), (_, y) in zip(self.groups, groups, strict=True):
            want = s.shape[:1] if op.output == "scalar" else s.shape
            if y.shape != want:
                raise ValueError(
                    f"stacked form of {op.name!r} returned shape {tuple(y.shape)} "
                    f"for input shape {tuple(s.shape)}"
                )
        if op.output == "scalar" and len(groups) > 1:  # all slices are 0-d now: one group
            positions = torch.cat([pos for pos, _ in groups])
            groups = [(positions, torch.cat([y for _, y in groups]))]
        return StackedList(self.n, groups)

    def means(self) -> Tensor:
        """The float64 mean of every tensor, in list order, shape ``(n,)``."""
        first = self.groups[0][1]
        out = torch.empty(self.n, dtype=torch.float64, device=first.device)
        for positions, s in self.groups:
            out[positions] = s.reshape(s.shape[0], -1).mean(dim=1)
        return out
