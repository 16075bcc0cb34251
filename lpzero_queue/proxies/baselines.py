"""Hand-made zero-cost proxies to compare every searched proxy against (docs/method.md section 7).

Each entry of :data:`BASELINES` is a :class:`Baseline`: a name, its own direction ("higher": a
higher score predicts a better trained model), whether it runs a model, and the function. The
formulas (and the parameters they read) are in each function's docstring in
``_baseline_impls.py`` and summarised here:

=======================  ==========================================================================
name                     score
=======================  ==========================================================================
params                   ``params_total`` of ``structural_summary`` (no model run)
nonembedding_params      ``params_nonembedding``
n_layers                 ``n_layers``
layers_x_hidden          ``n_layers * hidden_size``
depth_then_width         ``n_layers * 1e4 + hidden_size``: depth first, width breaks its ties
depth_width_params       ``n_layers * 1e4 + hidden_size + params_total / 1e10``: then parameters
synflow                  ``sum_W sum(|W| * dR/d|W|)``; model with ``abs`` weights on a
                         constant-token batch, ``R = sum(readout)`` (Tanaka et al. 2020)
logsynflow               ``sum_W sum(log(1 + |W * dR/dW|))`` on the same pass (Cavagnero et al.)
snip                     ``sum_W sum(|W * dL/dW|)`` (Lee et al. 2019)
grasp                    ``-sum_W sum(W * H dL/dW)`` (Wang et al. 2020)
fisher                   ``sum_{Linear outputs z} sum_f 0.5 mean_b (sum_t z dL/dz)^2`` (Turner)
grad_norm                ``sum_W ||dL/dW||_F``
jacob_cov                ``-sum log(l + 1e-5) + 1/(l + 1e-5)``, l = eig(corrcoef(d readout/d emb))
attention_confidence     ``sum_{softmax taps, heads} mean_{b,t} max_j P`` (Serianni & Kalita 2023)
head_confidence          ``sum_{head taps} mean_{b,t} max_c softmax_c(X)``
head_importance          ``sum_{W in mixer_linears} |sum(W * dL/dW)|`` (Michel et al. 2019)
activation_distance      ``logdet(N - Hamming)`` of the FFN activations' sign codes (NASWOT)
synaptic_diversity       ``sum_{W in mixer_linears} ||W||_* ||dL/dW||_*`` (Zhou et al. 2022)
synaptic_saliency        ``sum_{W in mixer_linears} sum(|W * dL/dW|)``
eznas                    ``sum_{act taps} std(a) * mean(|dL/da|)`` (EZNAS-style statistic)
=======================  ==========================================================================

``W`` ranges over the *weights*: unique parameters with ``ndim >= 2`` not named ``bias`` (every
Linear/Conv1d weight, embedding table and projection matrix). ``L`` is the objective of
:func:`~lpzero_queue.proxies.objective.forward_loss`. The *readout* is the input of the model's last
LayerNorm (see ``_baseline_impls``).

Adaptations to token models, stated once:

- **synflow**: Tanaka's all-ones input becomes one constant token (id 1) at every position, so the
  score does not depend on the batch content (only its shape). Replacing the embedding output by
  ones would give exactly 0 on GPT-2: its pre-LayerNorm blocks map a constant feature vector to 0.
  ``R`` sums the readout, not the output: a unit-gain LayerNorm output sums to 0.
- **jacob_cov** uses the same readout (the Jacobian of a LayerNorm output sum is 0).
- **head_importance** is Michel et al.'s ``|dL/dxi|`` for a mask ``xi`` scaling a whole mixer Linear
  (``dL/dxi = sum(W * dL/dW)``), i.e. at projection rather than per-head granularity, so it needs no
  model-specific head split.
- **attention_confidence** reads every ``softmax`` tap: for linear-transform (LT) mixers that is the
  softmax of the transform output over head features (taps.py), as LPZero's ``softmax`` input.
- **eznas**: the evolved EZNAS programs were never released as code; this is a statistic of the
  same kind (per-layer activation spread times mean gradient magnitude), not their program.
- Models run in eval mode (no dropout), also for the ``lpzero`` builder, so that a score is a
  deterministic function of architecture, seed and batch.

Warning: FlexiBERT's ``ones`` objective is ``sum`` of a LayerNorm output, whose gradient is 0
analytically; every gradient-based proxy then reads rounding noise (about 1e-9 against 1e-3 with
``mlm``). Prefer ``objective="mlm"`` for FlexiBERT.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

from lpzero_queue.proxies import _baseline_impls as impl
from lpzero_queue.proxies.outcomes import is_proxy_outcome

__all__ = [
    "BASELINES",
    "Baseline",
    "BaselineResult",
    "score_baseline",
    "score_baselines",
]

Status = Literal["ok", "nonfinite", "error"]


@dataclass(frozen=True)
class Baseline:
    """A named hand-made proxy.

    Attributes:
        name: Registry key.
        direction: ``"higher"`` when a higher score predicts a better trained model.
        needs_model: False for the structural baselines (no model is built or run).
        description: One line: the formula.
        fn: ``fn(run)`` for model proxies (an ``impl.ProxyRun``), ``fn(summary)`` for structural
            ones (the ``structural_summary`` dict); returns a float.
    """

    name: str
    direction: Literal["higher", "lower"]
    needs_model: bool
    description: str
    fn: Callable[[Any], float]

    def __post_init__(self) -> None:
        if not self.name or not self.name.isidentifier():
            raise ValueError(f"baseline name must be an identifier, got {self.name!r}")
        if self.direction not in ("higher", "lower"):
            raise ValueError(f"{self.name}: direction must be 'higher' or 'lower'")
        if not callable(self.fn):
            raise ValueError(f"{self.name}: fn is not callable")


@dataclass(frozen=True)
class BaselineResult:
    """Outcome of one baseline on one architecture.

    Attributes:
        score: The score when ``status == "ok"``, else None.
        status: ``"ok"``, ``"nonfinite"`` (NaN or infinite score) or ``"error"``.
        error: ``"ExceptionType: message"`` when ``status == "error"``, else None.
        seconds: Stand-alone cost: the proxy's own reduction plus the full time of every shared
            pass it read (so seconds of proxies sharing a pass do not add up).
    """

    score: float | None
    status: Status
    error: str | None
    seconds: float


def _structural(key: str) -> Callable[[Mapping[str, int]], float]:
    def fn(summary: Mapping[str, int]) -> float:
        if key == "layers_x_hidden":
            return float(summary["n_layers"] * summary["hidden_size"])
        # Lexicographic keys as one float64: widths stay below 1e4 and parameter counts below
        # 1e10, so each component only breaks the ties of the one before it.
        if key == "depth_then_width":
            return float(summary["n_layers"] * 10_000 + summary["hidden_size"])
        if key == "depth_width_params":
            return float(
                summary["n_layers"] * 10_000
                + summary["hidden_size"]
                + summary["params_total"] / 1e10
            )
        return float(summary[key])

    fn.__name__ = key
    return fn


def _registry() -> dict[str, Baseline]:
    structural = [
        ("params", "params_total", "parameters of the built model (unique tensors)"),
        ("nonembedding_params", "params_nonembedding", "parameters outside the embeddings"),
        ("n_layers", "n_layers", "number of layers"),
        ("layers_x_hidden", "layers_x_hidden", "n_layers * hidden_size"),
        ("depth_then_width", "depth_then_width", "n_layers, then hidden size (lexicographic)"),
        ("depth_width_params", "depth_width_params", "n_layers, hidden size, then parameters"),
    ]
    model = [
        ("synflow", impl.synflow, "sum |W| dR/d|W|, abs weights, constant-token input"),
        ("logsynflow", impl.logsynflow, "sum log(1 + |W dR/dW|) on the synflow pass"),
        ("snip", impl.snip, "sum |W dL/dW| over all weights"),
        ("grasp", impl.grasp, "-sum W (H dL/dW) over all weights"),
        ("fisher", impl.fisher, "sum over Linear outputs of 0.5 mean_b (sum_t z dL/dz)^2"),
        ("grad_norm", impl.grad_norm, "sum of Frobenius norms of dL/dW over all weights"),
        ("jacob_cov", impl.jacob_cov, "-sum log(l+eps)+1/(l+eps), l = eig corrcoef(J)"),
        ("attention_confidence", impl.attention_confidence, "sum_heads mean max_j softmax"),
        ("head_confidence", impl.head_confidence, "sum_head taps mean max_c softmax_c(head)"),
        ("head_importance", impl.head_importance, "sum_mixer linears |sum W dL/dW|"),
        ("activation_distance", impl.activation_distance, "NASWOT logdet of FFN sign codes"),
        ("synaptic_diversity", impl.synaptic_diversity, "sum_mixer ||W||_* ||dL/dW||_*"),
        ("synaptic_saliency", impl.synaptic_saliency, "sum_mixer |W dL/dW|"),
        ("eznas", impl.eznas, "sum_act taps std(a) mean|dL/da|"),
    ]
    out = {
        name: Baseline(name, "higher", False, desc, _structural(key))
        for name, key, desc in structural
    }
    out |= {name: Baseline(name, "higher", True, desc, fn) for name, fn, desc in model}
    return out


BASELINES: Mapping[str, Baseline] = MappingProxyType(_registry())
"""Every baseline by name (read-only)."""


def _check_names(names: Iterable[str]) -> list[str]:
    names = list(names)
    unknown = [n for n in names if n not in BASELINES]
    if unknown:
        raise ValueError(
            f"unknown baseline(s) {', '.join(map(repr, unknown))}; valid: {', '.join(BASELINES)}"
        )
    return names


def _run(
    space: str,
    config: Mapping[str, Any],
    builder: str | None,
    seed: int,
    batch: Any,
    objective: str | None,
    want_jacobian: bool,
) -> impl.ProxyRun:
    from lpzero_queue.proxies.objective import resolve_objective

    if batch.space != space:
        raise ValueError(f"batch is for {batch.space!r}, architecture space is {space!r}")
    return impl.ProxyRun(
        space=space,
        config=config,
        builder=builder,
        seed=seed,
        batch=batch,
        objective=resolve_objective(space, objective),
        want_jacobian=want_jacobian,
    )


def score_baseline(
    name: str,
    space: str,
    config: Mapping[str, Any],
    *,
    builder: str | None = None,
    seed: int,
    batch: Any,
    objective: str | None = None,
) -> float:
    """Score one architecture with one baseline on a freshly built model.

    Args:
        name: A key of :data:`BASELINES`.
        space: ``"flexibert"`` or ``"gpt2"``.
        config: The benchmark record's config.
        builder: Builder name (None: the space's default). Structural baselines use its summary.
        seed: Seed of the model initialisation (and of the objective's randomness).
        batch: An :class:`~lpzero_queue.benchmarks.batches.InputBatch` of ``space``.
        objective: Objective name (None: the space's default; see the module warning).

    Returns:
        The score as a Python float (float64); may be NaN or infinite.

    Raises:
        ValueError: Unknown baseline (the message lists the valid names), space, builder,
            objective, or a batch of another space.
    """
    (name,) = _check_names([name])
    baseline = BASELINES[name]
    if not baseline.needs_model:
        from lpzero_queue.benchmarks.builders import structural_summary

        return float(baseline.fn(structural_summary(space, config, builder)))
    run = _run(space, config, builder, seed, batch, objective, name == "jacob_cov")
    return float(baseline.fn(run))


def score_baselines(
    names: Iterable[str],
    space: str,
    config: Mapping[str, Any],
    *,
    builder: str | None = None,
    seed: int,
    batch: Any,
    objective: str | None = None,
) -> dict[str, BaselineResult]:
    """Score one architecture with several baselines; one failing proxy never stops the others.

    Proxies that only read the gradient pass share one fresh model and one forward/backward;
    synflow and logsynflow share one (weight-modifying) model; GraSP has its own.

    Args:
        names: Keys of :data:`BASELINES` (checked before anything runs).
        space: See :func:`score_baseline`.
        config: See :func:`score_baseline`.
        builder: See :func:`score_baseline`.
        seed: See :func:`score_baseline`.
        batch: See :func:`score_baseline`.
        objective: See :func:`score_baseline`.

    Returns:
        Name -> :class:`BaselineResult`, in the order of ``names``.

    Raises:
        ValueError: Unknown baseline names, or invalid space/objective/batch (before any proxy
            runs); errors inside a proxy become ``status="error"`` results instead.
    """
    names = _check_names(names)
    run = _run(space, config, builder, seed, batch, objective, "jacob_cov" in names)
    summary: Mapping[str, int] | None = None
    results: dict[str, BaselineResult] = {}
    for name in names:
        baseline = BASELINES[name]
        before = dict(run.seconds)
        started = time.perf_counter()
        try:
            if baseline.needs_model:
                score = float(baseline.fn(run))
            else:
                if summary is None:
                    from lpzero_queue.benchmarks.builders import structural_summary

                    summary = structural_summary(space, config, builder)
                score = float(baseline.fn(summary))
        except Exception as exc:  # one proxy's declared failure is a result, not a crash
            if not is_proxy_outcome(exc):
                raise  # out of memory, a device error or a bug: nothing is stored
            seconds = time.perf_counter() - started
            results[name] = BaselineResult(None, "error", f"{type(exc).__name__}: {exc}", seconds)
            continue
        own = time.perf_counter() - started
        # Add back the shared passes this proxy read but another proxy paid for.
        shared = sum(run.seconds[k] for k in _passes_of(name) if k in before)
        seconds = own + shared
        if math.isfinite(score):
            results[name] = BaselineResult(score, "ok", None, seconds)
        else:
            results[name] = BaselineResult(None, "nonfinite", None, seconds)
    return results


def _passes_of(name: str) -> tuple[str, ...]:
    if name in ("synflow", "logsynflow"):
        return ("synflow",)
    if name == "grasp":
        return ("grasp",)
    return ("grad",) if BASELINES[name].needs_model else ()
