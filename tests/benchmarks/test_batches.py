"""Offline tokenizers, fixed real-text input batches and their content hashes."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pytest
import torch

from lpzero_queue.benchmarks import batches
from lpzero_queue.benchmarks.batches import (
    TOKENIZERS,
    InputBatch,
    batch_content_hash,
    english_text,
    lm_labels,
    load_tokenizer,
    make_batch,
    mlm_mask,
    text_split,
)

SPACES = ("flexibert", "gpt2")
CLS, SEP, PAD, MASK, UNK = 101, 102, 0, 103, 100


# ---------------------------------------------------------------- tokenizers


def test_tokenizer_vocab_sizes_and_names() -> None:
    assert TOKENIZERS == {"flexibert": "bert-base-uncased-wordpiece", "gpt2": "gpt2-bpe"}
    assert len(load_tokenizer("flexibert")) == 30522
    assert len(load_tokenizer("gpt2")) == 50257
    assert load_tokenizer("gpt2") is load_tokenizer("gpt2")  # cached per process


def test_known_encodings() -> None:
    gpt2 = load_tokenizer("gpt2")
    assert gpt2.encode("Hello world") == [15496, 995]
    assert gpt2.encode("That's my beautiful and sweet string") == [
        *(2504, 338, 616, 4950, 290, 6029, 4731)
    ]
    assert gpt2.eos_token_id == 50256
    bert = load_tokenizer("flexibert")
    assert bert.encode("Hello, World!") == [CLS, 7592, 1010, 2088, 999, SEP]  # lower-cased
    assert (bert.cls_token_id, bert.sep_token_id, bert.pad_token_id) == (CLS, SEP, PAD)
    assert (bert.mask_token_id, bert.unk_token_id) == (MASK, UNK)
    assert bert.convert_ids_to_tokens(1996) == "the"


def test_unknown_space() -> None:
    with pytest.raises(ValueError, match="valid spaces: flexibert, gpt2"):
        load_tokenizer("t5")


# ---------------------------------------------------------------- batches


def test_flexibert_batch_layout() -> None:
    batch = make_batch("flexibert", seed=0, batch_size=8, seq_len=128)
    assert (batch.space, batch.seed, batch.batch_size, batch.seq_len) == ("flexibert", 0, 8, 128)
    assert batch.tokenizer == "bert-base-uncased-wordpiece"
    assert batch.input_ids.shape == batch.attention_mask.shape == (8, 128)
    assert batch.input_ids.dtype == batch.attention_mask.dtype == torch.int64
    assert (batch.input_ids[:, 0] == CLS).all() and (batch.input_ids[:, -1] == SEP).all()
    body = batch.input_ids[:, 1:-1]
    assert not torch.isin(body, torch.tensor([CLS, SEP, PAD, MASK])).any()
    assert (batch.attention_mask == 1).all()
    pieces = load_tokenizer("flexibert").convert_ids_to_tokens(batch.input_ids[:, 1].tolist())
    assert not any(p.startswith("##") for p in pieces)  # windows start on a word


def test_gpt2_batch_layout() -> None:
    batch = make_batch("gpt2", seed=3, batch_size=4, seq_len=192)
    assert batch.tokenizer == "gpt2-bpe"
    assert batch.input_ids.shape == (4, 192) and batch.input_ids.dtype == torch.int64
    assert (batch.attention_mask == 1).all()
    assert int(batch.input_ids.max()) < 50257
    text = load_tokenizer("gpt2").decode(batch.input_ids[0, 10:40].tolist())
    assert text in english_text()  # contiguous real text


@pytest.mark.parametrize("space", SPACES)
def test_rows_are_windows_of_the_token_stream(space: str) -> None:
    seed, size, seq_len = 11, 6, 64
    batch = make_batch(space, seed=seed, batch_size=size, seq_len=seq_len)
    ids = batches._token_ids(space)
    body = seq_len - 2 if space == "flexibert" else seq_len
    starts = batches._window_starts(space, seed, size, body)
    for row, start in zip(batch.input_ids.numpy(), starts, strict=True):
        got = row[1:-1] if space == "flexibert" else row
        assert np.array_equal(got, ids[start : start + body])


@functools.cache
def _source_of_tokens(space: str) -> np.ndarray:
    """1..4: the source (data/text/SOURCE.md order) each token of the cached stream starts in."""
    text = english_text()
    lines = text.split("\n")
    firsts = {1: "", 1301: "ALICE'S ADVENTURES", 3073: "0: Numeric zero", 5319: "Assignment"}
    boundaries = []
    for line, start in firsts.items():
        assert lines[line - 1].startswith(start)
        boundaries.append(len("\n".join(lines[: line - 1])) + (line > 1))
    encoding = load_tokenizer(space)(text, add_special_tokens=False, return_offsets_mapping=True)
    offsets = np.array([start for start, _ in encoding["offset_mapping"]])
    assert offsets.size == batches._token_ids(space).size
    return np.searchsorted(np.array(boundaries), offsets, side="right")


@pytest.mark.parametrize("space", SPACES)
@pytest.mark.parametrize("seed", [0, 1, 2, 12345])
def test_windows_come_from_all_four_sources(space: str, seed: int) -> None:
    body = 62 if space == "flexibert" else 64
    starts = batches._window_starts(space, seed, 16, body)
    assert np.all(np.diff(starts) > 0)  # stratified: in file order, no repeats
    assert set(_source_of_tokens(space)[starts].tolist()) == {1, 2, 3, 4}
    n_tokens = batches._token_ids(space).size
    assert starts[0] < n_tokens / 16 and starts[-1] > n_tokens * 15 / 16 - body


def test_batch_is_deterministic_in_process() -> None:
    for space in SPACES:
        a = make_batch(space, seed=5, batch_size=4, seq_len=32)
        b = make_batch(space, seed=5, batch_size=4, seq_len=32)
        assert torch.equal(a.input_ids, b.input_ids) and a.content_hash == b.content_hash
        assert a == b and hash(a) == hash(b)


def test_batch_is_deterministic_across_processes() -> None:
    args = [("flexibert", 7, 4, 64), ("gpt2", 7, 4, 64)]
    code = (
        "import json, sys\n"
        "from lpzero_queue.benchmarks.batches import make_batch\n"
        "out = []\n"
        f"for space, seed, b, t in {args!r}:\n"
        "    batch = make_batch(space, seed=seed, batch_size=b, seq_len=t)\n"
        "    out.append([batch.content_hash, batch.input_ids.tolist()])\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    theirs = json.loads(done.stdout.strip().splitlines()[-1])
    for (space, seed, b, t), (their_hash, their_ids) in zip(args, theirs, strict=True):
        mine = make_batch(space, seed=seed, batch_size=b, seq_len=t)
        assert mine.content_hash == their_hash
        assert mine.input_ids.tolist() == their_ids


@pytest.mark.parametrize("space", SPACES)
def test_hash_changes_with_seed_and_shape(space: str) -> None:
    base = make_batch(space, seed=0, batch_size=4, seq_len=32)
    others = [
        make_batch(space, seed=1, batch_size=4, seq_len=32),
        make_batch(space, seed=0, batch_size=5, seq_len=32),
        make_batch(space, seed=0, batch_size=4, seq_len=33),
    ]
    hashes = {base.content_hash, *(o.content_hash for o in others)}
    assert len(hashes) == 4
    assert all(len(h) == 64 for h in hashes)
    assert base.content_hash == batch_content_hash(
        base.tokenizer, base.input_ids, base.attention_mask
    )
    other_name = "x" + base.tokenizer
    assert batch_content_hash(other_name, base.input_ids, base.attention_mask) != base.content_hash
    flat = base.input_ids.reshape(2, -1)  # same bytes, other shape
    assert batch_content_hash(base.tokenizer, flat, base.attention_mask.reshape(2, -1)) != (
        base.content_hash
    )


def test_content_hash_layout_is_documented() -> None:
    import hashlib

    ids = torch.tensor([[1, 2, 3]], dtype=torch.int64)
    mask = torch.ones_like(ids)
    expected = hashlib.sha256(
        b"gpt2-bpe\x001x3\x00"
        + np.array([1, 2, 3], dtype="<i8").tobytes()
        + np.array([1, 1, 1], dtype="<i8").tobytes()
    ).hexdigest()
    assert batch_content_hash("gpt2-bpe", ids, mask) == expected


def test_batches_are_cheap_once_tokenised() -> None:
    make_batch("gpt2", seed=0, batch_size=1, seq_len=8)
    make_batch("flexibert", seed=0, batch_size=1, seq_len=8)
    started = time.perf_counter()
    make_batch("flexibert", seed=9, batch_size=128, seq_len=512)  # the published shapes
    make_batch("gpt2", seed=9, batch_size=16, seq_len=192)
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize(
    ("space", "kwargs", "message"),
    [
        ("flexibert", {"seq_len": 7}, r"seq_len for flexibert must be in \[8, 512\]"),
        ("flexibert", {"seq_len": 513}, r"seq_len for flexibert must be in \[8, 512\]"),
        ("gpt2", {"seq_len": 1025}, r"seq_len for gpt2 must be in \[8, 1024\]"),
        ("gpt2", {"seq_len": 7}, r"\[8, 1024\]"),
        ("gpt2", {"batch_size": 0}, r"batch_size must be in \[1, 1024\]"),
        ("gpt2", {"batch_size": 2.0}, r"batch_size must be in"),
        ("gpt2", {"seed": -1}, "seed must be a non-negative integer"),
        ("t5", {}, "unknown space 't5'; valid spaces: flexibert, gpt2"),
    ],
)
def test_invalid_arguments(space: str, kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"seed": 0, "batch_size": 2, "seq_len": 16, **kwargs}
    with pytest.raises(ValueError, match=message) as info:
        make_batch(space, **args)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------- labels


def test_mlm_mask_rules() -> None:
    batch = make_batch("flexibert", seed=0, batch_size=64, seq_len=128)
    before = batch.input_ids.clone()
    ids, labels = mlm_mask(batch, seed=1)
    assert torch.equal(batch.input_ids, before)  # the batch is not modified
    selected = labels != -100
    assert torch.equal(labels[selected], before[selected])
    assert not selected[:, 0].any() and not selected[:, -1].any()  # [CLS] / [SEP]
    assert torch.equal(ids[~selected], before[~selected])
    rate = selected.float().mean().item()
    assert 0.12 < rate < 0.16  # 0.15 of the 126 real tokens of 128
    n = selected.sum().item()
    masked = (ids == MASK) & selected
    kept = (ids == before) & selected
    randomised = selected & ~masked & ~kept
    assert 0.75 < masked.sum().item() / n < 0.85
    assert 0.05 < kept.sum().item() / n < 0.15  # (a random draw can equal the original too)
    assert 0.05 < randomised.sum().item() / n < 0.15
    assert (ids[randomised] >= 999).all()  # random replacements are real word pieces
    again = mlm_mask(batch, seed=1)
    assert torch.equal(again[0], ids) and torch.equal(again[1], labels)
    other = mlm_mask(batch, seed=2)
    assert not torch.equal(other[1], labels)


def test_mlm_mask_never_touches_padding_or_specials() -> None:
    ids = torch.tensor([[CLS, 2000, UNK, 2001, SEP, PAD, PAD, PAD]] * 50)
    mask = (ids != PAD).long()
    batch = InputBatch("flexibert", 0, 50, 8, TOKENIZERS["flexibert"], ids, mask, "x")
    out, labels = mlm_mask(batch, seed=0, probability=1.0)
    selected = labels != -100
    assert selected[:, [1, 3]].all()  # with probability 1 every real token is selected
    assert not selected[:, [0, 2, 4, 5, 6, 7]].any()
    assert torch.equal(out[:, [0, 2, 4, 5, 6, 7]], ids[:, [0, 2, 4, 5, 6, 7]])


def test_label_helpers_check_space() -> None:
    gpt2 = make_batch("gpt2", seed=0, batch_size=2, seq_len=16)
    flexi = make_batch("flexibert", seed=0, batch_size=2, seq_len=16)
    labels = lm_labels(gpt2)
    assert torch.equal(labels, gpt2.input_ids) and labels is not gpt2.input_ids
    with pytest.raises(ValueError, match="gpt2 batch"):
        lm_labels(flexi)
    with pytest.raises(ValueError, match="flexibert batch"):
        mlm_mask(gpt2, seed=0)
    with pytest.raises(ValueError, match="probability"):
        mlm_mask(flexi, seed=0, probability=0.0)
    padded = replace(gpt2, attention_mask=torch.tensor([[1] * 16, [1] * 8 + [0] * 8]))
    assert (lm_labels(padded)[1, 8:] == -100).all()


# ---------------------------------------------------------------- text split


def test_text_split_every_tenth_paragraph() -> None:
    train, valid = text_split()
    assert text_split() == (train, valid)
    paragraphs = [p for p in english_text().split("\n\n") if p.strip()]
    assert valid.split("\n\n") == [p.strip("\n") for p in paragraphs[9::10]]
    n_train, n_valid = len(train.split("\n\n")), len(valid.split("\n\n"))
    assert n_train + n_valid == len(paragraphs) and n_valid == len(paragraphs) // 10
    _, quarter_valid = text_split(0.25)
    assert len(quarter_valid.split("\n\n")) == len(paragraphs) // 4
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        text_split(1.0)
