"""LLaMA models: loading errors, sub-networks that really shrink, proxy inputs through taps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lpzero_queue.errors import LpzqError
from lpzero_queue.training import subnet as sn
from lpzero_queue.training.llama import LORA_TARGETS, apply_subnet, count_params, load_llama


def test_load_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(LpzqError, match="does not exist") as missing:
        load_llama(tmp_path / "nope")
    assert "\n" not in str(missing.value)
    with pytest.raises(LpzqError, match=r"no config\.json"):
        load_llama(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "vocab_size": 50257}))
    with pytest.raises(LpzqError, match="holds a gpt2 model, not a LLaMA-architecture model"):
        load_llama(tmp_path)


def test_subnet_really_removes_parameters(tiny_llama_dir: Path) -> None:
    full = load_llama(tiny_llama_dir)
    before = count_params(full)
    cfg = full.config
    h, inter = cfg.hidden_size, cfg.intermediate_size
    widths, ranks = [32, 48], [4, 3]
    sub = apply_subnet(load_llama(tiny_llama_dir), widths, ranks, seed=0)
    after = count_params(sub)
    removed = sum(3 * h * (inter - w) for w in widths)  # gate, up (rows) and down (columns)
    lora = 0
    for w, r in zip(widths, ranks, strict=True):
        shapes = {"q_proj": (h, h), "k_proj": (h, h), "v_proj": (h, h), "o_proj": (h, h),
                  "gate_proj": (h, w), "up_proj": (h, w), "down_proj": (w, h)}  # fmt: skip
        lora += sum(r * (i + o) for i, o in (shapes[n] for n in LORA_TARGETS))
    assert after["active"] == before["active"] - removed + lora
    assert after["trainable"] == lora
    assert sub.model.layers[0].mlp.gate_proj.weight.shape == (h, 32)[::-1]
    with pytest.raises(ValueError, match="width 999"):
        apply_subnet(load_llama(tiny_llama_dir), [999, 64], [4, 4])


def test_elastic_space_scales_the_lonas_choices() -> None:
    lonas = sn.elastic_space({"intermediate_size": 11008, "num_hidden_layers": 32}, rank=32)
    assert lonas.widths == (11008, 9632, 8256, 6880, 5504) and lonas.ranks == (32, 28)
    tiny = sn.elastic_space({"intermediate_size": 64, "num_hidden_layers": 2}, rank=8)
    assert tiny.widths == (64, 56, 48, 40, 32) and tiny.ranks == (8, 7)
    picks = sn.sample_subnets(tiny, 20, np.random.default_rng(0))
    assert len(set(picks)) == 20 == len(picks)


def test_proxy_inputs_and_scores_through_taps(tiny_llama_dir: Path) -> None:
    from lpzero_queue.proxies.inputs import extract_inputs
    from lpzero_queue.training.llama_proxy import LlamaTapped

    batch = sn.proxy_batch(seed=0, batch_size=2, seq_len=16)
    model = load_llama(tiny_llama_dir)
    tapped = LlamaTapped(model)
    inputs = extract_inputs(tapped, batch, objective="lm", seed=0)
    assert [len(inputs[k]) for k in ("act", "head", "softmax", "jacobs")] == [2, 2, 2, 1]
    assert len(inputs["weight"]) == len(inputs["grad"]) == 8  # q, k, v, o of 2 layers
    assert inputs["softmax"][0].shape == (2, 2, 16, 16)  # (B, heads, T, T)
    assert inputs["act"][0].shape == (2, 16, 64)  # (B, T, intermediate)
    tapped.remove()
    subs = [sn.Subnet((64, 64), (8, 8)), sn.Subnet((32, 32), (8, 8)), sn.Subnet((32, 32), (7, 7))]
    rows = sn.score_subnets(
        tiny_llama_dir, subs, "sum(mean(act), frobenius_norm(head))", seed=0, batch=batch
    )
    assert [r["status"] for r in rows] == ["ok"] * 3
    assert rows[0]["score"] != rows[1]["score"]  # the widths change what the proxy sees
    assert rows[1]["score"] == rows[2]["score"]  # the rank does not (B starts at zero)
    assert rows[0]["active_params"] > rows[1]["active_params"] > rows[2]["active_params"]
