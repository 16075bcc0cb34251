"""Token mixers of the FlexiBERT search space (SDP, WMA, DFT, DCT, DSC).

Each mixer maps ``(B, T, H)`` to ``(B, T, H)``, owns a ``head`` and a ``softmax`` :class:`Tap`,
and lists its Linear layers through ``linears()`` (the ``weight``/``grad`` proxy inputs). The
module structure (which Linears exist, their sizes, the DSC head split) follows the PyTorch
FlexiBERT model used by training-free-nas and LPZero; the parameter counts of the ``lpzero``
builder pin it down exactly (tests/data/lpzero_builder_params.json).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lpzero_queue.benchmarks.dropout import HostDrawnDropout
from lpzero_queue.benchmarks.taps import Tap


def split_heads(x: Tensor, heads: int) -> Tensor:
    """Reshape ``(B, T, h*d)`` to ``(B, h, T, d)``."""
    B, T, C = x.shape
    return x.view(B, T, heads, C // heads).transpose(1, 2)


def merge_heads(x: Tensor) -> Tensor:
    """Reshape ``(B, h, T, d)`` to ``(B, T, h*d)``."""
    B, h, T, d = x.shape
    return x.transpose(1, 2).reshape(B, T, h * d)


def attend(
    q: Tensor, k: Tensor, v: Tensor, keep: Tensor | None, tap: Tap, dropout: nn.Dropout
) -> Tensor:
    """Scaled dot-product attention with explicit probabilities (so they can be tapped).

    Args:
        q: Queries ``(B, h, T, d)``.
        k: Keys ``(B, h, T, d)``.
        v: Values ``(B, h, T, d)``.
        keep: Boolean key mask broadcastable to ``(B, h, T, T)``; False positions get zero
            probability. None for no mask.
        tap: The ``softmax`` tap that sees the probabilities before dropout.
        dropout: Attention-probability dropout.

    Returns:
        The context ``(B, h, T, d)``.
    """
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.size(-1))  # (B, h, T, T)
    if keep is not None:
        scores = scores.masked_fill(~keep, torch.finfo(scores.dtype).min)
    probs = tap(scores.softmax(dim=-1))  # (B, h, T, T)
    return dropout(probs) @ v  # (B, h, T, d)


class SelfAttention(nn.Module):
    """``SA`` mixer: SDP, or WMA when ``weighted`` (query times an extra bias-free Linear).

    Args:
        hidden: Model width H.
        heads: Number of heads h (H must be divisible by h).
        weighted: Build the WMA variant.
        attn_dropout: Dropout on attention probabilities.
    """

    def __init__(self, hidden: int, heads: int, *, weighted: bool, attn_dropout: float) -> None:
        super().__init__()
        self.heads = heads
        # Registration order == execution order (taps and linears are listed in module order).
        self.query = nn.Linear(hidden, hidden)
        self.head_tap = Tap("head")
        self.weight = nn.Linear(hidden, hidden, bias=False) if weighted else None
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.softmax_tap = Tap("softmax")
        self.dropout = HostDrawnDropout(attn_dropout)

    def linears(self) -> list[nn.Linear]:
        """The mixer's Linear layers in module order."""
        return [m for m in (self.query, self.weight, self.key, self.value) if m is not None]

    def forward(self, x: Tensor, keep: Tensor | None = None) -> Tensor:
        """Mix tokens; ``x`` is ``(B, T, H)``, ``keep`` a boolean key mask or None."""
        q = self.head_tap(self.query(x))  # (B, T, H)
        if self.weight is not None:
            q = self.weight(q)  # (B, T, H)
        ctx = attend(
            split_heads(q, self.heads),
            split_heads(self.key(x), self.heads),
            split_heads(self.value(x), self.heads),
            keep,
            self.softmax_tap,
            self.dropout,
        )  # (B, h, T, d)
        return merge_heads(ctx)  # (B, T, H)


def dct_matrix(n: int, *, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Unnormalised DCT-II matrix ``C[k, j] = 2 cos(pi k (2j + 1) / (2n))`` (scipy norm=None)."""
    k = torch.arange(n, dtype=torch.float64, device=device)[:, None]
    j = torch.arange(n, dtype=torch.float64, device=device)[None, :]
    return (2.0 * torch.cos(math.pi * k * (2.0 * j + 1.0) / (2.0 * n))).to(dtype)


class LinearTransform(nn.Module):
    """``LT`` mixer: input Linear, split into heads, 2-D DFT (real part) or DCT-II per head.

    The transform runs over the last two axes (sequence, head features). The ``softmax`` tap sees
    a softmax of the transform output over its last axis; it does not feed the model output.

    Args:
        hidden: Model width H.
        heads: Number of heads h.
        transform: ``"DFT"`` or ``"DCT"``.
    """

    def __init__(self, hidden: int, heads: int, *, transform: str) -> None:
        super().__init__()
        if transform not in ("DFT", "DCT"):
            raise ValueError(f"unknown linear transform {transform!r}; valid: DFT, DCT")
        self.heads = heads
        self.transform = transform
        self.input = nn.Linear(hidden, hidden)
        self.head_tap = Tap("head")
        self.softmax_tap = Tap("softmax")

    def linears(self) -> list[nn.Linear]:
        """The mixer's Linear layers in module order."""
        return [self.input]

    def forward(self, x: Tensor, keep: Tensor | None = None) -> Tensor:
        """Mix tokens; ``x`` is ``(B, T, H)``. Linear transforms take no padding mask."""
        u = split_heads(self.head_tap(self.input(x)), self.heads)  # (B, h, T, d)
        if self.transform == "DFT":
            y = torch.fft.fft2(u).real  # (B, h, T, d)
        else:
            c_t = dct_matrix(u.size(-2), dtype=u.dtype, device=u.device)  # (T, T)
            c_d = dct_matrix(u.size(-1), dtype=u.dtype, device=u.device)  # (d, d)
            y = c_t @ u @ c_d.T  # (B, h, T, d)
        self.softmax_tap(y.softmax(dim=-1))
        return merge_heads(y)  # (B, T, H)


class SeparableConv1d(nn.Module):
    """Depthwise (kernel k, no bias) then pointwise (no bias) convolution, plus one bias vector.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel: Depthwise kernel width (odd).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv1d(
            in_channels, in_channels, kernel, groups=in_channels, padding=kernel // 2, bias=False
        )
        self.pointwise = nn.Conv1d(in_channels, out_channels, 1, bias=False)
        self.bias = nn.Parameter(torch.empty(out_channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        """``x`` is ``(B, C_in, T)``; returns ``(B, C_out, T)``."""
        return self.pointwise(self.depthwise(x)) + self.bias


class DynamicSpanConv(nn.Module):
    """``DSC`` mixer: ConvBERT-style mixed attention.

    ``n = max(1, h // 2)`` self-attention heads and ``n`` dynamic span-convolution heads, all of
    size ``d = H // h``, concatenated back to ``H`` (so each half is ``A = n * d = H / 2`` wide).
    The convolution half predicts a softmax kernel of width ``k`` per position and head from
    ``query * separable_conv(x)`` and applies it to an unfolded ``Linear(H -> A)`` projection.

    Args:
        hidden: Model width H.
        heads: Record's number of heads h (2 or 4 in the benchmark).
        kernel: Convolution kernel width k (odd).
        attn_dropout: Dropout on attention probabilities.
    """

    def __init__(self, hidden: int, heads: int, *, kernel: int, attn_dropout: float) -> None:
        super().__init__()
        self.kernel = kernel
        self.n_heads = max(1, heads // 2)
        self.head_size = hidden // heads
        width = self.n_heads * self.head_size  # A
        if 2 * width != hidden:
            raise ValueError(f"DSC needs an even number of heads dividing H, got heads={heads}")
        self.query = nn.Linear(hidden, width)
        self.head_tap = Tap("head")
        self.key = nn.Linear(hidden, width)
        self.value = nn.Linear(hidden, width)
        self.key_conv = SeparableConv1d(hidden, width, kernel)
        self.conv_kernel = nn.Linear(width, self.n_heads * kernel)
        self.conv_out = nn.Linear(hidden, width)
        self.softmax_tap = Tap("softmax")
        self.dropout = HostDrawnDropout(attn_dropout)

    def linears(self) -> list[nn.Linear]:
        """The mixer's Linear layers in module order (the separable conv is not a Linear)."""
        return [self.query, self.key, self.value, self.conv_kernel, self.conv_out]

    def forward(self, x: Tensor, keep: Tensor | None = None) -> Tensor:
        """Mix tokens; ``x`` is ``(B, T, H)``; ``keep`` masks the attention half only."""
        B, T, _ = x.shape
        n, d, k = self.n_heads, self.head_size, self.kernel
        q = self.head_tap(self.query(x))  # (B, T, A)
        key = self.key(x)  # (B, T, A)
        value = self.value(x)  # (B, T, A)

        # Dynamic convolution half.
        key_conv = self.key_conv(x.transpose(1, 2)).transpose(1, 2)  # (B, T, A)
        kern = self.conv_kernel(key_conv * q)  # (B, T, n*k)
        kern = kern.reshape(B, T, n, 1, k).softmax(dim=-1)  # (B, T, n, 1, k)
        span = self.conv_out(x)  # (B, T, A)
        pad = (k - 1) // 2
        span = F.pad(span, (0, 0, pad, pad)).unfold(1, k, 1)  # (B, T, A, k)
        span = span.reshape(B, T, n, d, k)
        conv = (span * kern).sum(dim=-1)  # (B, T, n, d)

        # Self-attention half.
        ctx = attend(
            split_heads(q, n),
            split_heads(key, n),
            split_heads(value, n),
            keep,
            self.softmax_tap,
            self.dropout,
        )  # (B, n, T, d)
        mixed = torch.cat([ctx.transpose(1, 2), conv], dim=2)  # (B, T, 2n, d)
        return mixed.reshape(B, T, 2 * n * d)  # (B, T, H)
