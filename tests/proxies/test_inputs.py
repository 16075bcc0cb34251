"""Contracts of the proxy-input extraction (one forward + one backward -> six inputs)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from types import MappingProxyType
from typing import Any

import pytest
import torch
from torch import nn

from lpzero_queue.benchmarks.batches import TOKENIZERS, InputBatch, batch_content_hash
from lpzero_queue.benchmarks.builders import build_model
from lpzero_queue.benchmarks.records import load_shipped
from lpzero_queue.proxies import inputs as inputs_module
from lpzero_queue.proxies.expression import Branch, Expression, evaluate
from lpzero_queue.proxies.inputs import (
    InputsKey,
    ProxyInputs,
    compute_inputs,
    extract_inputs,
    inputs_key,
)
from lpzero_queue.proxies.operators import INPUT_NAMES, UNARY_OPS

B, T = 2, 16


def _layer(op: str, param: str | int, heads: int, ff: int, n_ff: int) -> dict[str, Any]:
    return {
        "operation_type": op,
        "operation_parameter": param,
        "num_operation_heads": heads,
        "feed_forward_dimension": ff,
        "num_feed_forward": n_ff,
    }


# Every mixer type appears in one of the two configs.
FLEXI_CONFIGS: dict[str, dict[str, Any]] = {
    "sdp_wma_dft": {
        "hidden_size": 128,
        "encoder_layers": [
            _layer("SA", "SDP", 2, 512, 1),
            _layer("SA", "WMA", 4, 256, 2),
            _layer("LT", "DFT", 2, 1024, 3),
        ],
    },
    "dct_dsc": {
        "hidden_size": 256,
        "encoder_layers": [_layer("LT", "DCT", 4, 512, 2), _layer("DSC", 5, 4, 1024, 1)],
    },
}
MIXER_LINEARS = {"SDP": 3, "WMA": 4, "DFT": 1, "DCT": 1, 5: 5}


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches: threading overhead dominates on a shared box
    yield
    torch.set_num_threads(threads)


def _batch(space: str) -> InputBatch:
    """A hashed batch of random real-token ids (skips tokenising the text: seconds per test run)."""
    gen = torch.Generator().manual_seed(0)
    lo, hi = (999, 30522) if space == "flexibert" else (0, 50257)
    ids = torch.randint(lo, hi, (B, T), generator=gen)  # (B, T)
    if space == "flexibert":
        ids[:, 0], ids[:, -1] = 101, 102  # [CLS] ... [SEP]
    mask = torch.ones_like(ids)  # (B, T)
    name = TOKENIZERS[space]
    return InputBatch(space, 0, B, T, name, ids, mask, batch_content_hash(name, ids, mask))


@pytest.fixture(scope="module")
def fb_batch() -> InputBatch:
    return _batch("flexibert")


@pytest.fixture(scope="module")
def gpt2_batch() -> InputBatch:
    return _batch("gpt2")


@pytest.fixture(scope="module")
def gpt2_records() -> list[Any]:
    records = load_shipped("gpt2-wt103").records
    return [records[93], records[155]]  # two of the smallest (2 and 4 layers, d_model 64)


def _flat(p: ProxyInputs) -> list[torch.Tensor]:
    return [t for name in INPUT_NAMES for t in p.tensors[name]]


@pytest.mark.parametrize("builder", ["faithful", "lpzero"])
@pytest.mark.parametrize("name", sorted(FLEXI_CONFIGS))
def test_flexibert_inputs_counts_and_shapes(builder: str, name: str, fb_batch: InputBatch) -> None:
    config = FLEXI_CONFIGS[name]
    p = compute_inputs(
        "flexibert", config, builder=builder, seed=1, batch=fb_batch, objective="mlm"
    )
    layers = config["encoder_layers"]
    H = 256 if builder == "lpzero" else config["hidden_size"]
    assert set(p.tensors) == set(INPUT_NAMES)
    assert isinstance(p.tensors, MappingProxyType)
    assert all(isinstance(ts, tuple) and ts for ts in p.tensors.values())

    widths = []
    for layer in layers:
        first = 1024 if builder == "lpzero" else 4 * H
        rest = 1024 if builder == "lpzero" else layer["feed_forward_dimension"]
        widths += [first] + [rest] * (layer["num_feed_forward"] - 1)
    assert [tuple(t.shape) for t in p.tensors["act"]] == [(B, T, w) for w in widths]

    heads, softmax, n_lin = [], [], 0
    for layer in layers:
        h = layer["num_operation_heads"]
        n_lin += MIXER_LINEARS[layer["operation_parameter"]]
        if layer["operation_type"] == "DSC":
            n = max(1, h // 2)
            heads.append((B, T, H // 2))
            softmax.append((B, n, T, T))
        elif layer["operation_type"] == "LT":
            heads.append((B, T, H))
            softmax.append((B, h, T, H // h))
        else:
            heads.append((B, T, H))
            softmax.append((B, h, T, T))
    assert [tuple(t.shape) for t in p.tensors["head"]] == heads
    assert [tuple(t.shape) for t in p.tensors["softmax"]] == softmax
    assert len(p.tensors["weight"]) == len(p.tensors["grad"]) == n_lin
    for w, g in zip(p.tensors["weight"], p.tensors["grad"], strict=True):
        assert w.shape == g.shape and w.dim() == 2
        assert g.abs().max() > 0  # a real backward reached every mixer Linear
    assert [tuple(t.shape) for t in p.tensors["jacobs"]] == [(B, T, H)]
    assert p.tensors["jacobs"][0].abs().max() > 0
    assert p.key.builder == builder and p.key.objective == "mlm"
    assert p.nbytes == sum(t.numel() * 4 for t in _flat(p))


def test_gpt2_inputs_counts_and_shapes(gpt2_records: list[Any], gpt2_batch: InputBatch) -> None:
    for rec in gpt2_records:
        cfg = rec.config
        p = compute_inputs(
            "gpt2", cfg, builder=None, seed=0, batch=gpt2_batch, linear_scope="mixer"
        )
        d, n = cfg["d_model"], cfg["n_layer"]
        assert p.key.objective == "lm" and p.key.builder == "gpt2"
        assert [tuple(t.shape) for t in p.tensors["act"]] == [(B, T, w) for w in cfg["d_inner"]]
        assert [tuple(t.shape) for t in p.tensors["head"]] == [(B, T, d)] * n
        assert [tuple(t.shape) for t in p.tensors["softmax"]] == [
            (B, h, T, T) for h in cfg["n_head"]
        ]
        assert [tuple(t.shape) for t in p.tensors["weight"]] == [(3 * d, d)] * n
        assert all(g.abs().max() > 0 for g in p.tensors["grad"])
        assert [tuple(t.shape) for t in p.tensors["jacobs"]] == [(B, T, d)]
        assert p.tensors["jacobs"][0].abs().max() > 0


def test_ones_objective_gradient_is_roundoff(fb_batch: InputBatch) -> None:
    # The faithful (and lpzero) encoder ends in a LayerNorm with gamma=1, beta=0: its output sums
    # to 0 over the hidden axis for every token, so d(sum of output)/d(anything before) is 0
    # analytically and the `ones` grads are float32 round-off (measured ~1e-9..1e-6), while the
    # `mlm` grads of the same model are ~1e-2.
    config = FLEXI_CONFIGS["sdp_wma_dft"]
    ones = compute_inputs(
        "flexibert", config, builder=None, seed=0, batch=fb_batch, objective="ones"
    )
    mlm = compute_inputs("flexibert", config, builder=None, seed=0, batch=fb_batch, objective="mlm")
    ones_max = max(float(g.abs().max()) for g in ones.tensors["grad"])
    mlm_max = max(float(g.abs().max()) for g in mlm.tensors["grad"])
    assert ones_max < 1e-4 < mlm_max
    assert float(ones.tensors["jacobs"][0].abs().max()) < 1e-4


@pytest.mark.parametrize(
    ("builder", "objective"), [("faithful", "mlm"), ("lpzero", "ones"), ("lpzero", "mlm")]
)
def test_same_key_gives_bit_identical_tensors(
    builder: str, objective: str, fb_batch: InputBatch
) -> None:
    config = FLEXI_CONFIGS["sdp_wma_dft"]
    rng_before = torch.get_rng_state()
    a, b = (
        compute_inputs(
            "flexibert", config, builder=builder, seed=3, batch=fb_batch, objective=objective
        )
        for _ in range(2)
    )
    assert torch.equal(torch.get_rng_state(), rng_before)  # dropout RNG was forked
    assert a.key == b.key
    for x, y in zip(_flat(a), _flat(b), strict=True):
        assert torch.equal(x, y)


def test_lpzero_runs_with_dropout(fb_batch: InputBatch) -> None:
    # Same weights, dropout active: the lpzero activations differ from an eval-mode pass.
    config = FLEXI_CONFIGS["dct_dsc"]
    model = build_model("flexibert", config, builder="lpzero", seed=0)
    train = extract_inputs(model, fb_batch, objective="ones", seed=0, train=True)
    evald = extract_inputs(model, fb_batch, objective="ones", seed=0, train=False)
    assert not torch.equal(train["act"][-1], evald["act"][-1])
    assert not model.training  # mode restored


def test_gpt2_deterministic(gpt2_records: list[Any], gpt2_batch: InputBatch) -> None:
    cfg = gpt2_records[0].config
    a, b = (compute_inputs("gpt2", cfg, builder=None, seed=5, batch=gpt2_batch) for _ in range(2))
    for x, y in zip(_flat(a), _flat(b), strict=True):
        assert torch.equal(x, y)


def _hooks(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in model.modules()
    )


def test_stored_tensors_are_detached_copies_and_no_hooks_remain(fb_batch: InputBatch) -> None:
    model = build_model("flexibert", FLEXI_CONFIGS["dct_dsc"], builder="faithful", seed=0)
    out = extract_inputs(model, fb_batch, objective="mlm", seed=0)
    assert _hooks(model) == 0
    assert all(p.grad is None for p in model.parameters())  # grads cleared after reading
    model_ptrs = {p.untyped_storage().data_ptr() for p in model.parameters()}
    for ts in out.values():
        for t in ts:
            assert not t.requires_grad and t.grad_fn is None
            assert t.is_contiguous() and t.dtype == torch.float32
            assert t.untyped_storage().data_ptr() not in model_ptrs
            assert t.untyped_storage().nbytes() == t.numel() * t.element_size()  # not a view
    before = [w.clone() for w in out["weight"]]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    for w, b in zip(out["weight"], before, strict=True):
        assert torch.equal(w, b)


def test_hooks_removed_and_mode_restored_on_error(
    fb_batch: InputBatch, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = build_model("flexibert", FLEXI_CONFIGS["dct_dsc"], builder="lpzero", seed=0)

    def boom(model: nn.Module, batch: InputBatch, *, objective: str, seed: int) -> torch.Tensor:
        model(batch.input_ids)  # hooks fire, then the objective fails
        raise RuntimeError("objective failed")

    monkeypatch.setattr(inputs_module, "forward_loss", boom)
    with pytest.raises(RuntimeError, match="objective failed"):
        extract_inputs(model, fb_batch, objective="ones", seed=0, train=True)
    assert _hooks(model) == 0
    assert not model.training


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_storage_dtype(dtype: torch.dtype, gpt2_records: list[Any], gpt2_batch: InputBatch) -> None:
    cfg = gpt2_records[0].config
    full = compute_inputs("gpt2", cfg, builder=None, seed=0, batch=gpt2_batch)
    half = compute_inputs("gpt2", cfg, builder=None, seed=0, batch=gpt2_batch, dtype=dtype)
    assert all(t.dtype == dtype for t in _flat(half)) and half.dtype == dtype
    assert half.nbytes * 2 == full.nbytes
    for x, y in zip(_flat(full), _flat(half), strict=True):
        torch.testing.assert_close(x.to(dtype), y, rtol=0, atol=0)


def test_invalid_dtype_rejected(fb_batch: InputBatch) -> None:
    with pytest.raises(ValueError, match="storage dtype"):
        compute_inputs(
            "flexibert",
            FLEXI_CONFIGS["dct_dsc"],
            builder=None,
            seed=0,
            batch=fb_batch,
            dtype=torch.float64,
        )


def test_operators_cannot_change_cached_tensors(fb_batch: InputBatch) -> None:
    p = compute_inputs(
        "flexibert",
        FLEXI_CONFIGS["dct_dsc"],
        builder=None,
        seed=0,
        batch=fb_batch,
        objective="mlm",
    )
    snapshot = {name: [t.clone() for t in ts] for name, ts in p.tensors.items()}
    for op in sorted(UNARY_OPS):
        for name in INPUT_NAMES:
            evaluate(Expression("sum", Branch(name, (op,)), Branch(name, (op, op))), p.tensors)
    for name, ts in p.tensors.items():
        for t, s in zip(ts, snapshot[name], strict=True):
            assert torch.equal(t, s), f"{name} changed"


def test_key_digest_is_sha256_of_canonical_json(fb_batch: InputBatch) -> None:
    key = inputs_key("flexibert", FLEXI_CONFIGS["dct_dsc"], builder=None, seed=7, batch=fb_batch)
    assert key.builder == "faithful"
    text = json.dumps(
        {
            "batch_hash": key.batch_hash,
            "builder": key.builder,
            "config_hash": key.config_hash,
            "linear_scope": "mixer",
            "objective": key.objective,
            "seed": 7,
            "space": "flexibert",
        },
        separators=(",", ":"),
    )
    assert key.digest == hashlib.sha256(text.encode()).hexdigest()
    fixed = InputsKey("gpt2", "c" * 64, "gpt2", 0, "b" * 64, "lm")
    assert fixed.digest == FIXED_DIGEST  # stable across processes and versions
    assert InputsKey("gpt2", "c" * 64, "gpt2", 1, "b" * 64, "lm").digest != fixed.digest
    every = InputsKey("gpt2", "c" * 64, "gpt2", 0, "b" * 64, "lm", linear_scope="all")
    assert every.digest != fixed.digest


@pytest.mark.parametrize("space", ["flexibert", "gpt2"])
def test_linear_scope_all_takes_every_linear_with_a_gradient(
    space: str, fb_batch: InputBatch, gpt2_batch: InputBatch, gpt2_records: list[Any]
) -> None:
    batch = fb_batch if space == "flexibert" else gpt2_batch
    config = FLEXI_CONFIGS["sdp_wma_dft"] if space == "flexibert" else gpt2_records[1].config
    mixer = compute_inputs(space, config, builder=None, seed=3, batch=batch, linear_scope="mixer")
    every = compute_inputs(space, config, builder=None, seed=3, batch=batch, linear_scope="all")
    default = inputs_key(space, config, builder=None, seed=3, batch=batch).linear_scope
    assert default == {"flexibert": "mixer", "gpt2": "all"}[space]
    assert (mixer.key.linear_scope, every.key.linear_scope) == ("mixer", "all")
    assert mixer.key.digest != every.key.digest
    # Reference: the same model, one backward, every nn.Linear whose weight got a gradient.
    model = build_model(space, config, seed=3)
    extract_inputs(model, batch, objective=every.key.objective, seed=3)  # clears grads after
    from lpzero_queue.proxies.objective import forward_loss

    forward_loss(model, batch, objective=every.key.objective, seed=3).backward()
    linears = [m for m in model.modules() if isinstance(m, nn.Linear) and m.weight.grad is not None]
    assert len(every.tensors["weight"]) == len(linears) > len(mixer.tensors["weight"])
    for got, lin in zip(every.tensors["weight"], linears, strict=True):
        assert torch.equal(got, lin.weight.detach())
    for got, lin in zip(every.tensors["grad"], linears, strict=True):
        assert lin.weight.grad is not None and torch.equal(got, lin.weight.grad)
    # The token-mixing weights are among them; the other inputs do not depend on the scope.
    every_ids = {t.data_ptr() for t in every.tensors["weight"]}
    assert len(every_ids) == len(every.tensors["weight"])  # copies, not shared storage
    mixer_set = {tuple(t.flatten()[:8].tolist()) for t in mixer.tensors["weight"]}
    assert mixer_set <= {tuple(t.flatten()[:8].tolist()) for t in every.tensors["weight"]}
    for name in ("act", "head", "softmax", "jacobs"):
        assert all(
            torch.equal(a, b) for a, b in zip(mixer.tensors[name], every.tensors[name], strict=True)
        )


def test_unknown_linear_scope_names_the_valid_ones(fb_batch: InputBatch) -> None:
    with pytest.raises(
        ValueError, match="unknown linear scope 'every'; expected one of: mixer, all"
    ):
        inputs_key(
            "flexibert",
            FLEXI_CONFIGS["dct_dsc"],
            builder=None,
            seed=0,
            batch=fb_batch,
            linear_scope="every",
        )


FIXED_DIGEST = "f1dcf6961f35540df2a80fd8b85a01eb7667e5d79cb0fd455cf605edaaee3a48"
