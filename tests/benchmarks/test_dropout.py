"""Device-independent randomness: dropout masks and the MLM head come from CPU generators."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lpzero_queue.benchmarks.dropout import HostDrawnDropout, host_drawn_dropout
from lpzero_queue.benchmarks.flexibert import FlexiBertForMaskedLM, build_flexibert
from lpzero_queue.benchmarks.records import load_shipped


def _draw(fn: Any, x: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed)
        y = fn(x)
        return y, torch.get_rng_state()


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_cpu_masks_are_bit_identical_to_torch_dropout(p: float) -> None:
    x = torch.randn(3, 17, 8, generator=torch.Generator().manual_seed(0), requires_grad=True)
    ours, state_ours = _draw(lambda t: host_drawn_dropout(t, p, True), x, 7)
    ref, state_ref = _draw(lambda t: F.dropout(t, p, True), x, 7)
    assert torch.equal(ours, ref)
    assert torch.equal(state_ours, state_ref)  # the same draws, in the same amount
    (g_ours,) = torch.autograd.grad(ours.sum(), x)
    (g_ref,) = torch.autograd.grad(ref.sum(), x)
    assert torch.equal(g_ours, g_ref)


def test_mask_is_a_function_of_the_cpu_generator_not_of_the_device() -> None:
    """On another device the draw is the CPU one: same generator use, the mask moved there."""
    shape = (2, 5, 4)
    _, state_cpu = _draw(lambda t: host_drawn_dropout(t, 0.1, True), torch.ones(shape), 3)
    y_meta, state_meta = _draw(
        lambda t: host_drawn_dropout(t, 0.1, True), torch.ones(shape, device="meta"), 3
    )
    assert y_meta.device.type == "meta"
    assert torch.equal(state_meta, state_cpu)


def test_eval_mode_and_p_zero_are_identity() -> None:
    x = torch.randn(4, 4)
    assert host_drawn_dropout(x, 0.1, False) is x
    assert host_drawn_dropout(x, 0.0, True) is x
    assert torch.equal(host_drawn_dropout(x, 1.0, True), torch.zeros(4, 4))
    module = HostDrawnDropout(0.1).eval()
    assert module(x) is x


def test_flexibert_uses_host_drawn_dropout_everywhere() -> None:
    record = load_shipped("flexibert").records[0].config
    model = build_flexibert(record, builder="lpzero", seed=0)
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert dropouts
    assert all(isinstance(m, HostDrawnDropout) for m in dropouts)


def test_mlm_head_draws_on_the_cpu_for_any_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """A head built for another device (meta here) draws every value with a CPU generator."""
    record = load_shipped("flexibert").records[0].config
    draws: list[tuple[str, str]] = []
    normal = nn.init.normal_

    def spy(tensor: torch.Tensor, *args: Any, generator: Any = None, **kw: Any) -> torch.Tensor:
        draws.append((tensor.device.type, generator.device.type if generator else "global"))
        return normal(tensor, *args, generator=generator, **kw)

    cpu_model = build_flexibert(record, seed=0)
    meta_model = build_flexibert(record, seed=0).to("meta")
    monkeypatch.setattr(nn.init, "normal_", spy)
    cpu_head = FlexiBertForMaskedLM(cpu_model, seed=5)
    meta_head = FlexiBertForMaskedLM(meta_model, seed=5)
    assert draws == [("cpu", "cpu"), ("cpu", "cpu")]  # one draw per head, both on the CPU
    assert meta_head.dense.weight.device.type == "meta"
    assert meta_head.bias.device.type == "meta"
    # The same seed gives the same head: the CPU one is what the other device receives.
    again = FlexiBertForMaskedLM(build_flexibert(record, seed=0), seed=5)
    for a, b in zip(cpu_head.parameters(), again.parameters(), strict=True):
        assert torch.equal(a, b)
