"""The training loop of one job: resumable from checkpoints, deterministic, time-limited.

Everything a step depends on is a function of ``(seed, step)``: the batch
(:func:`~lpzero_queue.training.data.train_batch`), the dropout RNG (forked and seeded per step)
and the learning rate (linear warm-up then cosine decay, computed from the step). A checkpoint
holds the model, the optimizer state and the step, written atomically (temporary file, then
``os.replace``), so a job that resumes from one ends exactly where an uninterrupted job ends (on
the same device and thread count).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lpzero_queue.errors import LpzqError
from lpzero_queue.training.data import DATA_DESCRIPTION, train_batch, valid_batches
from lpzero_queue.training.targets import Target, build_target

__all__ = ["Hyperparameters", "TrainingTimeoutError", "train"]

_DROPOUT_STREAM = 0x54524E  # separates the per-step dropout seeds from the init seed


@dataclass(frozen=True)
class Hyperparameters:
    """How a job trains; stored with it (``training_jobs.hyperparameters``)."""

    steps: int = 300
    batch_size: int = 8
    seq_len: int = 64
    lr: float = 1e-3  # AdamW peak learning rate (tiny models tolerate a large one)
    warmup_fraction: float = 0.1  # linear warm-up over this fraction of the steps, then cosine
    weight_decay: float = 0.01
    grad_clip: float = 1.0  # max global gradient norm
    eval_batches: int = 16  # validation batches (fixed windows of the validation text)
    checkpoint_every: int = 50  # steps between checkpoints
    max_seconds: float = 3600.0  # stop (status timeout, checkpoint kept) past this much training

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Hyperparameters:
        """Validate a stored or user-given mapping.

        Raises:
            LpzqError: Unknown key or out-of-range value (one line).
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise LpzqError(
                f"unknown hyperparameter(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}"
            )
        hp = cls(**raw)
        for name in ("steps", "batch_size", "seq_len", "eval_batches", "checkpoint_every"):
            value = getattr(hp, name)
            if not isinstance(value, int) or value < 1:
                raise LpzqError(f"hyperparameter {name}: {value!r} is not a positive integer")
        if not 8 <= hp.seq_len <= 192:
            raise LpzqError(f"hyperparameter seq_len: {hp.seq_len} is not in 8..192")
        if not hp.lr > 0 or not 0 <= hp.warmup_fraction < 1 or not hp.max_seconds > 0:
            raise LpzqError("hyperparameters lr and max_seconds must be > 0, warmup in [0, 1)")
        return hp

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form."""
        return asdict(self)


class TrainingTimeoutError(Exception):
    """The job ran past ``max_seconds``; its last checkpoint is kept."""

    def __init__(self, step: int, seconds: float) -> None:
        super().__init__(f"timeout after {seconds:.0f} s at step {step}")
        self.step = step


def _lr(hp: Hyperparameters, step: int) -> float:
    warm = max(1, round(hp.warmup_fraction * hp.steps))
    if step < warm:
        return hp.lr * (step + 1) / warm
    progress = (step - warm) / max(1, hp.steps - warm)
    return hp.lr * 0.5 * (1 + math.cos(math.pi * progress))


def _step_seed(seed: int, step: int) -> int:
    return int(np.random.SeedSequence([seed, step, _DROPOUT_STREAM]).generate_state(1)[0])


def _save(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, device: str) -> dict[str, Any]:
    """Read a training checkpoint as tensors and plain values only (``weights_only``).

    Checkpoints live in a data directory that may be shared between machines; unpickling
    arbitrary objects from one would run whatever a crafted file holds.

    Raises:
        LpzqError: the file holds anything else (one line naming it; nothing of it is run).
    """
    import pickle

    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        reason = " ".join(str(exc).split())[:200]
        raise LpzqError(
            f"checkpoint {path} refused: not a tensors-only training checkpoint ({reason}); "
            "delete it to train from the start"
        ) from None
    if not isinstance(state, dict) or not {"model", "optim", "step", "recent"} <= set(state):
        raise LpzqError(f"checkpoint {path} refused: not a training checkpoint of lpzq")
    return state


@torch.no_grad()
def evaluate(target: Target, hp: Hyperparameters, device: str) -> tuple[float, int]:
    """Token-weighted mean validation loss over the fixed validation batches, and token count."""
    batches = valid_batches(
        target.tokenizer, n_batches=hp.eval_batches, batch_size=hp.batch_size, seq_len=hp.seq_len
    )
    target.module.eval()
    total, count = 0.0, 0
    for i, batch in enumerate(batches):
        loss, n = target.loss(target.module, batch.input_ids.to(device), i)
        total += float(loss) * n
        count += n
    target.module.train()
    return total / count, count


def train(
    spec: Mapping[str, Any],
    hp: Hyperparameters,
    seed: int,
    *,
    device: str = "cpu",
    checkpoint: Path | None = None,
    progress: Callable[[int, float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Train one job for ``hp.steps`` steps (resuming from ``checkpoint`` when it exists).

    Args:
        spec: The job's spec (see :mod:`lpzero_queue.training.targets`).
        hp: Hyper-parameters.
        seed: Model initialisation, batch order and dropout seed.
        device: ``cpu`` or ``cuda``.
        checkpoint: Where checkpoints go; None trains without.
        progress: Called with ``(step, last training loss)`` after every checkpoint and at the end.
        should_stop: Polled every step; True stops the loop (lost lease) by raising LpzqError.

    Returns:
        Metrics: ``valid_loss``, ``valid_ppl``, ``train_loss`` (mean of the last 10% of steps),
        ``steps``, ``resumed_from``, ``seconds``, ``device``, parameter counts and how the data
        and validation were chosen.

    Raises:
        TrainingTimeoutError: Past ``hp.max_seconds`` (a checkpoint is written first).
        LpzqError: Invalid spec, or ``should_stop`` said so.
    """
    started = time.perf_counter()
    target = build_target(spec, seed=seed)
    model = target.module.to(device)
    optim, params = _optimizer(model, hp)
    step, recent, resumed_from = _resume(checkpoint, model, optim, device)
    model.train()
    tail = max(1, hp.steps // 10)
    while step < hp.steps:
        if should_stop is not None and should_stop():
            raise LpzqError(f"training stopped at step {step}: the lease was lost")
        loss = _step(target, model, optim, params, hp, seed, step, device)
        step += 1
        if step > hp.steps - tail:
            recent.append(loss)
        elapsed = time.perf_counter() - started
        due = step % hp.checkpoint_every == 0 and step < hp.steps
        if checkpoint is not None and (due or elapsed > hp.max_seconds):
            _save(checkpoint, {"model": model.state_dict(), "optim": optim.state_dict(),
                               "step": step, "recent": recent})  # fmt: skip
            if progress is not None:
                progress(step, loss)
        if elapsed > hp.max_seconds and step < hp.steps:
            raise TrainingTimeoutError(step, elapsed)
    metrics = _metrics(target, hp, device, step, resumed_from, recent, started)
    if target.save_to:
        _save_pretrained(model, Path(target.save_to), metrics, spec, hp, seed)
    if progress is not None:
        progress(step, loss)
    return metrics


def _optimizer(
    model: torch.nn.Module, hp: Hyperparameters
) -> tuple[torch.optim.Optimizer, list[torch.nn.Parameter]]:
    """AdamW with weight decay on matrices only; the trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    optim = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": hp.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=hp.lr,
    )
    return optim, params


def _resume(
    checkpoint: Path | None,
    model: torch.nn.Module,
    optim: torch.optim.Optimizer,
    device: str,
) -> tuple[int, list[float], int | None]:
    """(step, recent losses, step resumed from) from ``checkpoint``, or a fresh start."""
    if checkpoint is None or not checkpoint.exists():
        return 0, [], None
    state = load_checkpoint(checkpoint, device)
    model.load_state_dict(state["model"])
    optim.load_state_dict(state["optim"])
    return state["step"], list(state["recent"]), state["step"]


def _step(
    target: Target,
    model: torch.nn.Module,
    optim: torch.optim.Optimizer,
    params: list[torch.nn.Parameter],
    hp: Hyperparameters,
    seed: int,
    step: int,
    device: str,
) -> float:
    """One optimiser step on the step's batch (seeded dropout); the training loss."""
    for group in optim.param_groups:
        group["lr"] = _lr(hp, step)
    ids = train_batch(
        target.tokenizer, seed=seed, step=step, batch_size=hp.batch_size, seq_len=hp.seq_len
    ).input_ids.to(device)  # (B, T)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_step_seed(seed, step))
        loss, _ = target.loss(model, ids, _step_seed(seed, step))
    optim.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, hp.grad_clip)
    optim.step()
    return float(loss.detach())


def _metrics(
    target: Target,
    hp: Hyperparameters,
    device: str,
    step: int,
    resumed_from: int | None,
    recent: list[float],
    started: float,
) -> dict[str, Any]:
    """Validation loss and perplexity, and how they were obtained."""
    valid_loss, valid_tokens = evaluate(target, hp, device)
    return {
        "valid_loss": valid_loss,
        "valid_ppl": math.exp(min(valid_loss, 700.0)),
        "train_loss": sum(recent) / len(recent) if recent else None,
        "steps": step,
        "resumed_from": resumed_from,
        "seconds": time.perf_counter() - started,
        "device": device,
        "valid_tokens": valid_tokens,
        "params": target.info,
        "data": DATA_DESCRIPTION,
        "objective": "mlm" if target.tokenizer == "flexibert" else "lm",
    }


def _save_pretrained(
    model: torch.nn.Module,
    out: Path,
    metrics: dict[str, Any],
    spec: Mapping[str, Any],
    hp: Hyperparameters,
    seed: int,
) -> None:
    """Write the model with ``save_pretrained`` into ``out`` atomically, with its provenance."""
    import json
    import shutil

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.to("cpu").save_pretrained(str(tmp))  # type: ignore[operator]
    provenance = {"spec": dict(spec), "hyperparameters": hp.to_dict(), "seed": seed, **metrics}
    (tmp / "lpzq_training.json").write_text(json.dumps(provenance, indent=2, default=str))
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
