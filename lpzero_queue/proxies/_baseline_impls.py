"""Forward/backward passes and reductions behind the baseline proxies (see ``baselines.py``).

A :class:`ProxyRun` holds one (architecture, seed, batch, objective) and computes each kind of
pass at most once, lazily, each on its own freshly built model:

- the **gradient pass**: the model as built (eval mode, so dropout is off and the score is a
  deterministic function of architecture, seed and batch), one ``forward_loss`` and one
  ``backward``; forward hooks record the ``act``, ``head`` and ``softmax`` taps, every
  ``nn.Linear`` output (with its gradient) and the input of the final LayerNorm (the *readout*);
- the **synflow pass**: the model with every parameter replaced by its absolute value, run on a
  constant-token batch; ``R = sum(readout)`` is back-propagated (it modifies the weights, hence
  its own model). It runs in float32, not float64 as Tanaka et al. do against overflow: every
  block here is bounded by a LayerNorm, and the float64 pass took 16 s on the largest GPT-2
  (8 x 192); an overflow would show as a ``nonfinite`` score, never silently;
- the **GraSP pass**: Hessian-gradient product by double backward (its own model, since it needs a
  graph built with ``create_graph``).

The *readout* is the input of the model's last ``nn.LayerNorm`` in module order, which both
builders execute last (FlexiBERT: the last layer's feed-forward output norm; GPT-2: ``ln_f``).
It is used instead of the model output because the output of a LayerNorm with unit gain and zero
bias sums to exactly 0 over its features, so ``sum(output)`` has a zero gradient.

Every reduction accumulates in ``torch.float64``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from lpzero_queue.benchmarks.batches import InputBatch
from lpzero_queue.benchmarks.builders import build_model
from lpzero_queue.benchmarks.taps import taps
from lpzero_queue.proxies.objective import forward_loss
from lpzero_queue.proxies.outcomes import ProxyRejectedError

F64 = torch.float64
JACOB_EPS = 1e-5  # Mellor et al. / Abdelfattah et al. jacob_cov eigenvalue offset
GRAM_FLOOR = 0.0  # Gram eigenvalues are clamped here before sqrt (rounding can make them < 0)
SYNFLOW_TOKEN = 1  # constant token id of the synflow input (never a zeroed padding row)


def weight_params(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The "weights" of a model: unique parameters with ``ndim >= 2`` whose name is not ``bias``.

    Covers every Linear/Conv1d weight, embedding table and free projection matrix; excludes biases
    (also the ``(C, 1)`` bias of the separable convolution) and LayerNorm vectors.
    """
    seen: set[int] = set()
    out: list[tuple[str, nn.Parameter]] = []
    for name, p in model.named_parameters():
        if id(p) in seen or p.ndim < 2 or name.rsplit(".", 1)[-1] == "bias":
            continue
        seen.add(id(p))
        out.append((name, p))
    return out


def _final_layernorm(model: nn.Module) -> nn.LayerNorm:
    norms = [m for m in model.modules() if isinstance(m, nn.LayerNorm)]
    if not norms:
        raise ProxyRejectedError("model has no LayerNorm: the proxy readout is undefined")
    return norms[-1]


def _run_model(model: nn.Module, space: str, input_ids: Tensor, mask: Tensor) -> None:
    """Forward without a loss (FlexiBERT ``(ids, mask)``, GPT-2 ``(ids)``)."""
    if space == "flexibert":
        model(input_ids, mask)
    else:
        model(input_ids)


@contextmanager
def _hooks(handles: list[Any]) -> Iterator[None]:
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@dataclass
class GradPass:
    """What the gradient pass recorded (tensors are detached; grads None where unused)."""

    loss: float
    weights: list[tuple[str, Tensor, Tensor | None]]  # (name, W, dL/dW)
    mixer: list[tuple[Tensor, Tensor | None]]  # mixer_linears(): (W, dL/dW)
    act: list[tuple[Tensor, Tensor | None]]  # act taps: (a, dL/da), a (B, T, F)
    head: list[Tensor]  # head taps (B, T, C)
    softmax: list[Tensor]  # softmax taps (B, h, T, T) or (B, h, T, d) for LT
    linear_out: list[tuple[Tensor, Tensor | None]]  # every nn.Linear output and its grad
    jacobian: Tensor | None = None  # d sum(readout) / d embedding output, (B, T, H)


@dataclass
class SynflowPass:
    """Synflow's |W| and dR/d|W| for every weight tensor (grad None where unused)."""

    weights: list[tuple[str, Tensor, Tensor | None]]


@dataclass
class ProxyRun:
    """One architecture's proxy passes, each computed at most once on its own fresh model."""

    space: str
    config: Mapping[str, Any]
    builder: str | None
    seed: int
    batch: InputBatch
    objective: str
    want_jacobian: bool = False
    seconds: dict[str, float] = field(default_factory=dict)  # pass name -> wall seconds
    _cache: dict[str, Any] = field(default_factory=dict)

    def build(self) -> nn.Module:
        """A freshly built and initialised model (eval mode)."""
        return build_model(self.space, self.config, builder=self.builder, seed=self.seed)

    def _cached(self, name: str, compute: Callable[[], Any]) -> Any:
        if name not in self._cache:
            started = time.perf_counter()
            self._cache[name] = compute()
            self.seconds[name] = time.perf_counter() - started
        return self._cache[name]

    def grad_pass(self) -> GradPass:
        """Run (once) the gradient pass; see the module docstring."""
        return self._cached("grad", self._grad_pass)

    def synflow_pass(self) -> SynflowPass:
        """Run (once) the synflow pass; see the module docstring."""
        return self._cached("synflow", self._synflow_pass)

    def grasp_score(self) -> float:
        """Run (once) the GraSP pass and return its score."""
        return self._cached("grasp", self._grasp)

    def _grad_pass(self) -> GradPass:
        model = self.build()
        recording = [True]
        act: list[list[Any]] = []
        lin: list[list[Any]] = []
        head: list[Tensor] = []
        soft: list[Tensor] = []
        emb: list[Tensor] = []
        readout: list[Tensor] = []

        def with_grad(store: list[list[Any]]) -> Callable[..., None]:
            def hook(_m: nn.Module, _i: Any, out: Tensor) -> None:
                slot: list[Any] = [out.detach(), None]
                store.append(slot)
                if out.requires_grad:

                    def grad_hook(g: Tensor) -> None:
                        if recording[0]:
                            slot[1] = g.detach()

                    out.register_hook(grad_hook)

            return hook

        handles: list[Any] = [t.register_forward_hook(with_grad(act)) for t in taps(model, "act")]
        handles += [
            m.register_forward_hook(with_grad(lin))
            for m in model.modules()
            if isinstance(m, nn.Linear)
        ]
        handles += [
            t.register_forward_hook(lambda _m, _i, o: head.append(o.detach()))
            for t in taps(model, "head")
        ]
        handles += [
            t.register_forward_hook(lambda _m, _i, o: soft.append(o.detach()))
            for t in taps(model, "softmax")
        ]
        handles += [
            t.register_forward_hook(lambda _m, _i, o: emb.append(o))
            for t in taps(model, "embedding")
        ]
        handles.append(
            _final_layernorm(model).register_forward_hook(lambda _m, i, _o: readout.append(i[0]))
        )
        with _hooks(handles):
            loss = forward_loss(model, self.batch, objective=self.objective, seed=self.seed)
            jacobian = None
            if self.want_jacobian:
                if len(emb) != 1 or not readout:
                    raise ProxyRejectedError(
                        "model must have exactly one embedding tap for jacob_cov"
                    )
                recording[0] = False  # tensor hooks must keep the loss gradients only
                (jacobian,) = torch.autograd.grad(
                    readout[-1].sum(), emb[0], retain_graph=True
                )  # (B, T, H)
                recording[0] = True
            loss.backward()
        mixer_linears: list[nn.Linear] = model.mixer_linears()  # type: ignore[operator]
        return GradPass(
            loss=float(loss.detach()),
            weights=[(n, p.detach(), _grad(p)) for n, p in weight_params(model)],
            mixer=[(m.weight.detach(), _grad(m.weight)) for m in mixer_linears],
            act=[(a, g) for a, g in act],
            head=head,
            softmax=soft,
            linear_out=[(z, g) for z, g in lin],
            jacobian=None if jacobian is None else jacobian.detach(),
        )

    def _synflow_pass(self) -> SynflowPass:
        model = self.build()
        with torch.no_grad():
            for p in model.parameters():
                p.abs_()
        ids = torch.full_like(self.batch.input_ids, SYNFLOW_TOKEN)  # (B, T) constant token
        mask = torch.ones_like(self.batch.attention_mask)
        readout: list[Tensor] = []
        handle = _final_layernorm(model).register_forward_hook(
            lambda _m, i, _o: readout.append(i[0])
        )
        with _hooks([handle]):
            _run_model(model, self.space, ids, mask)
            readout[-1].sum().backward()  # R = 1^T readout
        return SynflowPass([(n, p.detach(), _grad(p)) for n, p in weight_params(model)])

    def _grasp(self) -> float:
        model = self.build()
        named = weight_params(model)
        params = [p for _, p in named]
        loss = forward_loss(model, self.batch, objective=self.objective, seed=self.seed)
        grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
        used = [(p, g) for p, g in zip(params, grads, strict=True) if g is not None]
        z = sum((g.detach() * g).sum() for _, g in used)  # g^T g with one side constant
        assert isinstance(z, Tensor)
        hg = torch.autograd.grad(z, [p for p, _ in used], allow_unused=True)  # H g per tensor
        total = torch.zeros((), dtype=F64)
        for (p, _), h in zip(used, hg, strict=True):
            if h is not None:
                total -= (p.detach().double() * h.double()).sum()
        return float(total)


def _grad(p: Tensor) -> Tensor | None:
    return None if p.grad is None else p.grad.detach()


# ---------------------------------------------------------------------------------------------
# Reductions (each returns a Python float computed in float64).


def _sum(values: Iterator[Tensor] | list[Tensor]) -> float:
    total = torch.zeros((), dtype=F64)
    for v in values:
        total += v.to(F64)
    return float(total)


def synflow(run: ProxyRun) -> float:
    """``sum_W sum(|W| * dR/d|W|)`` (weights without gradient add 0)."""
    sp = run.synflow_pass()
    return _sum((w.double() * g.double()).sum() for _, w, g in sp.weights if g is not None)


def logsynflow(run: ProxyRun) -> float:
    """``sum_W sum(log(1 + |W * dR/dW|))`` on the synflow pass."""
    sp = run.synflow_pass()
    return _sum(
        torch.log1p((w.double() * g.double()).abs()).sum()
        for _, w, g in sp.weights
        if g is not None
    )


def snip(run: ProxyRun) -> float:
    """``sum_W sum(|W * dL/dW|)`` over :func:`weight_params`."""
    gp = run.grad_pass()
    return _sum((w.double() * g.double()).abs().sum() for _, w, g in gp.weights if g is not None)


def grasp(run: ProxyRun) -> float:
    """``-sum_W sum(W * (H g)_W)`` with ``g = dL/dW`` and ``H`` the Hessian of the loss.

    ``H g`` is the gradient of ``z = sum_W sum(stop_grad(g) * g)`` (one double backward, as in
    Abdelfattah et al.'s code with a single split); W = :func:`weight_params` that get a gradient.
    """
    return run.grasp_score()


def fisher(run: ProxyRun) -> float:
    """``sum_linears sum_f 0.5 * mean_b (sum_t z[b,t,f] * dL/dz[b,t,f])^2``, z = Linear output.

    Every ``nn.Linear`` of the model (mixers, output blocks, feed-forwards; not the MLM head):
    Turner et al.'s channel Fisher with the sequence axis in place of the spatial axes.
    """
    gp = run.grad_pass()
    total = torch.zeros((), dtype=F64)
    for z, g in gp.linear_out:
        if g is None:
            continue
        zb = z.double().reshape(z.shape[0], -1, z.shape[-1])  # (B, T, F)
        gb = g.double().reshape(zb.shape)
        total += 0.5 * (zb * gb).sum(dim=1).pow(2).mean(dim=0).sum()
    return float(total)


def grad_norm(run: ProxyRun) -> float:
    """``sum_W ||dL/dW||_F`` over :func:`weight_params`."""
    gp = run.grad_pass()
    return _sum(torch.linalg.vector_norm(g.double()) for _, _, g in gp.weights if g is not None)


def jacob_cov(run: ProxyRun) -> float:
    """``-sum_i [log(l_i + 1e-5) + 1/(l_i + 1e-5)]``, l = eigenvalues of corrcoef(J).

    ``J`` (B, T*H) is the gradient of ``sum(readout)`` with respect to the embedding output, one
    row per sequence (Mellor et al. 2021 v1, as in Abdelfattah et al. 2021).
    """
    gp = run.grad_pass()
    if gp.jacobian is None:
        raise RuntimeError("jacobian was not recorded")
    J = gp.jacobian.double().reshape(gp.jacobian.shape[0], -1)  # (B, T*H)
    corr = torch.corrcoef(J)  # (B, B)
    eig = torch.linalg.eigvalsh(corr)
    return float(-(torch.log(eig + JACOB_EPS) + 1.0 / (eig + JACOB_EPS)).sum())


def attention_confidence(run: ProxyRun) -> float:
    """``sum_taps sum_h mean_{b,t} max_j P[b,h,t,j]`` over the ``softmax`` taps."""
    gp = run.grad_pass()
    return _sum(p.double().amax(dim=-1).mean(dim=(0, 2)).sum() for p in gp.softmax)


def head_confidence(run: ProxyRun) -> float:
    """``sum_taps mean_{b,t} max_c softmax_c(X[b,t,:])`` over the ``head`` taps."""
    gp = run.grad_pass()
    return _sum(x.double().softmax(dim=-1).amax(dim=-1).mean() for x in gp.head)


def head_importance(run: ProxyRun) -> float:
    """``sum_{W in mixer_linears} |sum(W * dL/dW)|`` (Taylor importance of masking W's output)."""
    gp = run.grad_pass()
    return _sum((w.double() * g.double()).sum().abs() for w, g in gp.mixer if g is not None)


def activation_distance(run: ProxyRun) -> float:
    """``logdet K``, ``K[i,j] = N - Hamming(c_i, c_j)``; c_i = (a > 0) of sequence i, all act taps.

    ``N`` counts every (tap, token, feature) unit of one sequence; GELU(x) > 0 exactly when x > 0,
    so the code is the ReLU code of Mellor et al. (NASWOT). A non-positive determinant gives NaN.
    """
    gp = run.grad_pass()
    if not gp.act:
        raise ProxyRejectedError("model has no act taps")
    B = gp.act[0][0].shape[0]
    K = torch.zeros((B, B), dtype=F64)
    for a, _ in gp.act:
        c = (a > 0).reshape(B, -1).float()  # (B, T*F); float32 counts are exact below 2^24
        K += (c @ c.T).double() + ((1 - c) @ (1 - c).T).double()
    sign, logabsdet = torch.linalg.slogdet(K)
    return float(logabsdet) if float(sign) > 0 else math.nan


def _nuclear(m: Tensor) -> Tensor:
    """Nuclear norm via the eigenvalues of the smaller Gram matrix (float64, clamped at 0)."""
    m = m.double().reshape(m.shape[0], -1)
    gram = m @ m.T if m.shape[0] <= m.shape[1] else m.T @ m
    return torch.linalg.eigvalsh(gram).clamp_min(GRAM_FLOOR).sqrt().sum()


def synaptic_diversity(run: ProxyRun) -> float:
    """``sum_{W in mixer_linears} ||W||_* * ||dL/dW||_*`` (nuclear norms)."""
    gp = run.grad_pass()
    return _sum(_nuclear(w) * _nuclear(g) for w, g in gp.mixer if g is not None)


def synaptic_saliency(run: ProxyRun) -> float:
    """``sum_{W in mixer_linears} sum(|W * dL/dW|)``."""
    gp = run.grad_pass()
    return _sum((w.double() * g.double()).abs().sum() for w, g in gp.mixer if g is not None)


def eznas(run: ProxyRun) -> float:
    """``sum_{act taps} std(a) * mean(|dL/da|)`` (population std over all elements)."""
    gp = run.grad_pass()
    return _sum(
        a.double().std(correction=0) * g.double().abs().mean() for a, g in gp.act if g is not None
    )
