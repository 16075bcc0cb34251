"""Bounds on what one benchmark file and one architecture may cost, checked before anything runs.

A benchmark file comes from a user (``lpzq bench import``); a record of 20,000 layers, a hidden
size of 10^9 or JSON nested 200,000 deep must be refused with one line, not take minutes and
gigabytes or crash the parser. The bounds leave generous headroom over the shipped spaces
(FlexiBERT: hidden 128-256, 2-4 layers, feed-forward up to 1024 x 3, 4 heads, kernels up to 9,
15 M parameters; GPT-2: d_model 64-512, 2-16 layers, d_inner up to 2048, 8 heads, 50,264 tokens,
59 M parameters), and the text limits are the database's column widths, so SQLite and
PostgreSQL accept exactly the same files.
"""

from __future__ import annotations

from typing import Any, Final

from lpzero_queue.errors import LpzqError, clip

__all__ = [
    "MAX_DEPTH",
    "MAX_DESCRIPTION_CHARS",
    "MAX_FILE_BYTES",
    "MAX_HEADS",
    "MAX_HIDDEN",
    "MAX_ID_CHARS",
    "MAX_INNER",
    "MAX_KERNEL",
    "MAX_LAYERS",
    "MAX_LIST",
    "MAX_NAME_CHARS",
    "MAX_PARAMS",
    "MAX_RECORDS",
    "MAX_SEQ",
    "MAX_STACK",
    "MAX_TOKENS",
    "BoundError",
    "check_cost",
    "check_depth",
    "check_name",
]

# Architecture size (field bounds; each at least 4x the largest shipped value).
MAX_LAYERS: Final = 64  # encoder_layers / n_layer (shipped: 16)
MAX_HIDDEN: Final = 4096  # hidden_size / d_model / d_embed (shipped: 512)
MAX_INNER: Final = 16384  # feed_forward_dimension / d_inner (shipped: 2048)
MAX_STACK: Final = 16  # num_feed_forward (shipped: 3)
MAX_HEADS: Final = 64  # num_operation_heads / n_head (shipped: 8)
MAX_KERNEL: Final = 63  # DSC operation_parameter (shipped: 9)
MAX_TOKENS: Final = 262_144  # n_token (shipped: 50,264)
MAX_SEQ: Final = 8192  # tgt_len (shipped: 192)
MAX_LIST: Final = 16  # cutoffs, tie_projs (shipped: 4)
# Parameters of one architecture as its builders build it (shipped: 59 M); scoring holds weights,
# gradients and activations of one architecture at a time.
MAX_PARAMS: Final = 1_000_000_000

# A file.
MAX_FILE_BYTES: Final = 64 * 2**20
MAX_RECORDS: Final = 100_000
MAX_DEPTH: Final = 32  # JSON nesting (a shipped record is 4 deep)
MAX_ID_CHARS: Final = 128  # architectures.key
MAX_NAME_CHARS: Final = 64  # benchmarks.name, metric and ground-truth names
MAX_DESCRIPTION_CHARS: Final = 10_000


class BoundError(LpzqError, ValueError):
    """Something is larger than a bound (the message names it, the value and the bound)."""


def check_name(value: str, what: str, limit: int = MAX_NAME_CHARS) -> None:
    """A name stored in a fixed-width column: 1 to ``limit`` characters, no control characters.

    Raises:
        BoundError: naming ``what``, its length and the limit.
    """
    valid = f"valid: 1 to {limit} printable characters"
    if not value.strip():
        raise BoundError(f"{what} is empty ({valid})")
    if len(value) > limit:
        raise BoundError(f"{what} {clip(value)} is too long ({valid})")
    if not value.isprintable():
        raise BoundError(f"{what} {clip(value)} holds control characters ({valid})")


def check_depth(data: Any, what: str, limit: int = MAX_DEPTH) -> None:
    """Refuse JSON-shaped data nested deeper than ``limit`` (iteratively: no recursion).

    Raises:
        BoundError: naming ``what`` and the limit.
    """
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            raise BoundError(f"{what}: nested deeper than {limit} levels")
        stack.extend((child, depth + 1) for child in children)


def check_cost(space: str, config: dict[str, Any]) -> None:
    """Refuse an architecture whose builders make more than ``MAX_PARAMS`` parameters.

    The count comes from a meta-device skeleton (no memory for weights), so a valid config
    within the field bounds costs well under a second here.

    Raises:
        BoundError: naming the builder, the count and the bound.
    """
    from lpzero_queue.benchmarks.builders import BUILDERS, structural_summary

    for builder in BUILDERS[space]:
        params = structural_summary(space, config, builder)["params_total"]
        if params > MAX_PARAMS:
            raise BoundError(
                f"{params:,} parameters ({builder} builder) is above the bound {MAX_PARAMS:,}"
            )
