"""Sampling architectures for benchmarks created by training.

The choices are the shipped benchmarks' own ranges with every width multiplied by
``width_scale`` (rounded to a multiple of 8, at least 16) and the depth capped at ``max_layers``:

* GPT-2 (LiteTransformerSearch): ``n_layer`` 2..16, ``d_model`` {64, 128, 256, 512}, ``d_embed``
  {128, 256, 512}, ``div_val`` {1, 2, 4}, per-layer ``n_head`` {2, 4, 8} and ``d_inner`` 512..2048;
  adaptive input/softmax over the WikiText-103 cutoffs, ``tgt_len`` 192, dropout 0.1.
* FlexiBERT: ``hidden_size`` {128, 256}, 2 or 4 layers, each SA (SDP|WMA), LT (DFT|DCT) or
  DSC (kernel 5|9), heads {2, 4}, ``feed_forward_dimension`` {512, 1024},
  ``num_feed_forward`` {1, 3}.

Sampling draws from ``numpy.random.default_rng(seed)``; the same arguments give the same list.
Duplicates are redrawn, so every sampled architecture is distinct.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from lpzero_queue.errors import LpzqError

__all__ = ["SpaceScale", "sample_architectures"]

_GPT2_D_MODEL: Final = (64, 128, 256, 512)
_GPT2_D_EMBED: Final = (128, 256, 512)
_GPT2_INNER: Final = (512, 2048)
_GPT2_HEADS: Final = (2, 4, 8)
_FLEXI_HIDDEN: Final = (128, 256)
_FLEXI_FF: Final = (512, 1024)


@dataclass(frozen=True)
class SpaceScale:
    """How far the shipped ranges are scaled down."""

    width_scale: float = 0.25  # every width (d_model, d_embed, d_inner, hidden, FFN) times this
    max_layers: int = 4  # depth cap (GPT-2 draws 2..max_layers; FlexiBERT 2 or 4 within it)

    def __post_init__(self) -> None:
        if not 0 < self.width_scale <= 1:
            raise LpzqError(f"--width-scale {self.width_scale} is not in (0, 1]")
        if self.max_layers < 2:
            raise LpzqError(f"--max-layers {self.max_layers} is below 2 (the smallest depth)")

    def width(self, w: int) -> int:
        """``w`` scaled, a multiple of 8 and at least 16."""
        return max(16, round(w * self.width_scale / 8) * 8)


def _gpt2(rng: np.random.Generator, scale: SpaceScale) -> dict[str, Any]:
    n_layer = int(rng.integers(2, min(16, scale.max_layers) + 1))
    d_model = scale.width(int(rng.choice(_GPT2_D_MODEL)))
    lo, hi = scale.width(_GPT2_INNER[0]), scale.width(_GPT2_INNER[1])
    heads = [int(h) for h in rng.choice(_GPT2_HEADS, size=n_layer)]
    return {
        "n_token": 50264,
        "tgt_len": 192,
        "d_model": d_model,
        "d_embed": scale.width(int(rng.choice(_GPT2_D_EMBED))),
        "n_layer": n_layer,
        "n_head": [h if d_model % h == 0 else 2 for h in heads],
        "d_inner": [int(x) for x in rng.integers(lo, hi + 1, size=n_layer)],
        "div_val": int(rng.choice((1, 2, 4))),
        "cutoffs": [19997, 39997, 199997, 50264],
        "adaptive": True,
        "tie_weight": True,
        "tie_projs": [False, True, True, True],
        "dropout": 0.1,
        "dropatt": 0.0,
        "weight_init_std": 0.02,
        "proj_init_std": 0.01,
    }


def _flexibert(rng: np.random.Generator, scale: SpaceScale) -> dict[str, Any]:
    depths = [d for d in (2, 4) if d <= scale.max_layers]
    layers = []
    for _ in range(int(rng.choice(depths))):
        op = str(rng.choice(("SA", "LT", "DSC")))
        param: Any = {
            "SA": lambda: str(rng.choice(("SDP", "WMA"))),
            "LT": lambda: str(rng.choice(("DFT", "DCT"))),
            "DSC": lambda: int(rng.choice((5, 9))),
        }[op]()
        layers.append(
            {
                "operation_type": op,
                "operation_parameter": param,
                "num_operation_heads": int(rng.choice((2, 4))),
                "feed_forward_dimension": scale.width(int(rng.choice(_FLEXI_FF))),
                "num_feed_forward": int(rng.choice((1, 3))),
            }
        )
    return {"hidden_size": scale.width(int(rng.choice(_FLEXI_HIDDEN))), "encoder_layers": layers}


def sample_architectures(
    space: str, n: int, *, seed: int, scale: SpaceScale | None = None
) -> list[dict[str, Any]]:
    """``n`` distinct architecture configs of ``space`` drawn with ``seed``.

    Raises:
        LpzqError: Unknown space, ``n`` < 4, or the scaled space has fewer than ``n`` members
            reachable in a bounded number of draws.
    """
    from lpzero_queue.benchmarks.records import config_hash

    draw = {"gpt2": _gpt2, "flexibert": _flexibert}.get(space)
    if draw is None:
        raise LpzqError(f"unknown space '{space}'; valid: gpt2, flexibert")
    if n < 4:
        raise LpzqError(f"--archs {n}: a benchmark needs at least 4 architectures")
    rng = np.random.default_rng(seed)
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for _ in range(50 * n):
        config = draw(rng, scale or SpaceScale())
        digest = config_hash(space, config)
        if digest not in seen:
            seen.add(digest)
            out.append(config)
            if len(out) == n:
                return out
    raise LpzqError(f"the scaled {space} space gave only {len(out)} distinct architectures")
