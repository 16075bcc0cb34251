"""Helpers of the CLI tests: a small imported GPT-2 benchmark with a short context."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tests.conftest import run_lpzq


def one_process(env: dict[str, str]) -> dict[str, str]:
    """``env`` scoring in the lpzq process itself: no scoring processes to start (seconds each
    on a busy machine) for a handful of tiny architectures."""
    return {**env, "LPZQ_LOCAL_PROCESSES": "1"}


def import_short_gpt2(
    env: dict[str, str],
    tmp_path: Path,
    *,
    name: str = "short",
    n: int = 8,
    tgt_len: int = 32,
    seed: int = 0,
) -> None:
    """Import ``n`` tiny GPT-2 architectures trained (so the file says) with ``tgt_len``.

    The ground truth is a noisy function of depth and width, so correlations are defined.
    """
    from lpzero_queue.training.spaces import SpaceScale, sample_architectures

    configs = sample_architectures(
        "gpt2", n, seed=seed, scale=SpaceScale(width_scale=0.125, max_layers=3)
    )
    rng = np.random.default_rng(seed)
    records = [
        {
            "id": f"{name}-{i}",
            "config": {**config, "tgt_len": tgt_len},
            "valid_ppl": 4000.0 / (config["n_layer"] * config["d_model"]) + rng.uniform(0, 5),
        }
        for i, config in enumerate(configs)
    ]
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(records))
    out = run_lpzq(
        "bench", "import", str(path), "--name", name, "--space", "gpt2",
        "--metric", "valid_ppl", "--lower-is-better", env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
