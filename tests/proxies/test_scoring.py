"""score_unit: a model that cannot run is a stored result; running out of memory is not."""

from __future__ import annotations

from typing import Any

import pytest

from lpzero_queue.proxies import inputs as inputs_module
from lpzero_queue.proxies.cache import InputCache
from lpzero_queue.proxies.scoring import (
    ArchRef,
    ScoringSetup,
    WorkUnit,
    device_label,
    score_unit,
)

CONFIG = {
    "hidden_size": 128,
    "encoder_layers": [
        {
            "operation_type": "SA",
            "operation_parameter": "SDP",
            "num_operation_heads": 2,
            "feed_forward_dimension": 256,
            "num_feed_forward": 1,
        }
    ],
}


def _unit() -> WorkUnit:
    setup = ScoringSetup.resolve("flexibert", batch_size=2, seq_len=16)
    return WorkUnit(setup, 0, (ArchRef(1, "a", CONFIG),), ("sum(mean(act), l1_norm(head))",))


def _raise(exc: BaseException) -> Any:
    def compute(*_args: Any, **_kwargs: Any) -> Any:
        raise exc

    return compute


def test_a_model_that_cannot_run_is_an_error_row(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inputs_module, "compute_inputs", _raise(RuntimeError("shape mismatch")))
    rows = score_unit(_unit(), InputCache(max_bytes=2**20))
    assert [(r.status, r.error) for r in rows] == [("error", "RuntimeError: shape mismatch")]


@pytest.mark.parametrize(
    "exc", [MemoryError("host"), type("OutOfMemoryError", (RuntimeError,), {})()]
)
def test_running_out_of_memory_fails_the_unit(
    monkeypatch: pytest.MonkeyPatch, exc: BaseException
) -> None:
    monkeypatch.setattr(inputs_module, "compute_inputs", _raise(exc))
    with pytest.raises(type(exc)):
        score_unit(_unit(), InputCache(max_bytes=2**20))


@pytest.mark.parametrize(
    "exc", [TypeError("a bug in a builder"), KeyError("c_attn"), RuntimeError("CUDA error: busy")]
)
def test_a_bug_or_a_device_error_fails_the_unit(
    monkeypatch: pytest.MonkeyPatch, exc: BaseException
) -> None:
    monkeypatch.setattr(inputs_module, "compute_inputs", _raise(exc))
    with pytest.raises(type(exc)):
        score_unit(_unit(), InputCache(max_bytes=2**20))


def test_rows_record_the_device() -> None:
    unit = WorkUnit(
        _unit().setup, 0, _unit().archs, ("sum(mean(act), l1_norm(head))",), ("n_layers",)
    )
    rows = score_unit(unit, InputCache(max_bytes=2**24))
    assert [(r.proxy, r.status, r.device) for r in rows] == [
        ("sum(mean(act), l1_norm(head))", "ok", "cpu"),
        ("n_layers", "ok", "cpu"),
    ]
    assert device_label("cpu") == "cpu"
