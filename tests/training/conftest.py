"""Tiny training fixtures: the smallest GPT-2 and LLaMA models that still train on CPU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lpzero_queue.training.loop import Hyperparameters

# Few steps of tiny batches: a job takes a second or two on one core.
TINY_HP = Hyperparameters(steps=4, batch_size=2, seq_len=16, eval_batches=2, checkpoint_every=2)


def tiny_gpt2_config() -> dict[str, Any]:
    """A 1-layer GPT-2 of the benchmark's config format."""
    from lpzero_queue.training.spaces import SpaceScale, sample_architectures

    config = sample_architectures("gpt2", 4, seed=0, scale=SpaceScale(0.125, 2))[0]
    return {**config, "n_layer": 1, "n_head": [2], "d_inner": [64], "d_model": 16, "d_embed": 16}


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer LLaMA (hidden 32, intermediate 64) trained 2 steps, saved with save_pretrained."""
    from lpzero_queue.training.llama import tiny_llama_config
    from lpzero_queue.training.loop import train

    out = tmp_path_factory.mktemp("llama") / "model"
    config = tiny_llama_config(hidden=32, layers=2, heads=2, intermediate=64)
    spec = {"kind": "llama", "config": config, "save_to": str(out)}
    train(spec, Hyperparameters(steps=2, batch_size=2, seq_len=16, eval_batches=1), 0)
    return out
