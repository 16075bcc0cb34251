"""Training and validation token streams from the shipped English text.

The split is fixed: :func:`lpzero_queue.benchmarks.batches.text_split` puts every 10th paragraph of
``data/text/english.txt`` in validation (``VALID_FRACTION``). Each part is tokenised once per
process and tokenizer (``gpt2`` BPE for GPT-2 and LLaMA models, BERT WordPiece for FlexiBERT) into
one int64 array.

* A training batch is a pure function of ``(seed, step)``: ``batch_size`` windows whose starts are
  drawn from ``SeedSequence([seed, step])``, so a resumed job reads exactly the batches an
  uninterrupted one would have read.
* Validation is the same for every model of a tokenizer: the first ``n_batches * batch_size``
  non-overlapping windows of the validation stream (fewer when the stream is shorter). FlexiBERT
  windows are ``[CLS] pieces [SEP]``; the MLM masking of validation batch ``i`` is seeded
  with ``i``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = [
    "DATA_DESCRIPTION",
    "VALID_FRACTION",
    "TokenBatch",
    "token_stream",
    "train_batch",
    "valid_batches",
]

VALID_FRACTION: Final = 0.1  # every 10th paragraph of english.txt is validation text
DATA_DESCRIPTION: Final = (
    "shipped english.txt, paragraph split (every 10th paragraph validation, text_split(0.1))"
)
_CLS, _SEP = 101, 102  # BERT uncased specials (see benchmarks/batches.py)


@dataclass(frozen=True)
class TokenBatch:
    """Token ids ``(B, T)`` int64 of one training or validation batch."""

    input_ids: torch.Tensor
    tokenizer: str  # "gpt2" | "flexibert": which shipped tokenizer made the ids


@functools.cache
def token_stream(tokenizer: str, part: str) -> np.ndarray:
    """The train or validation part of the English text as one read-only token array.

    Args:
        tokenizer: ``"gpt2"`` (byte-level BPE) or ``"flexibert"`` (BERT WordPiece).
        part: ``"train"`` or ``"valid"``.

    Raises:
        ValueError: Unknown tokenizer or part.
    """
    from lpzero_queue.benchmarks.batches import load_tokenizer, text_split

    if part not in ("train", "valid"):
        raise ValueError(f"unknown part {part!r}; valid: train, valid")
    train, valid = text_split(VALID_FRACTION)
    tok = load_tokenizer(tokenizer)
    text = train if part == "train" else valid
    ids = np.asarray(tok(text, add_special_tokens=False)["input_ids"], dtype=np.int64)
    ids.flags.writeable = False
    return ids


def _rows(tokenizer: str, stream: np.ndarray, starts: np.ndarray, seq_len: int) -> torch.Tensor:
    import torch

    body = seq_len - 2 if tokenizer == "flexibert" else seq_len
    rows = np.stack([stream[s : s + body] for s in starts])  # (B, body)
    if tokenizer == "flexibert":
        cls = np.full((len(starts), 1), _CLS, dtype=np.int64)
        sep = np.full((len(starts), 1), _SEP, dtype=np.int64)
        rows = np.concatenate([cls, rows, sep], axis=1)  # (B, T)
    return torch.from_numpy(np.ascontiguousarray(rows))


def train_batch(
    tokenizer: str, *, seed: int, step: int, batch_size: int, seq_len: int
) -> TokenBatch:
    """Training batch ``step`` of a job seeded ``seed`` (windows anywhere in the train stream)."""
    stream = token_stream(tokenizer, "train")
    body = seq_len - 2 if tokenizer == "flexibert" else seq_len
    rng = np.random.default_rng(np.random.SeedSequence([seed, step]))
    starts = rng.integers(0, stream.size - body, size=batch_size)
    return TokenBatch(_rows(tokenizer, stream, starts, seq_len), tokenizer)


def valid_batches(
    tokenizer: str, *, n_batches: int, batch_size: int, seq_len: int
) -> list[TokenBatch]:
    """The fixed validation batches: consecutive non-overlapping windows from the start.

    Raises:
        ValueError: The validation text holds not even one batch of that shape.
    """
    stream = token_stream(tokenizer, "valid")
    body = seq_len - 2 if tokenizer == "flexibert" else seq_len
    windows = min(n_batches * batch_size, stream.size // body)
    if windows < batch_size:
        raise ValueError(
            f"the validation text ({stream.size} tokens) holds fewer than {batch_size} windows "
            f"of {body}; use a smaller batch size or sequence length"
        )
    starts = np.arange(windows - windows % batch_size, dtype=np.int64) * body
    return [
        TokenBatch(_rows(tokenizer, stream, starts[i : i + batch_size], seq_len), tokenizer)
        for i in range(0, starts.size, batch_size)
    ]
