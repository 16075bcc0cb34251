"""Proxy inputs: one forward and one backward pass per architecture yield all six inputs.

docs/method.md section 2: for one (architecture config, builder, init seed, batch, objective) the
model is built, run forward with hooks on its :class:`~lpzero_queue.benchmarks.taps.Tap` markers,
and backward once through the objective's scalar. That single pass gives

- ``act``, ``head``, ``softmax``: the outputs of the taps of that kind, in module order;
- ``weight``, ``grad``: the weights of the Linears of the *linear scope* and their ``.grad`` after
  the backward: ``mixer`` (default) takes the token-mixing Linears (``mixer_linears()``, as
  docs/method.md section 2 defines them); ``all`` takes every ``nn.Linear`` whose weight received a
  gradient, in module order (what the published GPT-2 scoring code gathered);
- ``jacobs``: the gradient of the objective w.r.t. the ``embedding`` tap output.

Every stored tensor is detached, contiguous, cloned (never a view into the model) and cast to a
storage dtype; hooks are removed even when the pass fails. The result is keyed by
:class:`InputsKey` so that :mod:`lpzero_queue.proxies.cache` can keep it for any number of
expressions (the published code recomputed it for every candidate).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import torch
from torch import Tensor, nn

from lpzero_queue.proxies.objective import forward_loss, resolve_objective
from lpzero_queue.proxies.operators import INPUT_NAMES
from lpzero_queue.proxies.outcomes import ProxyRejectedError

if TYPE_CHECKING:
    from lpzero_queue.benchmarks.batches import InputBatch

__all__ = [
    "DEFAULT_BATCH",
    "LINEAR_SCOPES",
    "STORAGE_DTYPES",
    "TRAIN_MODE_BUILDERS",
    "InputsKey",
    "ProxyInputs",
    "compute_inputs",
    "extract_inputs",
    "inputs_key",
    "resolve_linear_scope",
]

# (batch_size, seq_len) per space, from scripts/batch_shape.py (seeded sample, init seed 0, batch
# seed 0, default builder and objective; Kendall tau of 6 proxies incl. both LPZero expressions).
# FlexiBERT (60 archs, mlm): 4x64, 8x64, 8x128, 16x128 all agree with the largest measured shape
# (16x128) to |delta tau| <= 0.04 (all archs) / 0.03 (within depth), far below the ~0.09 standard
# error of tau on 60 archs; 8x128 is the smallest shape within 0.015 of 16x128 on every proxy
# (4x64: within 0.031) at half its cost (~29 MB of inputs per arch). The default is 4x64, the
# smallest shape within noise: a search evaluates ~1000 expressions on every cached architecture,
# and 4x64 inputs are ~8x smaller than 8x128 (evaluation ~3x faster, extraction ~4x faster on 2
# cores), which is what brings the default search within its time budget. GPT-2 (30 archs, lm):
# 4x192 agrees with the published 16x192
# to |delta tau| <= 0.028 (all archs) and 0.029 (within depth) on every proxy, at ~1/2 the time
# and ~1/3 of the input bytes (100 vs 325 MB per arch).
DEFAULT_BATCH: Final[dict[str, tuple[int, int]]] = {"flexibert": (4, 64), "gpt2": (4, 192)}

# Which Linears feed `weight`/`grad`: the token-mixing ones (docs/method.md) or every Linear with a
# gradient (what the published GPT-2 code gathered). Measured: the published GPT-2 proxy ranks
# GPT-2's 150 held-out architectures (4x192, lm) at Kendall 0.651 with `mixer` and 0.904 with `all`
# (published: 0.886), so `all` is GPT-2's default. FlexiBERT keeps the `mixer` of docs/method.md: a
# default search found the same held-out figures with either (its best proxies read head/act).
LINEAR_SCOPES: Final = ("mixer", "all")
DEFAULT_LINEAR_SCOPE: Final[dict[str, str]] = {"flexibert": "mixer", "gpt2": "all"}

STORAGE_DTYPES: Final = (torch.float32, torch.float16, torch.bfloat16)
# The published FlexiBERT proxy runs the lpzero model with dropout active; everything else runs in
# eval mode (deterministic without an RNG).
TRAIN_MODE_BUILDERS: Final[frozenset[tuple[str, str]]] = frozenset({("flexibert", "lpzero")})
_DROPOUT_STREAM: Final = 0x44524F50  # "DROP": separates the dropout RNG from the init generator
_TAP_INPUTS: Final = ("act", "head", "softmax")


@dataclass(frozen=True)
class InputsKey:
    """Identity of one extraction: everything that determines the six input lists."""

    space: str  # "flexibert" | "gpt2"
    config_hash: str  # records.config_hash(space, config)
    builder: str  # resolved builder name
    seed: int  # init seed (also seeds dropout and the MLM objective)
    batch_hash: str  # InputBatch.content_hash
    objective: str  # resolved objective name
    linear_scope: str = "mixer"  # which Linears feed weight/grad (LINEAR_SCOPES)

    @property
    def digest(self) -> str:
        """sha256 hex of the key's canonical JSON (sorted keys, no whitespace)."""
        text = json.dumps(dataclasses.asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ProxyInputs:
    """The six proxy inputs of one architecture.

    Attributes:
        key: What was computed.
        tensors: Read-only mapping input name -> tuple of tensors (module order).
        seconds: Wall time of the build + forward + backward + extraction.
    """

    key: InputsKey
    tensors: Mapping[str, tuple[Tensor, ...]]
    seconds: float

    def __post_init__(self) -> None:
        if not isinstance(self.tensors, MappingProxyType):
            frozen = {name: tuple(ts) for name, ts in self.tensors.items()}
            object.__setattr__(self, "tensors", MappingProxyType(frozen))

    @property
    def nbytes(self) -> int:
        """Bytes held by the stored tensors."""
        return sum(t.numel() * t.element_size() for ts in self.tensors.values() for t in ts)

    @property
    def dtype(self) -> torch.dtype:
        """Storage dtype of the tensors (all share one)."""
        return next(t.dtype for ts in self.tensors.values() for t in ts)


def resolve_linear_scope(space: str, scope: str | None) -> str:
    """The linear scope to use: ``scope``, or the space's default when None.

    Raises:
        ValueError: An unknown scope, naming the valid ones.
    """
    if scope is None:
        return DEFAULT_LINEAR_SCOPE.get(space, "mixer")
    if scope not in LINEAR_SCOPES:
        raise ValueError(
            f"unknown linear scope {scope!r}; expected one of: {', '.join(LINEAR_SCOPES)}"
        )
    return scope


def inputs_key(
    space: str,
    config: Mapping[str, Any],
    *,
    builder: str | None,
    seed: int,
    batch: InputBatch,
    objective: str | None = None,
    linear_scope: str | None = None,
) -> InputsKey:
    """Build the :class:`InputsKey` of an extraction (builder, objective and scope resolved)."""
    from lpzero_queue.benchmarks.builders import resolve_builder
    from lpzero_queue.benchmarks.records import config_hash

    if batch.space != space:
        raise ValueError(f"batch is for {batch.space!r}, architecture for {space!r}")
    cfg = dict(config)
    if space == "gpt2" and isinstance(cfg.get("config"), Mapping):
        cfg = dict(cfg["config"])  # a whole GPT-2 record: hash its config
    if space == "flexibert":
        cfg = {k: cfg[k] for k in ("hidden_size", "encoder_layers") if k in cfg}
    return InputsKey(
        space=space,
        config_hash=config_hash(space, cfg),
        builder=resolve_builder(space, builder),
        seed=seed,
        batch_hash=batch.content_hash,
        objective=resolve_objective(space, objective),
        linear_scope=resolve_linear_scope(space, linear_scope),
    )


def _store(t: Tensor, dtype: torch.dtype) -> Tensor:
    """Detached, contiguous copy in ``dtype`` that shares no memory with ``t``."""
    return t.detach().to(dtype=dtype, memory_format=torch.contiguous_format, copy=True)


def _dropout_seed(seed: int) -> int:
    return int(np.random.SeedSequence([seed, _DROPOUT_STREAM]).generate_state(1)[0])


@contextmanager
def _rng_for(train: bool, seed: int) -> Iterator[None]:
    """Fork the global CPU RNG and seed it for dropout (train mode); no-op in eval mode.

    Only the CPU generator is seeded (``torch.manual_seed`` would reseed every CUDA generator
    too, outside the fork): the models' dropout draws its masks there on every device
    (:class:`~lpzero_queue.benchmarks.dropout.HostDrawnDropout`), so the masks are a function of
    the seed alone.
    """
    if not train:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(_dropout_seed(seed))
        yield


class _Hooks:
    """Forward hooks on a model's taps: tap outputs stored, the embedding output's grad kept.

    Stores the outputs of the ``act``/``head``/``softmax`` taps (in module order) as they are
    computed, and keeps the live ``embedding`` tap output so that its gradient can be read after
    the backward pass. :meth:`remove` takes every hook off and drops the graph-holding tensors.
    """

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype
        self.captured: dict[str, list[Tensor]] = {kind: [] for kind in _TAP_INPUTS}
        self.embedded: list[Tensor] = []  # the live embedding-tap output (grad retained)
        self.handles: list[Any] = []

    def register(self, model: nn.Module) -> None:
        """Hook every tap of ``model`` (undone by :meth:`remove`, also after a partial failure)."""
        from lpzero_queue.benchmarks.taps import taps

        for kind in _TAP_INPUTS:
            self.handles += [
                tap.register_forward_hook(self._keep(kind)) for tap in taps(model, kind)
            ]
        self.handles += [
            tap.register_forward_hook(self._retain) for tap in taps(model, "embedding")
        ]

    def _keep(self, kind: str) -> Any:
        def hook(_module: nn.Module, _args: Any, output: Tensor) -> None:
            self.captured[kind].append(_store(output, self.dtype))

        return hook

    def _retain(self, _module: nn.Module, _args: Any, output: Tensor) -> None:
        output.retain_grad()
        self.embedded.append(output)

    def jacobians(self) -> tuple[Tensor, ...]:
        """The gradient of the objective w.r.t. each embedding tap output (after backward)."""
        jacobs = []
        for t in self.embedded:
            if t.grad is None:
                raise ProxyRejectedError("the embedding tap output received no gradient")
            jacobs.append(_store(t.grad, self.dtype))
        return tuple(jacobs)

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.embedded.clear()  # drop the graph-holding tensor


def _scope_linears(model: nn.Module, linear_scope: str) -> list[nn.Linear]:
    """The Linears whose weights feed ``weight``/``grad`` (before the backward pass)."""
    if linear_scope not in LINEAR_SCOPES:
        raise ValueError(f"linear scope must be one of {LINEAR_SCOPES}, got {linear_scope!r}")
    if linear_scope == "mixer":
        return list(model.mixer_linears())  # type: ignore[operator]
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


def _weights_and_grads(
    linears: list[nn.Linear], linear_scope: str, dtype: torch.dtype
) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
    """(weights, grads) of the scope's Linears, read after the backward pass."""
    if linear_scope == "all":  # Linears outside the loss's graph have no gradient
        linears = [lin for lin in linears if lin.weight.grad is not None]
    grads = []
    for i, lin in enumerate(linears):
        if lin.weight.grad is None:
            raise ProxyRejectedError(f"mixer linear {i} received no gradient")
        grads.append(_store(lin.weight.grad, dtype))
    return tuple(_store(lin.weight, dtype) for lin in linears), tuple(grads)


def extract_inputs(
    model: nn.Module,
    batch: InputBatch,
    *,
    objective: str,
    seed: int,
    train: bool = False,
    dtype: torch.dtype = torch.float32,
    linear_scope: str = "mixer",
) -> dict[str, tuple[Tensor, ...]]:
    """Run one forward and one backward pass of ``model`` and read all six inputs.

    The model's gradients are cleared before and after; its train/eval mode is restored; every
    hook is removed (also on error). Grads are real (no ``torch.no_grad``).

    Args:
        model: A model from :func:`lpzero_queue.benchmarks.build_model` (has ``mixer_linears``).
        batch: Input batch of the model's space.
        objective: Resolved objective name (see :mod:`lpzero_queue.proxies.objective`).
        seed: Seeds the objective's randomness and, in train mode, dropout.
        train: Run in train mode (dropout active) with a forked, seeded RNG.
        dtype: Storage dtype, one of :data:`STORAGE_DTYPES`.
        linear_scope: ``"mixer"`` (the token-mixing Linears) or ``"all"`` (every ``nn.Linear``
            whose weight receives a gradient) feed ``weight`` and ``grad``.

    Returns:
        Input name -> tuple of tensors, for every name in ``INPUT_NAMES``.

    Raises:
        ValueError: Unsupported dtype or linear scope.
        ProxyRejectedError: The model has no taps of a kind, or a mixer weight received no gradient.
    """
    if dtype not in STORAGE_DTYPES:
        raise ValueError(f"storage dtype must be one of {STORAGE_DTYPES}, got {dtype}")
    linears = _scope_linears(model, linear_scope)
    hooks = _Hooks(dtype)
    was_training = model.training
    try:
        hooks.register(model)
        model.zero_grad(set_to_none=True)
        model.train(train)
        with _rng_for(train, seed):
            loss = forward_loss(model, batch, objective=objective, seed=seed)
            loss.backward()
        weights, grads = _weights_and_grads(linears, linear_scope, dtype)
        out: dict[str, tuple[Tensor, ...]] = {
            "act": tuple(hooks.captured["act"]),
            "head": tuple(hooks.captured["head"]),
            "softmax": tuple(hooks.captured["softmax"]),
            "grad": grads,
            "weight": weights,
            "jacobs": hooks.jacobians(),
        }
    finally:
        hooks.remove()
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    empty = [name for name in INPUT_NAMES if not out[name]]
    if empty:
        raise ProxyRejectedError(f"the model produced no {', '.join(empty)} input(s)")
    return out


def compute_inputs(
    space: str,
    config: Mapping[str, Any],
    *,
    builder: str | None,
    seed: int,
    batch: InputBatch,
    objective: str | None = None,
    dtype: torch.dtype = torch.float32,
    device: str = "cpu",
    linear_scope: str | None = None,
) -> ProxyInputs:
    """Build one architecture, run it once forward and backward, and return its six inputs.

    The ``lpzero`` FlexiBERT builder runs in train mode (dropout active, as published) with the
    dropout RNG forked and seeded from ``seed``; all others run in eval mode. The model is freed
    before returning. The same arguments give bit-identical tensors.

    Args:
        space: ``"flexibert"`` or ``"gpt2"``.
        config: The benchmark record or config.
        builder: Builder name, or None for the space's default.
        seed: Init seed (also seeds dropout and the MLM masking/head).
        batch: Input batch of the same space.
        objective: Objective name, or None for the space's default.
        dtype: Storage dtype: float32 (default), float16 or bfloat16.
        device: Where the model runs and the inputs stay ("cpu" or "cuda"). Weights are drawn on
            the CPU from the seeded generator first, so every device starts from the same model.
        linear_scope: Which Linears feed ``weight``/``grad`` (None: the space's default).

    Returns:
        The inputs with their key and the wall time spent.

    Raises:
        ValueError: On an unknown space/builder/objective, invalid config or dtype, or a batch of
            another space.
    """
    from lpzero_queue.benchmarks.builders import build_model

    started = time.perf_counter()
    key = inputs_key(
        space,
        config,
        builder=builder,
        seed=seed,
        batch=batch,
        objective=objective,
        linear_scope=linear_scope,
    )
    model = build_model(space, config, builder=key.builder, seed=seed)
    if device != "cpu":
        model = model.to(device)
        batch = dataclasses.replace(
            batch,
            input_ids=batch.input_ids.to(device),
            attention_mask=batch.attention_mask.to(device),
        )
    try:
        tensors = extract_inputs(
            model,
            batch,
            objective=key.objective,
            seed=seed,
            train=(space, key.builder) in TRAIN_MODE_BUILDERS,
            dtype=dtype,
            linear_scope=key.linear_scope,
        )
    finally:
        del model
    return ProxyInputs(key=key, tensors=tensors, seconds=time.perf_counter() - started)
