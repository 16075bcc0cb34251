"""Tokenizers and the fixed input batches that proxies are computed on.

Both tokenizers load offline from the files shipped in ``data/tokenizers`` (nothing is downloaded).
The shipped English text (``data/text/english.txt``, four sources one after another) is tokenised
once per process and space (about 243k tokens each, ~1-1.5 s on one CPU core) and cached; a batch is
then ``batch_size`` windows of token ids drawn from across the whole file, which costs milliseconds.

Window placement (``_window_starts``): the valid start range is cut into ``batch_size`` equal strata
and one start is drawn uniformly inside each with ``numpy.random.default_rng(seed)``, so the windows
cover the whole file in order (with 16 or more windows every source is represented). FlexiBERT
starts are moved back to the start of a word (never on a ``##`` continuation piece).

Every batch carries a ``content_hash``: sha256 over the tokenizer name, the shape and the raw
little-endian int64 bytes of ``input_ids`` and ``attention_mask`` (see :func:`batch_content_hash`).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from dataclasses import dataclass
from importlib.resources import as_file, files
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # torch is imported where tensors are made, not when this module loads
    import torch

__all__ = [
    "MAX_SEQ_LEN",
    "MIN_SEQ_LEN",
    "TOKENIZERS",
    "InputBatch",
    "batch_content_hash",
    "english_text",
    "lm_labels",
    "load_tokenizer",
    "make_batch",
    "mlm_mask",
    "text_split",
]

logger = logging.getLogger(__name__)

TOKENIZERS = {"flexibert": "bert-base-uncased-wordpiece", "gpt2": "gpt2-bpe"}
_VOCAB_SIZES = {"flexibert": 30522, "gpt2": 50257}
MIN_SEQ_LEN = 8
# FlexiBERT: 512 position embeddings. GPT-2: a generous cap; a model's own positional table
# (tgt_len, 192 for the shipped benchmark) is the real limit and is checked by whoever runs it.
MAX_SEQ_LEN = {"flexibert": 512, "gpt2": 1024}
MAX_BATCH_SIZE = 1024

# BERT uncased special ids (SOURCE.md of data/tokenizers): [PAD] 0, [UNK] 100, [CLS] 101, [SEP] 102,
# [MASK] 103. Ids 1..998 are [unusedN]/specials; 999 ('!') .. 30521 are real word pieces.
_PAD, _UNK, _CLS, _SEP, _MASK = 0, 100, 101, 102, 103
_FIRST_REAL_PIECE = 999


@dataclass(frozen=True)
class InputBatch:
    """One fixed, hashed batch of real-text token ids (do not modify the tensors in place)."""

    space: str  # "flexibert" | "gpt2"
    seed: int  # numpy default_rng seed that placed the windows
    batch_size: int
    seq_len: int
    tokenizer: str  # TOKENIZERS[space]
    input_ids: torch.Tensor  # (B, T) int64
    attention_mask: torch.Tensor  # (B, T) int64, 1 = real token, 0 = padding
    content_hash: str  # batch_content_hash(tokenizer, input_ids, attention_mask)

    def __eq__(self, other: object) -> bool:
        # Tensors make the generated field-wise __eq__ ambiguous; the content hash decides.
        if not isinstance(other, InputBatch):
            return NotImplemented
        return (self.space, self.seed, self.content_hash) == (
            other.space,
            other.seed,
            other.content_hash,
        )

    def __hash__(self) -> int:
        return hash((self.space, self.seed, self.content_hash))


def _data_path(*parts: str) -> Any:
    return files("lpzero_queue.benchmarks").joinpath("data", *parts)


def _check_space(space: str) -> None:
    if space not in TOKENIZERS:
        raise ValueError(f"unknown space {space!r}; valid spaces: {', '.join(TOKENIZERS)}")


@functools.cache
def load_tokenizer(space: str) -> Any:
    """Load the space's tokenizer from the shipped files (cached per process; no network).

    Args:
        space: ``"flexibert"`` (BERT uncased WordPiece, 30522 tokens) or ``"gpt2"`` (byte-level
            BPE, 50257 tokens).

    Returns:
        A transformers ``BertTokenizer`` or ``GPT2Tokenizer``.

    Raises:
        ValueError: Unknown space.
        RuntimeError: The loaded vocabulary has the wrong size (e.g. a transformers version that
            ignores the ``vocab=``/``merges=`` keywords).
    """
    _check_space(space)
    from transformers import BertTokenizer, GPT2Tokenizer  # heavy import, only when needed

    if space == "flexibert":
        with as_file(_data_path("tokenizers", "bert-base-uncased-vocab.txt")) as vocab:
            tok: Any = BertTokenizer(vocab=str(vocab), do_lower_case=True)
    else:
        with (
            as_file(_data_path("tokenizers", "gpt2-encoder.json")) as vocab,
            as_file(_data_path("tokenizers", "gpt2-vocab.bpe")) as merges,
        ):
            tok = GPT2Tokenizer(vocab=str(vocab), merges=str(merges))
    if len(tok) != _VOCAB_SIZES[space]:
        raise RuntimeError(
            f"{TOKENIZERS[space]} loaded with {len(tok)} tokens, expected {_VOCAB_SIZES[space]}: "
            "this transformers version does not read the shipped files with vocab=/merges="
        )
    return tok


@functools.cache
def english_text() -> str:
    """The shipped English text (``data/text/english.txt``), cached per process."""
    return str(_data_path("text", "english.txt").read_text(encoding="utf-8"))


@functools.cache
def _token_ids(space: str) -> np.ndarray:
    """The whole English text as one read-only int64 token array, without special tokens."""
    tok = load_tokenizer(space)
    started = time.perf_counter()
    ids = np.asarray(tok(english_text(), add_special_tokens=False)["input_ids"], dtype=np.int64)
    ids.flags.writeable = False
    logger.info(
        "tokenised english.txt for %s: %d tokens in %.2f s",
        space,
        ids.size,
        time.perf_counter() - started,
    )
    return ids


@functools.cache
def _continuation_pieces() -> np.ndarray:
    """Boolean table over the BERT vocabulary: True for ``##`` word-continuation pieces."""
    tok = load_tokenizer("flexibert")
    pieces = tok.convert_ids_to_tokens(list(range(_VOCAB_SIZES["flexibert"])))
    table = np.array([p.startswith("##") for p in pieces], dtype=bool)
    table.flags.writeable = False
    return table


def _window_starts(space: str, seed: int, batch_size: int, window: int) -> np.ndarray:
    """Stratified window starts over the token array (see the module docstring)."""
    ids = _token_ids(space)
    last = max(ids.size - window, 0)  # largest start that still fits a full window
    rng = np.random.default_rng(seed)
    edges = np.linspace(0, last + 1, batch_size + 1)
    starts = np.floor(edges[:-1] + rng.random(batch_size) * np.diff(edges)).astype(np.int64)
    starts = np.minimum(starts, last)
    if space == "flexibert":
        continuation = _continuation_pieces()
        for i, s in enumerate(starts):
            while s > 0 and continuation[ids[s]]:
                s -= 1
            starts[i] = s
    return starts


def _check_args(space: str, seed: int, batch_size: int, seq_len: int) -> None:
    _check_space(space)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if type(batch_size) is not int or not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise ValueError(f"batch_size must be in [1, {MAX_BATCH_SIZE}], got {batch_size!r}")
    hi = MAX_SEQ_LEN[space]
    if type(seq_len) is not int or not MIN_SEQ_LEN <= seq_len <= hi:
        raise ValueError(f"seq_len for {space} must be in [{MIN_SEQ_LEN}, {hi}], got {seq_len!r}")


def batch_content_hash(
    tokenizer: str, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> str:
    """Stable identity of a batch's content.

    sha256 over ``tokenizer`` (UTF-8), a NUL byte, the shape as ``"BxT"``, a NUL byte, then the
    C-order little-endian int64 bytes of ``input_ids`` followed by those of ``attention_mask``.

    Args:
        tokenizer: Tokenizer name (a value of :data:`TOKENIZERS`).
        input_ids: (B, T) token ids.
        attention_mask: (B, T) mask.

    Returns:
        64 lowercase hex characters.
    """
    b, t = input_ids.shape
    h = hashlib.sha256()
    h.update(tokenizer.encode("utf-8") + b"\0" + f"{b}x{t}".encode() + b"\0")
    for tensor in (input_ids, attention_mask):
        h.update(np.ascontiguousarray(tensor.cpu().numpy(), dtype="<i8").tobytes())
    return h.hexdigest()


def make_batch(space: str, *, seed: int, batch_size: int, seq_len: int) -> InputBatch:
    """Draw one fixed batch of real English text for a space.

    FlexiBERT rows are ``[CLS] <seq_len - 2 word pieces> [SEP]`` (padded with ``[PAD]`` = 0 and
    mask 0 only if the text were shorter than a window); GPT-2 rows are ``seq_len`` contiguous BPE
    tokens (mask all ones). The same arguments give the same ids and ``content_hash`` in any
    process.

    Args:
        space: ``"flexibert"`` or ``"gpt2"``.
        seed: Non-negative seed of the window placement.
        batch_size: Rows, 1..1024.
        seq_len: Tokens per row, 8..512 (FlexiBERT) or 8..1024 (GPT-2).

    Returns:
        The batch with its content hash.

    Raises:
        ValueError: An argument is out of range (the message names the valid range).
    """
    import torch

    _check_args(space, seed, batch_size, seq_len)
    ids = _token_ids(space)
    body = seq_len - 2 if space == "flexibert" else seq_len
    starts = _window_starts(space, seed, batch_size, body)
    input_ids = np.full((batch_size, seq_len), _PAD, dtype=np.int64)  # (B, T)
    mask = np.zeros((batch_size, seq_len), dtype=np.int64)  # (B, T)
    for row, s in enumerate(starts):
        piece = ids[s : s + body]
        tokens = np.concatenate(([_CLS], piece, [_SEP])) if space == "flexibert" else piece
        input_ids[row, : tokens.size] = tokens
        mask[row, : tokens.size] = 1
    ids_t, mask_t = torch.from_numpy(input_ids), torch.from_numpy(mask)
    name = TOKENIZERS[space]
    return InputBatch(
        space=space,
        seed=seed,
        batch_size=batch_size,
        seq_len=seq_len,
        tokenizer=name,
        input_ids=ids_t,
        attention_mask=mask_t,
        content_hash=batch_content_hash(name, ids_t, mask_t),
    )


def mlm_mask(
    batch: InputBatch, *, seed: int, probability: float = 0.15
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masked-LM corruption of a FlexiBERT batch (the batch itself is not modified).

    Each real, non-special token is selected with ``probability``; a selected token becomes
    ``[MASK]`` with probability 0.8, a random real word piece (ids 999..30521, never a special or
    ``[unused]`` token) with 0.1, and stays unchanged with 0.1. ``[PAD]``, ``[UNK]``, ``[CLS]``,
    ``[SEP]``, ``[MASK]`` and padded positions are never selected.

    Args:
        batch: A FlexiBERT batch.
        seed: Seed of the ``torch.Generator`` that draws the corruption.
        probability: Selection probability in (0, 1].

    Returns:
        ``(input_ids, labels)``, both (B, T) int64; labels hold the original id at selected
        positions and -100 elsewhere.

    Raises:
        ValueError: Not a FlexiBERT batch, or ``probability`` out of range.
    """
    if batch.space != "flexibert":
        raise ValueError(f"mlm_mask needs a flexibert batch, got {batch.space!r}")
    if not 0 < probability <= 1:
        raise ValueError(f"probability must be in (0, 1], got {probability!r}")
    import torch

    gen = torch.Generator().manual_seed(seed)
    ids = batch.input_ids
    special = torch.isin(ids, torch.tensor([_PAD, _UNK, _CLS, _SEP, _MASK]))
    eligible = (batch.attention_mask == 1) & ~special  # (B, T)
    selected = (torch.rand(ids.shape, generator=gen) < probability) & eligible
    roll = torch.rand(ids.shape, generator=gen)  # one draw decides mask / random / keep
    random_ids = torch.randint(
        _FIRST_REAL_PIECE, _VOCAB_SIZES["flexibert"], ids.shape, generator=gen
    )
    corrupted = ids.clone()
    corrupted[selected & (roll < 0.8)] = _MASK
    to_random = selected & (roll >= 0.8) & (roll < 0.9)
    corrupted[to_random] = random_ids[to_random]
    labels = torch.where(selected, ids, torch.full_like(ids, -100))
    return corrupted, labels


def lm_labels(batch: InputBatch) -> torch.Tensor:
    """Causal-LM labels of a GPT-2 batch: the input ids (the model shifts), -100 at padding.

    Args:
        batch: A GPT-2 batch.

    Returns:
        (B, T) int64 labels, a new tensor.

    Raises:
        ValueError: Not a GPT-2 batch.
    """
    if batch.space != "gpt2":
        raise ValueError(f"lm_labels needs a gpt2 batch, got {batch.space!r}")
    import torch

    return torch.where(
        batch.attention_mask == 1, batch.input_ids, torch.full_like(batch.input_ids, -100)
    )


def text_split(fraction_validation: float = 0.1) -> tuple[str, str]:
    """Fixed train/validation split of the English text by paragraph.

    Paragraphs are separated by a blank line. Paragraph ``i`` (0-based) goes to validation when
    ``floor((i + 1) * f) > floor(i * f)``: evenly spread, exactly ``floor(n * f)`` paragraphs, and
    for ``f = 0.1`` every 10th paragraph (9, 19, 29, ...). Both parts are joined by blank lines.

    Args:
        fraction_validation: Fraction of paragraphs for validation, in (0, 1).

    Returns:
        ``(train_text, valid_text)``.

    Raises:
        ValueError: ``fraction_validation`` out of range.
    """
    f = fraction_validation
    if not 0 < f < 1:
        raise ValueError(f"fraction_validation must be in (0, 1), got {f!r}")
    paragraphs = [p for p in english_text().split("\n\n") if p.strip()]
    train: list[str] = []
    valid: list[str] = []
    for i, paragraph in enumerate(paragraphs):
        is_valid = int((i + 1) * f + 1e-9) > int(i * f + 1e-9)
        (valid if is_valid else train).append(paragraph.strip("\n"))
    return "\n\n".join(train), "\n\n".join(valid)
