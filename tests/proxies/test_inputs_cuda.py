"""The GPU path: inputs computed on CUDA match the CPU ones (skipped visibly without a GPU)."""

from __future__ import annotations

import pytest
import torch

from lpzero_queue.benchmarks.batches import make_batch
from lpzero_queue.benchmarks.records import load_shipped
from lpzero_queue.proxies.expression import (
    LPZERO_FLEXIBERT,
    LPZERO_GPT2,
    evaluate_many,
    parse_expression,
)
from lpzero_queue.proxies.inputs import compute_inputs

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(
        not torch.cuda.is_available(), reason="needs a CUDA device (none visible here)"
    ),
]


@pytest.mark.parametrize(
    ("space", "bench", "builder", "expr"),
    [
        ("flexibert", "flexibert", "faithful", LPZERO_FLEXIBERT),
        ("flexibert", "flexibert", "lpzero", LPZERO_FLEXIBERT),  # train mode: dropout masks
        ("gpt2", "gpt2-wt103", "gpt2", LPZERO_GPT2),
    ],
)
def test_cuda_inputs_match_cpu(space: str, bench: str, builder: str, expr: str) -> None:
    config = load_shipped(bench).records[0].config
    batch = make_batch(space, seed=0, batch_size=2, seq_len=32)
    cpu = compute_inputs(space, config, builder=builder, seed=0, batch=batch)
    gpu = compute_inputs(space, config, builder=builder, seed=0, batch=batch, device="cuda")
    assert all(t.is_cuda for ts in gpu.tensors.values() for t in ts)
    for name, tensors in cpu.tensors.items():
        for a, b in zip(tensors, gpu.tensors[name], strict=True):
            torch.testing.assert_close(b.cpu(), a, rtol=1e-3, atol=1e-5)
    e = parse_expression(expr)
    (c,), (g,) = evaluate_many([e], cpu.tensors), evaluate_many([e], gpu.tensors)
    assert c.status == g.status == "ok"
    assert g.score == pytest.approx(c.score, rel=1e-3)


def test_cuda_dropout_mask_is_the_cpu_one() -> None:
    from lpzero_queue.benchmarks.dropout import host_drawn_dropout

    x = torch.randn(4, 33, 16, generator=torch.Generator().manual_seed(0))
    out = []
    for device in ("cpu", "cuda"):
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(11)
            out.append(host_drawn_dropout(x.to(device), 0.1, True).cpu())
    assert torch.equal(out[0], out[1])
