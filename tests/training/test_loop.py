"""The training loop: data split, determinism, resume from a checkpoint, time limit, both losses."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from lpzero_queue.errors import LpzqError
from lpzero_queue.training.data import token_stream, train_batch, valid_batches
from lpzero_queue.training.loop import Hyperparameters, TrainingTimeoutError, train
from tests.training.conftest import TINY_HP, tiny_gpt2_config


def test_split_is_fixed_and_disjoint() -> None:
    train_ids, valid_ids = token_stream("gpt2", "train"), token_stream("gpt2", "valid")
    assert 0.05 < valid_ids.size / (train_ids.size + valid_ids.size) < 0.15
    a = train_batch("gpt2", seed=3, step=7, batch_size=2, seq_len=16).input_ids
    b = train_batch("gpt2", seed=3, step=7, batch_size=2, seq_len=16).input_ids
    c = train_batch("gpt2", seed=3, step=8, batch_size=2, seq_len=16).input_ids
    assert a.equal(b) and not a.equal(c)
    first = valid_batches("gpt2", n_batches=2, batch_size=2, seq_len=16)
    assert np.array_equal(first[0].input_ids[0].numpy(), valid_ids[:16])
    bert = valid_batches("flexibert", n_batches=1, batch_size=2, seq_len=16)[0].input_ids
    assert bert[:, 0].tolist() == [101, 101] and bert[:, -1].tolist() == [102, 102]


def test_gpt2_resumes_from_checkpoint_to_the_same_result(tmp_path: Path) -> None:
    spec = {"kind": "arch", "space": "gpt2", "config": tiny_gpt2_config()}
    whole = train(spec, TINY_HP, 0)
    ckpt = tmp_path / "job.pt"
    calls = {"n": 0}

    def stop_after_checkpoint() -> bool:
        calls["n"] += 1
        return calls["n"] > 3  # steps 0, 1, 2 run; checkpoint at step 2; stop before step 3

    with pytest.raises(LpzqError, match="lease was lost"):
        train(spec, TINY_HP, 0, checkpoint=ckpt, should_stop=stop_after_checkpoint)
    assert ckpt.exists()
    resumed = train(spec, TINY_HP, 0, checkpoint=ckpt)
    assert resumed["resumed_from"] == 2 and whole["resumed_from"] is None
    assert resumed["valid_loss"] == pytest.approx(whole["valid_loss"], rel=1e-6)
    assert resumed["valid_ppl"] == pytest.approx(np.exp(whole["valid_loss"]))
    assert whole["params"]["active"] == whole["params"]["trainable"] > 0


def test_flexibert_trains_on_masked_lm() -> None:
    from lpzero_queue.training.spaces import SpaceScale, sample_architectures

    config = sample_architectures("flexibert", 4, seed=1, scale=SpaceScale(0.125, 2))[0]
    hp = dataclasses.replace(TINY_HP, steps=2)
    metrics = train({"kind": "arch", "space": "flexibert", "config": config}, hp, 0)
    assert metrics["objective"] == "mlm" and np.isfinite(metrics["valid_loss"])


def test_time_limit_stops_with_a_checkpoint(tmp_path: Path) -> None:
    spec = {"kind": "arch", "space": "gpt2", "config": tiny_gpt2_config()}
    hp = dataclasses.replace(TINY_HP, max_seconds=1e-6)
    with pytest.raises(TrainingTimeoutError, match="at step 1"):
        train(spec, hp, 0, checkpoint=tmp_path / "t.pt")
    assert (tmp_path / "t.pt").exists()


def test_hyperparameters_are_validated() -> None:
    with pytest.raises(LpzqError, match="unknown hyperparameter"):
        Hyperparameters.from_dict({"stepz": 3})
    with pytest.raises(LpzqError, match="seq_len"):
        Hyperparameters.from_dict({"seq_len": 500})
    with pytest.raises(LpzqError, match="unknown training spec kind"):
        train({"kind": "nope"}, TINY_HP, 0)


class _Payload:
    """Unpickling this runs code: it touches a marker file (what a crafted checkpoint could do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def test_a_crafted_pickle_checkpoint_is_refused_not_run(tmp_path: Path) -> None:
    import torch

    spec = {"kind": "arch", "space": "gpt2", "config": tiny_gpt2_config()}
    marker, ckpt = tmp_path / "ran", tmp_path / "job.pt"
    torch.save({"model": {}, "optim": {}, "step": 1, "recent": [_Payload(marker)]}, ckpt)
    with pytest.raises(LpzqError, match=r"checkpoint .*job\.pt refused: not a tensors-only"):
        train(spec, TINY_HP, 0, checkpoint=ckpt)
    assert not marker.exists()
