"""Marker modules that expose proxy inputs to forward hooks.

A :class:`Tap` is an identity module placed at a point of a benchmark model whose tensor is a proxy
input (docs/method.md section 2). Extraction code registers forward hooks (and, for gradients,
tensor hooks on the output) on the taps of one kind instead of on model-specific submodules, so the
proxy code never needs to know how a benchmark model is written.

Every builder registers its taps in execution order, so ``model.modules()`` order (and therefore
:func:`taps` order) is the order in which the tapped tensors are produced.
"""

from __future__ import annotations

from typing import Final

from torch import nn

TAP_KINDS: Final[tuple[str, ...]] = ("act", "head", "softmax", "embedding")
"""Valid tap kinds: feed-forward activations, first projection of each token mixer, attention
probabilities (or the softmax of a linear-transform output), and the embedding output."""


class Tap(nn.Identity):
    """Identity module marking a proxy input.

    Args:
        kind: One of :data:`TAP_KINDS`.

    Raises:
        ValueError: If ``kind`` is not a known tap kind.
    """

    def __init__(self, kind: str) -> None:
        super().__init__()
        if kind not in TAP_KINDS:
            raise ValueError(f"unknown tap kind {kind!r}; valid kinds: {', '.join(TAP_KINDS)}")
        self.kind = kind

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}"


def taps(model: nn.Module, kind: str) -> list[Tap]:
    """Return the taps of one kind in module order (which is execution order).

    Args:
        model: Any module built by this package.
        kind: One of :data:`TAP_KINDS`.

    Returns:
        The :class:`Tap` instances of that kind, in ``model.modules()`` order.

    Raises:
        ValueError: If ``kind`` is not a known tap kind.
    """
    if kind not in TAP_KINDS:
        raise ValueError(f"unknown tap kind {kind!r}; valid kinds: {', '.join(TAP_KINDS)}")
    return [m for m in model.modules() if isinstance(m, Tap) and m.kind == kind]
