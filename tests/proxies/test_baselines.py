"""Tests for the baseline zero-cost proxies (tiny 2 x 16 batches; the whole file is CPU-cheap)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest

from lpzero_queue.benchmarks.batches import InputBatch, make_batch
from lpzero_queue.benchmarks.builders import structural_summary
from lpzero_queue.benchmarks.records import load_shipped
from lpzero_queue.proxies.baselines import (
    BASELINES,
    Baseline,
    BaselineResult,
    score_baseline,
    score_baselines,
)

REQUIRED = [
    "params",
    "nonembedding_params",
    "n_layers",
    "layers_x_hidden",
    "synflow",
    "logsynflow",
    "snip",
    "grasp",
    "fisher",
    "grad_norm",
    "jacob_cov",
    "attention_confidence",
    "head_confidence",
    "head_importance",
    "activation_distance",
    "synaptic_diversity",
    "synaptic_saliency",
    "eznas",
]
B, T = 2, 16


pytestmark = pytest.mark.usefixtures("one_thread")


def _flexibert_mixed() -> dict[str, Any]:
    """The first FlexiBERT record whose layers use SA, LT and DSC together."""
    for rec in load_shipped("flexibert").records:
        ops = {layer["operation_type"] for layer in rec.config["encoder_layers"]}
        if ops == {"SA", "LT", "DSC"}:
            return rec.config
    raise AssertionError("no mixed FlexiBERT record")


def _flexibert_small() -> dict[str, Any]:
    """A 2-layer, hidden-128 FlexiBERT record with a linear-transform layer."""
    for rec in load_shipped("flexibert").records:
        layers = rec.config["encoder_layers"]
        if (
            rec.config["hidden_size"] == 128
            and len(layers) == 2
            and any(layer["operation_type"] == "LT" for layer in layers)
        ):
            return rec.config
    raise AssertionError("no small FlexiBERT record")


def _gpt2_small() -> dict[str, Any]:
    recs = load_shipped("gpt2-wt103").records
    return min(recs, key=lambda r: r.config["n_layer"] * r.config["d_model"]).config


# (id, space, config factory, builder, objective)
CASES = [
    ("flexibert-mixed-faithful-mlm", "flexibert", _flexibert_mixed, None, "mlm"),
    ("flexibert-small-lpzero-ones", "flexibert", _flexibert_small, "lpzero", None),
    ("gpt2-small", "gpt2", _gpt2_small, None, None),
]


def _batch(space: str, seed: int = 0) -> InputBatch:
    return make_batch(space, seed=seed, batch_size=B, seq_len=T)


@pytest.fixture(scope="module", params=CASES, ids=[c[0] for c in CASES])
def scored(request: pytest.FixtureRequest) -> tuple[tuple[Any, ...], dict[str, BaselineResult]]:
    """Every baseline on one case, computed twice (for determinism); returns (case, first)."""
    _, space, make, builder, objective = request.param
    config = make()
    kwargs = {"builder": builder, "seed": 0, "batch": _batch(space), "objective": objective}
    first = score_baselines(REQUIRED, space, config, **kwargs)
    second = score_baselines(REQUIRED, space, config, **kwargs)
    for name in REQUIRED:
        assert first[name].score == second[name].score, f"{name} is not deterministic"
    return (space, config, builder, objective), first


def test_registry_has_every_required_baseline_with_a_direction() -> None:
    assert set(REQUIRED) <= set(BASELINES)
    for name, baseline in BASELINES.items():
        assert baseline.name == name
        assert baseline.direction in ("higher", "lower")
        assert baseline.description
    with pytest.raises(TypeError):
        BASELINES["x"] = BASELINES["params"]  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        BASELINES["params"].direction = "lower"  # type: ignore[misc]
    with pytest.raises(ValueError, match="direction"):
        Baseline("bad", "up", False, "", lambda s: 0.0)  # type: ignore[arg-type]


def test_every_baseline_is_finite_and_deterministic(
    scored: tuple[tuple[Any, ...], dict[str, BaselineResult]],
) -> None:
    _, results = scored
    assert list(results) == REQUIRED
    for name, r in results.items():
        assert r.status == "ok", f"{name}: {r.status} {r.error}"
        assert isinstance(r.score, float) and math.isfinite(r.score), name
        assert r.seconds >= 0


def test_trivial_baselines_equal_the_structural_summary(
    scored: tuple[tuple[Any, ...], dict[str, BaselineResult]],
) -> None:
    (space, config, builder, _), results = scored
    s = structural_summary(space, config, builder)
    assert results["params"].score == s["params_total"]
    assert results["nonembedding_params"].score == s["params_nonembedding"]
    assert results["n_layers"].score == s["n_layers"]
    assert results["layers_x_hidden"].score == s["n_layers"] * s["hidden_size"]


def test_gradient_proxies_are_not_noise_with_a_real_objective(
    scored: tuple[tuple[Any, ...], dict[str, BaselineResult]],
) -> None:
    (space, _, _, objective), results = scored
    if space == "flexibert" and objective != "mlm":
        pytest.skip("FlexiBERT 'ones' objective: gradients are rounding noise by construction")
    assert results["grad_norm"].score is not None and results["grad_norm"].score > 1e-3


@pytest.mark.parametrize("name", ["synflow", "jacob_cov", "activation_distance"])
def test_single_score_matches_the_shared_pass(name: str) -> None:
    config = _flexibert_small()
    batch = _batch("flexibert")
    many = score_baselines([name, "snip"], "flexibert", config, seed=3, batch=batch)
    one = score_baseline(name, "flexibert", config, seed=3, batch=batch)
    assert one == many[name].score


@pytest.mark.parametrize("space", ["flexibert", "gpt2"])
def test_synflow_ignores_the_batch_content(space: str) -> None:
    config = _flexibert_small() if space == "flexibert" else _gpt2_small()
    a = score_baseline("synflow", space, config, seed=0, batch=_batch(space, 0))
    b = score_baseline("synflow", space, config, seed=0, batch=_batch(space, 1))
    assert _batch(space, 0) != _batch(space, 1)
    assert a == b


def test_snip_changes_with_the_seed() -> None:
    config, batch = _flexibert_small(), _batch("flexibert")
    a = score_baseline("snip", "flexibert", config, seed=0, batch=batch, objective="mlm")
    b = score_baseline("snip", "flexibert", config, seed=1, batch=batch, objective="mlm")
    assert a != b


def test_unknown_name_lists_the_valid_ones() -> None:
    batch = _batch("gpt2")
    with pytest.raises(ValueError, match="synflow") as info:
        score_baseline("nope", "gpt2", _gpt2_small(), seed=0, batch=batch)
    assert "'nope'" in str(info.value)
    with pytest.raises(ValueError, match="unknown baseline"):
        score_baselines(["snip", "nope"], "gpt2", _gpt2_small(), seed=0, batch=batch)


def test_batch_of_another_space_is_refused() -> None:
    with pytest.raises(ValueError, match="batch is for"):
        score_baseline("snip", "gpt2", _gpt2_small(), seed=0, batch=_batch("flexibert"))


def test_a_failing_proxy_becomes_an_error_result(monkeypatch: pytest.MonkeyPatch) -> None:
    from lpzero_queue.proxies import _baseline_impls

    def boom(self: Any) -> float:
        raise RuntimeError("no graph")

    monkeypatch.setattr(_baseline_impls.ProxyRun, "grasp_score", boom)
    batch = _batch("gpt2")
    out = score_baselines(["grasp", "n_layers"], "gpt2", _gpt2_small(), seed=0, batch=batch)
    assert out["grasp"].status == "error" and out["grasp"].score is None
    assert out["grasp"].error == "RuntimeError: no graph"
    assert out["n_layers"].status == "ok"
