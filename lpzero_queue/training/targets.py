"""What a training job trains: a model, its tokenizer and its loss, built from the job's spec.

Spec kinds (the ``spec`` column of ``training_jobs``, plain JSON):

* ``{"kind": "arch", "space": "gpt2" | "flexibert", "config": {...}}``: a benchmark architecture,
  built by :func:`lpzero_queue.benchmarks.build_model`; GPT-2 trains on the next-token loss of its
  adaptive softmax, FlexiBERT on the masked-LM loss of an ELECTRA-generator head (BERT masking,
  15% of tokens).
* ``{"kind": "llama", "config": {...}, "save_to": "DIR"}``: a ``LlamaForCausalLM`` from scratch on
  the next-token loss; the trained model is written to ``save_to`` (``save_pretrained``).
* ``{"kind": "subnet", "model_path": "DIR", "widths": [...], "ranks": [...], "alpha": 16}``: a
  sub-network of a LLaMA model (:func:`~lpzero_queue.training.llama.apply_subnet`); only the
  adapters train.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import torch
from torch import Tensor, nn

from lpzero_queue.errors import LpzqError

__all__ = ["SPEC_KINDS", "Target", "build_target", "lm_loss"]

SPEC_KINDS: Final = ("arch", "llama", "subnet")

# (model, input_ids (B, T), mask seed) -> (mean loss over predicted tokens, number of them)
LossFn = Callable[[nn.Module, Tensor, int], tuple[Tensor, int]]


@dataclass
class Target:
    """A model ready to train, with how to compute its loss."""

    module: nn.Module
    tokenizer: str  # "gpt2" | "flexibert"
    loss: LossFn
    info: dict[str, Any] = field(default_factory=dict)  # parameter counts etc., stored in metrics
    save_to: str | None = None  # llama pretraining: where the final model goes


def lm_loss(model: nn.Module, ids: Tensor, _seed: int) -> tuple[Tensor, int]:
    """Next-token loss of a model called as ``model(ids, labels=ids)`` (it shifts inside)."""
    out = model(ids, labels=ids)
    return out.loss, ids.shape[0] * (ids.shape[1] - 1)


def _mlm_loss(model: nn.Module, ids: Tensor, seed: int) -> tuple[Tensor, int]:
    from lpzero_queue.benchmarks.batches import TOKENIZERS, InputBatch, mlm_mask

    cpu = ids.cpu()
    batch = InputBatch(
        "flexibert", seed, cpu.shape[0], cpu.shape[1], TOKENIZERS["flexibert"], cpu,
        torch.ones_like(cpu), "",
    )  # fmt: skip
    corrupted, labels = mlm_mask(batch, seed=seed)
    _, loss = model(corrupted.to(ids.device), None, labels.to(ids.device))
    return loss, int((labels != -100).sum())


def _count(module: nn.Module) -> dict[str, int]:
    unique = {id(p): p for p in module.parameters()}.values()
    return {
        "active": sum(p.numel() for p in unique),
        "trainable": sum(p.numel() for p in unique if p.requires_grad),
    }


def _require(spec: Mapping[str, Any], key: str) -> Any:
    if key not in spec:
        raise LpzqError(f"training spec of kind {spec.get('kind')!r} misses {key!r}")
    return spec[key]


def build_target(spec: Mapping[str, Any], *, seed: int) -> Target:
    """Build the model of a job spec (CPU, train mode, weights drawn from ``seed``).

    Raises:
        LpzqError: Unknown kind or missing field (one line naming it and the valid kinds).
    """
    kind = spec.get("kind")
    if kind == "arch":
        from lpzero_queue.benchmarks.builders import build_model

        space = _require(spec, "space")
        model = build_model(space, _require(spec, "config"), seed=seed)
        if space == "flexibert":
            from lpzero_queue.benchmarks.flexibert import FlexiBertForMaskedLM

            head = FlexiBertForMaskedLM(model, seed=seed)  # type: ignore[arg-type]
            return Target(head, "flexibert", _mlm_loss, _count(head))
        return Target(model, "gpt2", lm_loss, _count(model))
    if kind == "llama":
        from lpzero_queue.training.llama import build_llama, count_params

        model = build_llama(dict(_require(spec, "config")), seed=seed)
        return Target(model, "gpt2", lm_loss, count_params(model), save_to=spec.get("save_to"))
    if kind == "subnet":
        from lpzero_queue.training.llama import apply_subnet, count_params, load_llama

        model = load_llama(_require(spec, "model_path"))
        apply_subnet(
            model,
            _require(spec, "widths"),
            _require(spec, "ranks"),
            alpha=float(spec.get("alpha", 16.0)),
            seed=seed,
        )
        return Target(model, "gpt2", lm_loss, count_params(model))
    raise LpzqError(f"unknown training spec kind {kind!r}; valid: {', '.join(SPEC_KINDS)}")
