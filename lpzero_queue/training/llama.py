"""LLaMA-architecture models: a tiny pretraining config, loading from disk, elastic sub-networks.

A sub-network (LoNAS, Munoz et al. 2024) keeps, in every decoder layer, the first ``width``
channels of the MLP intermediate dimension (``gate_proj``/``up_proj`` rows, ``down_proj``
columns are sliced away, so the parameters are really gone) and attaches low-rank adapters of
rank ``rank`` to the layer's attention and MLP projections. Fine-tuning trains only the adapters,
as LoNAS does; the frozen base weights are the pretrained ones.

Models use the shipped GPT-2 byte-level BPE ids (50257 tokens), so a model a user points to must
have ``vocab_size >= 50257``; attention is ``eager`` so its probabilities can be read as proxy
inputs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import torch
from torch import Tensor, nn

from lpzero_queue.errors import LpzqError

__all__ = [
    "GPT2_VOCAB",
    "LORA_TARGETS",
    "LoRALinear",
    "apply_subnet",
    "build_llama",
    "count_params",
    "load_llama",
    "tiny_llama_config",
]

GPT2_VOCAB: Final = 50257  # the shipped byte-level BPE
# Projections that get an adapter in every layer (LoNAS adapts the attention and MLP projections).
LORA_TARGETS: Final = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def tiny_llama_config(
    *, hidden: int = 64, layers: int = 2, heads: int = 4, intermediate: int = 256
) -> dict[str, Any]:
    """A small ``LlamaConfig`` (as a dict) for the shipped GPT-2 tokenizer.

    Args:
        hidden: ``hidden_size``.
        layers: ``num_hidden_layers``.
        heads: attention heads (and key/value heads); must divide ``hidden``.
        intermediate: MLP ``intermediate_size`` (the largest elastic width).
    """
    return {
        "vocab_size": GPT2_VOCAB,
        "hidden_size": hidden,
        "intermediate_size": intermediate,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": heads,
        "max_position_embeddings": 256,
        "tie_word_embeddings": True,  # halves the parameters of a tiny model
        "rms_norm_eps": 1e-6,
        "initializer_range": 0.02,
    }


def build_llama(config: dict[str, Any], *, seed: int) -> nn.Module:
    """A randomly initialised ``LlamaForCausalLM`` (eager attention); the init draws from ``seed``.

    Raises:
        LpzqError: The config is not a valid ``LlamaConfig``.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    try:
        cfg = LlamaConfig(**config)
    except (TypeError, ValueError) as exc:
        raise LpzqError(f"invalid LLaMA config: {exc}") from None
    cfg._attn_implementation = "eager"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(cfg)
    return model


def load_llama(path: str | Path) -> Any:
    """Load a LLaMA-architecture causal LM from a local directory (``save_pretrained`` layout).

    Raises:
        LpzqError: One line: the path does not exist, is not a model directory, is not a LLaMA
            model, or its vocabulary cannot hold the shipped tokenizer's ids.
    """
    p = Path(path)
    if not p.exists():
        raise LpzqError(
            f"model path '{p}' does not exist; give a LLaMA model directory (written by "
            "lpzq subnet pretrain or save_pretrained)"
        )
    config_file = p / "config.json"
    if not p.is_dir() or not config_file.is_file():
        raise LpzqError(
            f"model path '{p}' is not a model directory (no config.json); "
            "give a LLaMA directory written by save_pretrained"
        )
    try:
        raw = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LpzqError(f"model path '{p}': config.json is unreadable: {exc}") from None
    model_type = raw.get("model_type") if isinstance(raw, dict) else None
    if model_type != "llama":
        raise LpzqError(
            f"model path '{p}' holds a {model_type or 'unknown'!s} model, not a LLaMA-architecture "
            "model (config.json model_type must be 'llama')"
        )
    if int(raw.get("vocab_size", 0)) < GPT2_VOCAB:
        raise LpzqError(
            f"model path '{p}': vocab_size {raw.get('vocab_size')} cannot hold the shipped GPT-2 "
            f"tokenizer's ids (needs >= {GPT2_VOCAB})"
        )
    from transformers import LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one line per model is noise in a search of hundreds
    try:
        model = LlamaForCausalLM.from_pretrained(
            str(p), attn_implementation="eager", local_files_only=True, dtype=torch.float32
        )
    except (OSError, ValueError, RuntimeError) as exc:
        reason = " ".join(str(exc).split())[:300]
        raise LpzqError(f"model path '{p}': cannot load the weights: {reason}") from None
    return model


class LoRALinear(nn.Module):
    """``base(x) + (alpha / r) * B(A(x))`` with ``A`` random and ``B`` zero (LoRA, Hu et al.).

    Args:
        base: The (frozen) projection.
        rank: Adapter rank ``r`` (0: no adapter).
        alpha: Scaling numerator.
        generator: Draws ``A`` (Kaiming-uniform, as in LoRA).
    """

    def __init__(self, base: nn.Linear, rank: int, alpha: float, generator: torch.Generator):
        super().__init__()
        self.base = base
        self.rank = rank
        self.scaling = alpha / rank if rank else 0.0
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features))  # (r, in)
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank))  # (out, r)
        bound = 1.0 / math.sqrt(base.in_features)
        with torch.no_grad():
            self.lora_a.uniform_(-bound, bound, generator=generator)

    @property
    def weight(self) -> Tensor:
        """The base weight (so code reading ``.weight`` of a projection keeps working)."""
        return self.base.weight

    def forward(self, x: Tensor) -> Tensor:
        out = self.base(x)
        if self.rank:
            out = out + (x @ self.lora_a.T @ self.lora_b.T) * self.scaling
        return out


def _slice_linear(lin: nn.Linear, *, rows: int | None = None, cols: int | None = None) -> nn.Linear:
    """A new Linear holding the first ``rows`` outputs / ``cols`` inputs of ``lin``."""
    w = lin.weight.detach()
    w = w[:rows] if rows is not None else w
    w = w[:, :cols] if cols is not None else w
    out = nn.Linear(w.shape[1], w.shape[0], bias=lin.bias is not None, device=w.device)
    with torch.no_grad():
        out.weight.copy_(w)
        if lin.bias is not None:
            out.bias.copy_(lin.bias.detach()[:rows] if rows is not None else lin.bias.detach())
    return out


def apply_subnet(
    model: Any,
    widths: Sequence[int],
    ranks: Sequence[int],
    *,
    alpha: float = 16.0,
    seed: int = 0,
) -> Any:
    """Turn ``model`` (in place) into the sub-network with per-layer MLP widths and LoRA ranks.

    Args:
        model: A ``LlamaForCausalLM``.
        widths: Intermediate width per layer, each ``<=`` the model's ``intermediate_size``.
        ranks: Adapter rank per layer.
        alpha: LoRA scaling numerator (scaling ``alpha / rank``).
        seed: Draws the adapters' ``A`` matrices.

    Returns:
        The same model, with only the adapters trainable.

    Raises:
        ValueError: Wrong number of layers or a width/rank out of range.
    """
    layers = list(model.model.layers)
    if len(widths) != len(layers) or len(ranks) != len(layers):
        raise ValueError(
            f"need one width and one rank per layer ({len(layers)}), got {len(widths)} and "
            f"{len(ranks)}"
        )
    full = int(model.config.intermediate_size)
    gen = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.requires_grad_(False)
    for i, (layer, width, rank) in enumerate(zip(layers, widths, ranks, strict=True)):
        if not 0 < width <= full:
            raise ValueError(f"layer {i}: width {width} is not in 1..{full}")
        if rank < 0:
            raise ValueError(f"layer {i}: rank {rank} is negative")
        mlp = layer.mlp
        mlp.gate_proj = _slice_linear(mlp.gate_proj, rows=width)
        mlp.up_proj = _slice_linear(mlp.up_proj, rows=width)
        mlp.down_proj = _slice_linear(mlp.down_proj, cols=width)
        mlp.intermediate_size = width
        for block, names in ((layer.self_attn, LORA_TARGETS[:4]), (mlp, LORA_TARGETS[4:])):
            for name in names:
                base = getattr(block, name)
                base.requires_grad_(False)
                setattr(block, name, LoRALinear(base, rank, alpha, gen))
    return model


def count_params(model: Any) -> dict[str, int]:
    """Parameters of the module as it is now (shared tensors counted once).

    Returns:
        ``active`` (every parameter the forward uses), ``trainable`` (``requires_grad``),
        ``nonembedding`` (``active`` minus the token embedding table, tied head included there).
    """
    unique = {id(p): p for p in model.parameters()}.values()
    embed = model.get_input_embeddings().weight
    active = sum(p.numel() for p in unique)
    return {
        "active": active,
        "trainable": sum(p.numel() for p in unique if p.requires_grad),
        "nonembedding": active - embed.numel(),
    }
