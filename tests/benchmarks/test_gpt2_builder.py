"""Contracts of the GPT-2 (HfGPT2Flex) builder."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from lpzero_queue.benchmarks.builders import build_model, structural_summary
from lpzero_queue.benchmarks.gpt2 import Gpt2Model, build_gpt2, gpt2_skeleton
from lpzero_queue.benchmarks.taps import TAP_KINDS, taps

ROOT = Path(__file__).resolve().parents[2]
RECORDS: list[dict[str, Any]] = json.loads(
    (ROOT / "lpzero_queue/benchmarks/data/gpt2_wt103/benchmark.json").read_text()
)
V = 50264
CHUNK = 25
B, T = 2, 16


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches: threading overhead dominates on a shared box
    yield
    torch.set_num_threads(threads)


def random_ids(seed: int, shape: tuple[int, int] = (B, T)) -> torch.Tensor:
    return torch.randint(0, V, shape, generator=torch.Generator().manual_seed(seed))


def by_embedding_kind() -> list[dict[str, Any]]:
    """One record per (div_val, d_model == d_embed) case."""
    chosen: dict[tuple[int, bool], dict[str, Any]] = {}
    for r in RECORDS:
        c = r["config"]
        chosen.setdefault((c["div_val"], c["d_model"] == c["d_embed"]), r)
    return list(chosen.values())


# --- 2: parameter accounting ------------------------------------------------------------------


def test_param_counts_match_all_five_fields_for_all_records() -> None:
    wrong = {}
    for r in RECORDS:
        counts = gpt2_skeleton(r["config"]).param_counts()
        expected = {k: int(v) for k, v in r["params"].items()}
        if counts != expected:
            wrong[r["id"]] = (counts, expected)
    assert len(RECORDS) == 200
    assert not wrong, f"{len(wrong)} records differ: {wrong}"


@pytest.mark.parametrize("record", by_embedding_kind(), ids=lambda r: r["id"])
def test_built_model_counts_equal_skeleton_and_summary(record: dict[str, Any]) -> None:
    model = build_gpt2(record["config"], seed=0)
    counts = model.param_counts()
    assert counts == gpt2_skeleton(record["config"]).param_counts()
    unique = {id(p): p for p in model.parameters()}
    assert counts["total"] == sum(p.numel() for p in unique.values())
    summary = structural_summary("gpt2", record["config"])
    assert summary == {
        "n_layers": record["config"]["n_layer"],
        "hidden_size": record["config"]["d_model"],
        "params_total": counts["total"],
        "params_nonembedding": counts["nonembedding"],
    }


# --- 4: every architecture runs forward and backward ------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("start", range(0, 200, CHUNK), ids=lambda s: f"records{s}-{s + CHUNK - 1}")
def test_every_architecture_runs_forward_and_backward(start: int) -> None:
    ids = random_ids(start)
    failures = {}
    for record in RECORDS[start : start + CHUNK]:
        model = build_model("gpt2", record["config"], seed=start)
        seen: list[torch.Tensor] = []

        def keep(_m: torch.nn.Module, _i: Any, out: torch.Tensor, seen: list = seen) -> None:
            out.retain_grad()
            seen.append(out)

        (tap,) = taps(model, "embedding")
        handle = tap.register_forward_hook(keep)
        out = model(ids, labels=ids)
        handle.remove()
        assert out.loss is not None
        out.loss.backward()
        problems = []
        if out.hidden.shape != (B, T, record["config"]["d_model"]) or not out.loss.isfinite():
            problems.append(f"bad output {tuple(out.hidden.shape)} loss={out.loss.item()}")
        for i, lin in enumerate(model.mixer_linears()):
            if lin.weight.grad is None or not lin.weight.grad.abs().sum() > 0:
                problems.append(f"no gradient at c_attn {i}")
        if seen[0].grad is None or not seen[0].grad.abs().sum() > 0:
            problems.append("no gradient at the embedding tap")
        if problems:
            failures[record["id"]] = problems
    assert not failures, failures


# --- loss: the adaptive softmax is a normalised distribution, shifted by one ------------------


def full_log_probs(model: Gpt2Model, hidden: torch.Tensor) -> torch.Tensor:
    """Brute-force log p(token) for every token of the vocabulary, ``(N, V)``."""
    spec, sm, emb = model.spec, model.softmax, model.embed
    bounds = spec.cluster_bounds()

    def proj(i: int) -> torch.Tensor | None:
        if str(i) in sm.own_projs:
            return sm.own_projs[str(i)]
        return emb.proj(0 if spec.div_val == 1 else i)

    def table(i: int) -> torch.Tensor:
        lo, hi = bounds[i]
        return emb.tables[0].weight[lo:hi] if spec.div_val == 1 else emb.tables[i].weight

    def logits(i: int, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        p = proj(i)
        h = hidden if p is None else hidden @ p
        return h @ w.T + b

    s0 = bounds[0][1]
    head = logits(
        0, torch.cat([table(0), sm.cluster_weight]), torch.cat([sm.bias[:s0], sm.cluster_bias])
    ).log_softmax(-1)
    parts = [head[:, :s0]]
    for i, (lo, hi) in enumerate(bounds[1:], start=1):
        tail = logits(i, table(i), sm.bias[lo:hi]).log_softmax(-1)
        parts.append(head[:, s0 + i - 1 : s0 + i] + tail)
    return torch.cat(parts, dim=1)


@pytest.mark.parametrize("record", by_embedding_kind(), ids=lambda r: r["id"])
def test_loss_is_mean_next_token_nll_of_a_normalised_distribution(record: dict[str, Any]) -> None:
    model = build_gpt2(record["config"], seed=3)
    with torch.no_grad():  # random output biases make the check sensitive to cluster offsets
        model.softmax.bias.normal_(0, 1.0, generator=torch.Generator().manual_seed(0))
        model.softmax.cluster_bias.normal_(0, 1.0, generator=torch.Generator().manual_seed(1))
    ids = random_ids(0, (2, 12))
    labels = ids.clone()
    labels[0, 5] = -100
    with torch.no_grad():
        out = model(ids, labels=labels)
        logp = full_log_probs(model, out.hidden[:, :-1].reshape(-1, model.spec.d_model))
    assert logp.shape[1] == V
    torch.testing.assert_close(logp.logsumexp(-1), torch.zeros(len(logp)), atol=1e-4, rtol=0)
    target = labels[:, 1:].reshape(-1)
    keep = target != -100
    expected = -logp[keep].gather(1, target[keep, None]).mean()
    assert out.loss is not None
    torch.testing.assert_close(out.loss, expected, atol=1e-4, rtol=1e-5)
    assert model(ids).loss is None


def test_output_weights_are_tied_to_the_input_tables() -> None:
    model = build_gpt2(RECORDS[0]["config"], seed=0)  # div_val 4: tables per cluster
    ids = torch.full((1, 4), 7)  # input tokens only in the head cluster ...
    labels = torch.tensor([[7, 45000, 45001, 30000]])  # ... targets in the tail clusters
    out = model(ids, labels=labels)
    assert out.loss is not None
    out.loss.backward()
    tables = model.embed.tables
    assert tables[1].weight.grad is not None and tables[1].weight.grad.abs().sum() > 0
    assert tables[2].weight.grad is not None and tables[2].weight.grad.abs().sum() > 0
    assert not set(map(id, model.softmax.parameters())) & set(map(id, model.embed.parameters()))


# --- 5: taps ----------------------------------------------------------------------------------


@pytest.mark.parametrize("record", by_embedding_kind(), ids=lambda r: r["id"])
def test_taps_count_shape_order_and_content(record: dict[str, Any]) -> None:
    cfg = record["config"]
    model = build_gpt2(cfg, seed=0)
    d, n = cfg["d_model"], cfg["n_layer"]
    fired: dict[str, list[tuple[Any, torch.Tensor]]] = {k: [] for k in TAP_KINDS}
    qkv: list[torch.Tensor] = []
    handles = [
        tap.register_forward_hook(lambda m, _i, out: fired[m.kind].append((m, out.detach())))
        for kind in TAP_KINDS
        for tap in taps(model, kind)
    ]
    handles += [
        lin.register_forward_hook(lambda _m, _i, out: qkv.append(out.detach()))
        for lin in model.mixer_linears()
    ]
    model(random_ids(0))
    for h in handles:
        h.remove()
    assert {k: len(v) for k, v in fired.items()} == {
        "act": n,
        "head": n,
        "softmax": n,
        "embedding": 1,
    }
    for kind in TAP_KINDS:
        assert [tap for tap, _ in fired[kind]] == taps(model, kind)
    assert fired["embedding"][0][1].shape == (B, T, d)
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    for layer in range(n):
        head, soft, act = (fired[k][layer][1] for k in ("head", "softmax", "act"))
        assert torch.equal(head, qkv[layer][..., :d])  # query slice of the fused projection
        assert soft.shape == (B, cfg["n_head"][layer], T, T)
        torch.testing.assert_close(soft.sum(-1), torch.ones(soft.shape[:-1]))
        assert torch.all(soft[..., ~causal] == 0)
        assert act.shape == (B, T, cfg["d_inner"][layer])
    assert all(lin.weight.shape == (3 * d, d) for lin in model.mixer_linears())


# --- 6: seeds, modes, validation --------------------------------------------------------------


def test_same_seed_same_weights_other_seed_different() -> None:
    cfg = RECORDS[0]["config"]
    state = torch.random.get_rng_state()
    a = build_gpt2(cfg, seed=11).state_dict()
    b = build_gpt2(cfg, seed=11).state_dict()
    c = build_gpt2(cfg, seed=12).state_dict()
    assert torch.equal(state, torch.random.get_rng_state()), "global RNG was touched"
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    random_keys = [k for k in a if a[k].dim() > 1]
    assert random_keys and all(not torch.equal(a[k], c[k]) for k in random_keys)


def test_init_scales_follow_the_spec() -> None:
    cfg = next(r["config"] for r in RECORDS if r["config"]["d_model"] == 512)
    model = build_gpt2(cfg, seed=0)
    block = model.blocks[0]
    assert abs(block.attn.c_attn.weight.std().item() - 0.02) < 2e-3
    resid = 0.02 / math.sqrt(2 * cfg["n_layer"])
    assert abs(block.mlp.c_proj.weight.std().item() - resid) < 0.1 * resid
    assert abs(model.embed.projs[0].std().item() - 0.01) < 1e-3 if len(model.embed.projs) else True
    assert torch.all(block.attn.c_attn.bias == 0) and torch.all(block.ln_1.weight == 1)
    assert not model.training


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda c: c.pop("d_model"), "d_model"),
        (lambda c: c.update(n_head=[2]), "n_head"),
        (lambda c: c.update(d_inner="wide"), "d_inner"),
        (lambda c: c.update(n_head=[3] * c["n_layer"]), "n_head"),
        (lambda c: c.update(div_val=1.5), "div_val"),
        (lambda c: c.update(tie_weight=False), "tie_weight"),
    ],
)
def test_bad_config_raises_value_error_naming_the_field(mutate: Any, field: str) -> None:
    cfg = json.loads(json.dumps(RECORDS[0]["config"]))
    mutate(cfg)
    with pytest.raises(ValueError, match=field):
        build_gpt2(cfg, seed=0)


def test_dispatch() -> None:
    assert isinstance(build_model("gpt2", RECORDS[0]["config"], seed=0), Gpt2Model)
    assert isinstance(build_model("gpt2", RECORDS[0]["config"], builder="gpt2", seed=0), Gpt2Model)
    with pytest.raises(ValueError, match=r"'lpzero'.*valid: gpt2"):
        build_model("gpt2", RECORDS[0]["config"], builder="lpzero", seed=0)
