"""LoNAS-style elastic sub-networks of a LLaMA model, scored by a zero-cost proxy.

The elastic space has, per decoder layer, an MLP intermediate width and a LoRA rank. The LoNAS
choices for LLaMA-7B (widths {11008, 9632, 8256, 6880, 5504}, ranks {32, 28}) are
``intermediate x {1, 7/8, 3/4, 5/8, 1/2}`` and ``{r, 7r/8}``; :func:`elastic_space` scales them to
any model (widths rounded to multiples of 8 when the model's width allows).

Scoring (:func:`score_subnets`) builds each sampled sub-network from the pretrained weights, runs
one forward and backward pass on a fixed batch of the shipped training text through
:class:`~lpzero_queue.training.llama_proxy.LlamaTapped`, and evaluates the proxy expression on
the inputs. The adapters' ``B`` matrices start at zero (as in LoRA), so at scoring time a
sub-network's function, and therefore its proxy score, depends on its widths only; the rank
changes the trainable capacity and the active parameter count.
"""

from __future__ import annotations

import copy
import hashlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from lpzero_queue.errors import LpzqError

__all__ = [
    "LONAS_RANK_FRACTIONS",
    "LONAS_WIDTH_FRACTIONS",
    "ElasticSpace",
    "Subnet",
    "elastic_space",
    "proxy_batch",
    "sample_subnets",
    "score_subnets",
]

# LLaMA-7B in LoNAS: 11008 x {1, .875, .75, .625, .5} and 32 x {1, .875}.
LONAS_WIDTH_FRACTIONS: Final = (1.0, 0.875, 0.75, 0.625, 0.5)
LONAS_RANK_FRACTIONS: Final = (1.0, 0.875)


@dataclass(frozen=True)
class ElasticSpace:
    """Per-layer choices of a model."""

    layers: int
    widths: tuple[int, ...]  # largest first
    ranks: tuple[int, ...]  # largest first

    @property
    def size(self) -> int:
        """Number of distinct sub-networks."""
        return (len(self.widths) * len(self.ranks)) ** self.layers


@dataclass(frozen=True)
class Subnet:
    """One sub-network: a width and a rank per layer."""

    widths: tuple[int, ...]
    ranks: tuple[int, ...]

    def to_dict(self) -> dict[str, list[int]]:
        """Plain JSON form."""
        return {"widths": list(self.widths), "ranks": list(self.ranks)}


def elastic_space(config: dict[str, Any], *, rank: int = 8) -> ElasticSpace:
    """The LoNAS choices scaled to a model config.

    Args:
        config: The model's ``config.json`` content (``intermediate_size``, ``num_hidden_layers``).
        rank: The largest adapter rank (LoNAS: 32 on LLaMA-7B).
    """
    full = int(config["intermediate_size"])
    step = 8 if full >= 64 else 1
    widths = tuple(
        dict.fromkeys(max(step, round(full * f / step) * step) for f in LONAS_WIDTH_FRACTIONS)
    )
    ranks = tuple(dict.fromkeys(max(1, round(rank * f)) for f in LONAS_RANK_FRACTIONS))
    return ElasticSpace(int(config["num_hidden_layers"]), widths, ranks)


def largest(space: ElasticSpace) -> Subnet:
    """The super-network: every layer at its largest width and rank."""
    return Subnet((space.widths[0],) * space.layers, (space.ranks[0],) * space.layers)


def sample_subnets(space: ElasticSpace, n: int, rng: np.random.Generator) -> list[Subnet]:
    """``n`` distinct sub-networks drawn uniformly per layer (fewer when the space is smaller)."""
    seen: dict[Subnet, None] = {}
    for _ in range(50 * n):
        if len(seen) >= min(n, space.size):
            break
        widths = tuple(int(w) for w in rng.choice(space.widths, size=space.layers))
        ranks = tuple(int(r) for r in rng.choice(space.ranks, size=space.layers))
        seen.setdefault(Subnet(widths, ranks), None)
    return list(seen)


def proxy_batch(*, seed: int, batch_size: int, seq_len: int) -> Any:
    """A fixed :class:`~lpzero_queue.benchmarks.batches.InputBatch` from the training text."""
    import torch

    from lpzero_queue.benchmarks.batches import TOKENIZERS, InputBatch, batch_content_hash
    from lpzero_queue.training.data import train_batch

    ids = train_batch("gpt2", seed=seed, step=0, batch_size=batch_size, seq_len=seq_len).input_ids
    mask = torch.ones_like(ids)
    name = TOKENIZERS["gpt2"]
    return InputBatch(
        "gpt2", seed, batch_size, seq_len, name, ids, mask, batch_content_hash(name, ids, mask)
    )


def score_subnets(
    model_path: str | Path,
    subnets: Sequence[Subnet],
    expression: str,
    *,
    seed: int,
    batch: Any,
    alpha: float = 16.0,
    linear_scope: str = "mixer",
) -> list[dict[str, Any]]:
    """Proxy score, status and parameter counts of each sub-network (one pass each).

    Returns:
        One dict per sub-network: ``widths``, ``ranks``, ``score`` (None unless ``status`` is
        ``ok``), ``status`` (``ok``, ``nonfinite`` or ``error``), ``error``, ``active_params``,
        ``trainable_params``, ``seconds``.
    """
    from lpzero_queue.proxies.expression import evaluate, parse_expression
    from lpzero_queue.proxies.inputs import extract_inputs
    from lpzero_queue.training.llama import apply_subnet, count_params, load_llama
    from lpzero_queue.training.llama_proxy import LlamaTapped

    expr = parse_expression(expression)
    pretrained = load_llama(model_path)
    rows = []
    for sub in subnets:
        started = time.perf_counter()
        model = copy.deepcopy(pretrained)
        apply_subnet(model, sub.widths, sub.ranks, alpha=alpha, seed=seed)
        counts = count_params(model)
        row: dict[str, Any] = {**sub.to_dict(), "active_params": counts["active"],
                               "trainable_params": counts["trainable"]}  # fmt: skip
        for p in model.parameters():
            p.requires_grad_(True)  # every weight needs a gradient for the proxy pass
        tapped = LlamaTapped(model, linear_scope)
        try:
            inputs = extract_inputs(tapped, batch, objective="lm", seed=seed)
            score = float(evaluate(expr, inputs))
            ok = math.isfinite(score)
            row.update(score=score if ok else None, status="ok" if ok else "nonfinite", error=None)
        except Exception as exc:  # a failing proxy is a result, recorded with its status
            row.update(score=None, status="error", error=f"{type(exc).__name__}: {exc}")
        finally:
            tapped.remove()
        row["seconds"] = time.perf_counter() - started
        rows.append(row)
    return rows


def model_fingerprint(model_path: str | Path) -> str:
    """sha256 (first 16 hex) of the model directory's config and weight files."""
    h = hashlib.sha256()
    for f in sorted(Path(model_path).iterdir()):
        if f.suffix in (".json", ".safetensors", ".bin") and f.is_file():
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def check_expression(text: str) -> None:
    """Raise LpzqError when a subnet proxy is a built-in baseline (they need a benchmark)."""
    from lpzero_queue.proxies.spec import NAMED_EXPRESSIONS

    if "(" not in text and text not in NAMED_EXPRESSIONS:
        raise LpzqError(
            f"'{text}' is a built-in baseline; subnet search scores expressions: give an "
            "expression or a named one (lpzero-gpt2, lpzero-flexibert)"
        )
