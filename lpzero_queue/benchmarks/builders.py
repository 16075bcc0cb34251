"""One entry point for building any benchmark architecture by (space, builder) name."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any, Final

from torch import nn

from lpzero_queue.benchmarks.flexibert import (
    FLEXIBERT_BUILDERS,
    MAX_POSITIONS,
    FlexiBertModel,
    build_flexibert,
    flexibert_skeleton,
)
from lpzero_queue.benchmarks.gpt2 import build_gpt2, gpt2_skeleton, parse_gpt2_config

BUILDERS: Final[dict[str, tuple[str, ...]]] = {
    "flexibert": FLEXIBERT_BUILDERS,  # first entry is the default
    "gpt2": ("gpt2",),
}


def resolve_builder(space: str, builder: str | None = None) -> str:
    """Return the builder name to use, checking space and builder.

    Args:
        space: ``"flexibert"`` or ``"gpt2"``.
        builder: A name from ``BUILDERS[space]``, or None for the space's default.

    Returns:
        The resolved builder name.

    Raises:
        ValueError: On an unknown space or builder (the message lists the valid ones).
    """
    if space not in BUILDERS:
        raise ValueError(f"unknown benchmark space {space!r}; valid: {', '.join(BUILDERS)}")
    valid = BUILDERS[space]
    if builder is None:
        return valid[0]
    if builder not in valid:
        raise ValueError(f"unknown builder {builder!r} for {space}; valid: {', '.join(valid)}")
    return builder


def build_model(
    space: str, config: Mapping[str, Any], *, builder: str | None = None, seed: int
) -> nn.Module:
    """Build and initialise one architecture (CPU, eval mode).

    Args:
        space: ``"flexibert"`` or ``"gpt2"``.
        config: The benchmark record (FlexiBERT) or its ``config`` (GPT-2; the record works too).
        builder: ``"faithful"`` (default) or ``"lpzero"`` for FlexiBERT; ``"gpt2"`` or None for
            GPT-2.
        seed: Seed of the generator that draws every initial weight.

    Returns:
        A :class:`~lpzero_queue.benchmarks.flexibert.FlexiBertModel` or
        :class:`~lpzero_queue.benchmarks.gpt2.Gpt2Model`.

    Raises:
        ValueError: On an unknown space or builder, or an invalid config.
    """
    name = resolve_builder(space, builder)
    if space == "flexibert":
        return build_flexibert(config, builder=name, seed=seed)
    return build_gpt2(config, seed=seed)


def longest_sequence(space: str, config: Mapping[str, Any]) -> int:
    """The longest input sequence an architecture accepts: its table of learned positions.

    FlexiBERT models have 512 positions; a GPT-2 model has ``tgt_len`` (the context it was
    trained with), which a user's import may set below the proxy batch's default length.

    Raises:
        ValueError: On an unknown space or an invalid GPT-2 config.
    """
    resolve_builder(space)
    if space == "flexibert":
        return MAX_POSITIONS
    return parse_gpt2_config(config).tgt_len


def structural_summary(
    space: str, config: Mapping[str, Any], builder: str | None = None
) -> dict[str, int]:
    """Size of an architecture as the given builder builds it (read from a meta-device module).

    For FlexiBERT, ``params_nonembedding`` excludes the whole embedding block (tables, their
    LayerNorm and the 128 -> H projection); the MLM head is never counted. For GPT-2 the numbers
    are :meth:`~lpzero_queue.benchmarks.gpt2.Gpt2Model.param_counts` ``total``/``nonembedding``.

    Returns:
        ``{"n_layers", "hidden_size", "params_total", "params_nonembedding"}``.

    Raises:
        ValueError: On an unknown space or builder, or an invalid config.
    """
    name = resolve_builder(space, builder)
    # Summaries are pure functions of the config; loading and trivial baselines ask repeatedly.
    key = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return dict(_summary(space, key, name))


@functools.lru_cache(maxsize=4096)
def _summary(space: str, config_json: str, name: str) -> tuple[tuple[str, int], ...]:
    config = json.loads(config_json)
    if space == "flexibert":
        model: FlexiBertModel = flexibert_skeleton(config, name)
        total = _count_unique(model)
        return (
            ("n_layers", len(model.layers)),
            ("hidden_size", model.spec.hidden),
            ("params_total", total),
            ("params_nonembedding", total - _count_unique(model.embeddings)),
        )
    gpt2 = gpt2_skeleton(config)
    counts = gpt2.param_counts()
    return (
        ("n_layers", gpt2.spec.n_layer),
        ("hidden_size", gpt2.spec.d_model),
        ("params_total", counts["total"]),
        ("params_nonembedding", counts["nonembedding"]),
    )


def _count_unique(module: nn.Module) -> int:
    return sum(p.numel() for p in {id(p): p for p in module.parameters()}.values())
