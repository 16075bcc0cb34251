"""Fixtures shared by the proxy tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from lpzero_queue.benchmarks.batches import TOKENIZERS, InputBatch, batch_content_hash
from lpzero_queue.benchmarks.records import load_shipped
from lpzero_queue.proxies.inputs import compute_inputs


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One intra-op thread for a module: its tensors are small, and threads contend on shared CPUs.

    Use it with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


B, T = 2, 16
# FlexiBERT 0 and 8: four layers, every mixer kind, FFN widths and head counts that differ between
# layers (several shape groups per input). GPT-2 93 and 155: two of the smallest (2 and 4 layers).
ARCHS = [("flexibert", "flexibert", 0), ("flexibert", "flexibert", 8),
         ("gpt2", "gpt2-wt103", 93), ("gpt2", "gpt2-wt103", 155)]  # fmt: skip


def _batch(space: str) -> InputBatch:
    """Random real-token ids (tokenising text would cost seconds per test run)."""
    gen = torch.Generator().manual_seed(0)
    lo, hi = (999, 30522) if space == "flexibert" else (0, 50257)
    ids = torch.randint(lo, hi, (B, T), generator=gen)  # (B, T)
    mask = torch.ones_like(ids)  # (B, T)
    name = TOKENIZERS[space]
    return InputBatch(space, 0, B, T, name, ids, mask, batch_content_hash(name, ids, mask))


@pytest.fixture(scope="module")
def real_inputs() -> dict[str, dict[str, tuple[torch.Tensor, ...]]]:
    out: dict[str, dict[str, tuple[torch.Tensor, ...]]] = {}
    for space, bench, index in ARCHS:
        config = load_shipped(bench).records[index].config
        p = compute_inputs(space, config, builder=None, seed=0, batch=_batch(space))
        out[f"{bench}[{index}]"] = dict(p.tensors)
    return out
