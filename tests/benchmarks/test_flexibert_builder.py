"""Contracts of the FlexiBERT builders (``faithful`` and ``lpzero``) and of the dispatch module."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from lpzero_queue.benchmarks.builders import BUILDERS, build_model, structural_summary
from lpzero_queue.benchmarks.flexibert import (
    FlexiBertForMaskedLM,
    FlexiBertModel,
    build_flexibert,
    flexibert_skeleton,
)
from lpzero_queue.benchmarks.taps import TAP_KINDS, Tap, taps

ROOT = Path(__file__).resolve().parents[2]
RECORDS: list[dict[str, Any]] = json.loads(
    (ROOT / "lpzero_queue/benchmarks/data/flexibert/benchmark.json").read_text()
)
PUBLISHED = json.loads((ROOT / "tests/data/lpzero_builder_params.json").read_text())["params"]
CHUNK = 50
B, T = 2, 16


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches: threading overhead dominates on a shared box
    yield
    torch.set_num_threads(threads)


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in {id(p): p for p in module.parameters()}.values())


def faithful_formula(record: dict[str, Any]) -> int:
    """Independent parameter count of the faithful architecture, from docs/benchmarks.md."""
    H, E = record["hidden_size"], 128

    def lin(a: int, b: int, bias: bool = True) -> int:
        return a * b + (b if bias else 0)

    total = 30522 * E + 512 * E + 2 * E + 2 * E  # tables + LayerNorm
    total += lin(E, H) if H != E else 0
    for layer in record["encoder_layers"]:
        op, par, h = (
            layer["operation_type"],
            layer["operation_parameter"],
            layer["num_operation_heads"],
        )
        if op == "SA":
            mixer = 3 * lin(H, H) + (H * H if par == "WMA" else 0)
        elif op == "LT":
            mixer = lin(H, H)
        else:  # DSC: n attention heads + n conv heads of size H/h, each half A = H/2 wide
            k, A = par, max(1, h // 2) * (H // h)
            n = max(1, h // 2)
            qkv = 3 * lin(H, A)
            sep_conv = H * k + H * A + A  # depthwise, pointwise, bias
            mixer = qkv + sep_conv + lin(A, n * k) + lin(H, A)
        total += mixer + lin(H, H) + 2 * H  # mixer, output Linear, LayerNorm
        widths = [4 * H] + [layer["feed_forward_dimension"]] * (layer["num_feed_forward"] - 1)
        dims = [H, *widths]
        total += sum(lin(a, b) for a, b in itertools.pairwise(dims))
        total += lin(dims[-1], H) + 2 * H
    return total


# --- 1 and 3: parameter counts ----------------------------------------------------------------


def test_lpzero_param_counts_match_published_for_all_records() -> None:
    wrong = {
        r["id"]: (n, PUBLISHED[str(r["id"])])
        for r in RECORDS
        if (n := n_params(flexibert_skeleton(r, "lpzero"))) != PUBLISHED[str(r["id"])]
    }
    assert len(PUBLISHED) == len(RECORDS) == 500
    assert not wrong, f"{len(wrong)} records differ (id: built, published): {wrong}"


def test_faithful_param_counts_match_independent_formula_for_all_records() -> None:
    wrong = {
        r["id"]: (n, faithful_formula(r))
        for r in RECORDS
        if (n := n_params(flexibert_skeleton(r, "faithful"))) != faithful_formula(r)
    }
    assert not wrong, f"{len(wrong)} records differ (id: built, formula): {wrong}"


def test_built_model_counts_equal_skeleton_and_summary() -> None:
    for builder in BUILDERS["flexibert"]:
        for record in RECORDS[:3]:
            model = build_flexibert(record, builder=builder, seed=0)
            summary = structural_summary("flexibert", record, builder)
            assert summary["params_total"] == n_params(model)
            assert summary["params_nonembedding"] == n_params(model) - n_params(model.embeddings)
            assert summary["n_layers"] == len(record["encoder_layers"])
            assert summary["hidden_size"] == (256 if builder == "lpzero" else record["hidden_size"])


# --- 4: every architecture runs forward and backward ------------------------------------------


def forward_backward(model: FlexiBertModel, ids: torch.Tensor) -> list[str]:
    """Run one step; return the problems found (empty when gradients reach every input)."""
    seen: list[torch.Tensor] = []
    (emb_tap,) = taps(model, "embedding")

    def keep(_m: torch.nn.Module, _i: Any, out: torch.Tensor) -> None:  # must return None
        out.retain_grad()
        seen.append(out)

    handle = emb_tap.register_forward_hook(keep)
    out = model(ids, torch.ones_like(ids))  # (B, T, H)
    handle.remove()
    probe = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    (out * probe).sum().backward()  # a plain sum would vanish through the last LayerNorm
    problems = []
    if not torch.isfinite(out).all():
        problems.append("non-finite output")
    for i, lin in enumerate(model.mixer_linears()):
        if lin.weight.grad is None or not lin.weight.grad.abs().sum() > 0:
            problems.append(f"no gradient at mixer linear {i}")
    if seen[0].grad is None or not seen[0].grad.abs().sum() > 0:
        problems.append("no gradient at the embedding tap")
    return problems


def check_records(records: list[dict[str, Any]], builder: str, seed: int) -> None:
    ids = torch.randint(0, 30522, (B, T), generator=torch.Generator().manual_seed(seed))
    failures = {}
    for record in records:
        model = build_model("flexibert", record, builder=builder, seed=record["id"])
        if builder == "lpzero":
            model.train()  # as published
        if problems := forward_backward(model, ids):
            failures[record["id"]] = problems
    assert not failures, failures


@pytest.mark.slow
@pytest.mark.parametrize("start", range(0, 500, CHUNK), ids=lambda s: f"ids{s}-{s + CHUNK - 1}")
def test_every_architecture_runs_forward_and_backward(start: int) -> None:
    """All 500 records with the default (faithful) builder."""
    check_records(RECORDS[start : start + CHUNK], "faithful", start)


@pytest.mark.slow
def test_lpzero_builder_runs_forward_and_backward_in_train_mode() -> None:
    """lpzero differs from faithful only in sizes, LT output block and mask: a covering subset
    (LPZero's fitness records 0-49 plus one record per operation/heads combination) suffices;
    initialising all 500 twice would double the suite's time (weight init dominates)."""
    subset = {r["id"]: r for r in [*RECORDS[:CHUNK], *first_records_by_op()]}
    check_records(list(subset.values()), "lpzero", 0)


# --- 5: taps ----------------------------------------------------------------------------------


def capture(model: torch.nn.Module, run: Any) -> dict[str, list[tuple[Tap, torch.Tensor]]]:
    """Run ``run()`` with hooks on every tap; return (tap, output) per kind in firing order."""
    fired: dict[str, list[tuple[Tap, torch.Tensor]]] = {k: [] for k in TAP_KINDS}
    handles = [
        tap.register_forward_hook(lambda m, _i, out: fired[m.kind].append((m, out.detach())))
        for kind in TAP_KINDS
        for tap in taps(model, kind)
    ]
    run()
    for h in handles:
        h.remove()
    return fired


def first_records_by_op() -> list[dict[str, Any]]:
    """A few records covering every (operation, parameter, heads) combination."""
    chosen: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in RECORDS:
        for layer in r["encoder_layers"]:
            key = (
                layer["operation_type"],
                layer["operation_parameter"],
                layer["num_operation_heads"],
            )
            chosen.setdefault(key, r)
    return list({r["id"]: r for r in chosen.values()}.values())


@pytest.mark.parametrize("builder", BUILDERS["flexibert"])
@pytest.mark.parametrize("record", first_records_by_op(), ids=lambda r: f"id{r['id']}")
def test_taps_count_shape_order_and_content(builder: str, record: dict[str, Any]) -> None:
    model = build_flexibert(record, builder=builder, seed=0)
    H = model.spec.hidden
    layers = record["encoder_layers"]
    queries: list[torch.Tensor] = []
    hooks = [
        m.query.register_forward_hook(lambda _m, _i, out: queries.append(out.detach()))
        if hasattr(m, "query")
        else m.input.register_forward_hook(lambda _m, _i, out: queries.append(out.detach()))
        for m in (layer.mixer for layer in model.layers)
    ]
    ids = torch.randint(0, 30522, (B, T), generator=torch.Generator().manual_seed(0))
    fired = capture(model, lambda: model(ids))
    for h in hooks:
        h.remove()

    assert len(fired["act"]) == sum(layer["num_feed_forward"] for layer in layers)
    assert len(fired["head"]) == len(fired["softmax"]) == len(layers)
    assert len(fired["embedding"]) == 1
    for kind in TAP_KINDS:  # module order == execution order
        assert [tap for tap, _ in fired[kind]] == taps(model, kind)
    assert fired["embedding"][0][1].shape == (B, T, H)
    for layer, (_, head), query, (_, soft) in zip(
        layers, fired["head"], queries, fired["softmax"], strict=True
    ):
        op, h = layer["operation_type"], layer["num_operation_heads"]
        assert torch.equal(head, query)  # the tap sees the query / input projection output
        if op == "DSC":
            assert head.shape == (B, T, H // 2)
            assert soft.shape == (B, max(1, h // 2), T, T)
        elif op == "SA":
            assert head.shape == (B, T, H)
            assert soft.shape == (B, h, T, T)
        else:
            assert head.shape == (B, T, H)
            assert soft.shape == (B, h, T, H // h)
        torch.testing.assert_close(soft.sum(-1), torch.ones(soft.shape[:-1]))
    widths = [act.shape[-1] for _, act in fired["act"]]
    expected = []
    for layer in layers:
        first = 1024 if builder == "lpzero" else 4 * H
        extra = 1024 if builder == "lpzero" else layer["feed_forward_dimension"]
        expected += [first] + [extra] * (layer["num_feed_forward"] - 1)
    assert widths == expected
    linears = model.mixer_linears()
    per_op = {"SA": 3, "LT": 1, "DSC": 5}
    assert len(linears) == sum(
        per_op[la["operation_type"]] + (la["operation_parameter"] == "WMA") for la in layers
    )


# --- 6: seeds ---------------------------------------------------------------------------------


@pytest.mark.parametrize("builder", BUILDERS["flexibert"])
def test_same_seed_same_weights_other_seed_different(builder: str) -> None:
    record = RECORDS[0]
    state = torch.random.get_rng_state()
    a = build_flexibert(record, builder=builder, seed=7).state_dict()
    b = build_flexibert(record, builder=builder, seed=7).state_dict()
    c = build_flexibert(record, builder=builder, seed=8).state_dict()
    assert torch.equal(state, torch.random.get_rng_state()), "global RNG was touched"
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    random_keys = [k for k in a if k.endswith("weight") and a[k].dim() > 1]
    assert random_keys and all(not torch.equal(a[k], c[k]) for k in random_keys)


def test_models_are_returned_in_eval_mode_with_dropout_available() -> None:
    model = build_flexibert(RECORDS[0], builder="lpzero", seed=0)
    assert not model.training
    assert any(isinstance(m, torch.nn.Dropout) for m in model.modules())


# --- 7: padding mask --------------------------------------------------------------------------


def sdp_record(hidden: int = 128) -> dict[str, Any]:
    layer = {
        "operation_type": "SA",
        "operation_parameter": "SDP",
        "num_operation_heads": 4,
        "feed_forward_dimension": 512,
        "num_feed_forward": 1,
    }
    return {
        "hidden_size": hidden,
        "encoder_layers": [layer, {**layer, "operation_parameter": "WMA"}],
    }


def test_faithful_padding_mask_hides_masked_tokens() -> None:
    model = build_flexibert(sdp_record(), seed=0)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 30522, (B, T), generator=gen)
    mask = torch.ones(B, T, dtype=torch.long)
    mask[:, -5:] = 0
    other = ids.clone()
    other[:, -5:] = torch.randint(1, 30522, (B, 5), generator=gen)
    real = mask.bool()
    torch.testing.assert_close(model(ids, mask)[real], model(other, mask)[real], rtol=0, atol=1e-6)
    assert not torch.allclose(model(ids)[real], model(other)[real], atol=1e-4)


def test_lpzero_ignores_the_padding_mask() -> None:
    model = build_flexibert(sdp_record(), builder="lpzero", seed=0)
    ids = torch.randint(1, 30522, (B, T), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(B, T, dtype=torch.long)
    mask[:, -5:] = 0
    assert torch.equal(model(ids, mask), model(ids))


# --- MLM head, validation, dispatch -----------------------------------------------------------


def test_masked_lm_head_shapes_loss_and_tied_decoder() -> None:
    model = build_flexibert(RECORDS[3], seed=0)
    mlm = FlexiBertForMaskedLM(model, seed=0)
    ids = torch.randint(0, 30522, (B, T), generator=torch.Generator().manual_seed(0))
    labels = torch.full_like(ids, -100)
    labels[:, ::3] = ids[:, ::3]
    logits, loss = mlm(ids, labels=labels)
    assert logits.shape == (B, T, 30522)
    assert loss is not None
    keep = labels != -100
    torch.testing.assert_close(loss, F.cross_entropy(logits[keep], labels[keep]))
    assert mlm(ids)[1] is None
    assert n_params(mlm) == n_params(model) + (model.spec.hidden * 128 + 128) + 2 * 128 + 30522


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda r: r.pop("hidden_size"), "hidden_size"),
        (lambda r: r.update(hidden_size="256"), "hidden_size"),
        (lambda r: r["encoder_layers"][0].update(operation_type="RNN"), "operation_type"),
        (lambda r: r["encoder_layers"][0].update(operation_parameter="XYZ"), "operation_parameter"),
        (lambda r: r["encoder_layers"][1].pop("num_feed_forward"), "num_feed_forward"),
        (lambda r: r["encoder_layers"][0].update(num_operation_heads=3), "num_operation_heads"),
        (lambda r: r.update(encoder_layers=[]), "encoder_layers"),
    ],
)
def test_bad_config_raises_value_error_naming_the_field(mutate: Any, field: str) -> None:
    record = json.loads(json.dumps(RECORDS[0]))
    mutate(record)
    with pytest.raises(ValueError, match=field):
        build_flexibert(record, seed=0)


def test_dispatch_rejects_unknown_space_and_builder() -> None:
    with pytest.raises(ValueError, match=r"'bert'.*flexibert, gpt2"):
        build_model("bert", RECORDS[0], seed=0)
    with pytest.raises(ValueError, match=r"'fast'.*faithful, lpzero"):
        build_model("flexibert", RECORDS[0], builder="fast", seed=0)
    with pytest.raises(ValueError, match=r"'fast'"):
        structural_summary("flexibert", RECORDS[0], "fast")
    assert isinstance(build_model("flexibert", RECORDS[0], seed=0), FlexiBertModel)
