"""The stacked evaluation path equals the reference per-tensor loop on real extracted inputs."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from lpzero_queue.proxies import _stacked, operators
from lpzero_queue.proxies._stacked import StackedList
from lpzero_queue.proxies.expression import (
    LPZERO_FLEXIBERT,
    LPZERO_GPT2,
    Branch,
    EvalResult,
    Expression,
    evaluate_many,
    parse_expression,
)
from lpzero_queue.proxies.operators import BINARY_OPS, INPUT_NAMES, UNARY_OPS, UnaryOp

pytestmark = pytest.mark.usefixtures("one_thread")


def random_expressions(n: int, seed: int) -> list[Expression]:
    """Chains of 0 to 4 unary operators, both reductions, the published proxies."""
    rng = np.random.default_rng(seed)
    unary, binary = sorted(UNARY_OPS), sorted(BINARY_OPS)
    exprs = [parse_expression(LPZERO_GPT2), parse_expression(LPZERO_FLEXIBERT)]
    while len(exprs) < n:
        left, right = (
            Branch(str(rng.choice(INPUT_NAMES)), tuple(rng.choice(unary, int(rng.integers(0, 5)))))
            for _ in range(2)
        )
        reduce = "total" if rng.random() < 0.5 else "mean"
        exprs.append(Expression(str(rng.choice(binary)), left, right, reduce))
    return exprs


def assert_same_results(fast: list[EvalResult], slow: list[EvalResult]) -> int:
    """Statuses identical, scores within 1e-5 relative; returns how many needed an abs margin."""
    near_zero = 0
    for f, s in zip(fast, slow, strict=True):
        assert f.status == s.status, (f, s)
        if s.status != "ok":
            continue
        assert f.score is not None and s.score is not None
        if not math.isclose(f.score, s.score, rel_tol=1e-5):
            # Scores that are 0 up to rounding (e.g. mean(normalize(x))) differ in their noise.
            assert abs(f.score - s.score) <= 1e-12, (f, s)
            near_zero += 1
    return near_zero


def test_stacked_equals_reference_on_real_inputs(real_inputs: dict[str, Any]) -> None:
    exprs = random_expressions(300, seed=0)
    near_zero = 0
    for inputs in real_inputs.values():
        before = {k: [t.clone() for t in ts] for k, ts in inputs.items()}
        fast = evaluate_many(exprs, inputs)
        slow = evaluate_many(exprs, inputs, stacked=False)
        near_zero += assert_same_results(fast, slow)
        assert sum(r.status == "ok" for r in fast) > len(exprs) // 2
        for k, ts in inputs.items():  # never modified by either path
            assert all(torch.equal(a, b) for a, b in zip(ts, before[k], strict=True))
    assert near_zero < len(exprs)  # the margin is the exception, not the rule


@pytest.mark.parametrize("name", sorted(UNARY_OPS))
def test_each_operator_stacked_equals_per_tensor(name: str, real_inputs: dict[str, Any]) -> None:
    op = UNARY_OPS[name]
    for inputs in real_inputs.values():
        for input_name, tensors in inputs.items():
            stacked = StackedList.from_tensors(tensors)
            assert stacked is not None
            for _ in range(2):  # twice: the second application acts on the op's own output
                stacked = stacked.apply(op)
                tensors = [op.fn(t) for t in tensors]
                want = torch.stack([t.mean() for t in tensors])
                got = stacked.means()
                ok = torch.isclose(got, want, rtol=1e-9, atol=1e-12) | (got.isnan() & want.isnan())
                assert bool(ok.all()), (name, input_name)


def test_groups_follow_shapes_and_scalars_merge() -> None:
    tensors = [torch.ones(2, 3), torch.ones(4), torch.full((2, 3), 2.0), torch.ones(4)]
    stacked = StackedList.from_tensors(tensors)
    assert stacked is not None and stacked.n == 4
    assert [(p.tolist(), tuple(s.shape)) for p, s in stacked.groups] == [
        ([0, 2], (2, 2, 3)),
        ([1, 3], (2, 4)),
    ]
    assert all(s.dtype == torch.float64 for _, s in stacked.groups)
    reduced = stacked.apply(UNARY_OPS["mean"])
    assert len(reduced.groups) == 1 and reduced.means().tolist() == [1.0, 1.0, 2.0, 1.0]
    assert StackedList.from_tensors([torch.ones(2), torch.empty(0)]) is None  # left to the loop


def test_groups_are_bounded_in_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_stacked, "MAX_GROUP_BYTES", 2 * 8 * 6)  # two (2, 3) float64 tensors
    tensors = [torch.full((2, 3), float(i)) for i in range(5)] + [torch.ones(40)]
    stacked = StackedList.from_tensors(tensors)
    assert stacked is not None
    assert [p.tolist() for p, _ in stacked.groups] == [[0, 1], [2, 3], [4], [5]]
    assert stacked.apply(UNARY_OPS["square"]).means().tolist() == [0.0, 1.0, 4.0, 9.0, 16.0, 1.0]


def test_operator_without_stacked_form_runs_per_tensor(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, ...]] = []

    def centre(x: torch.Tensor) -> torch.Tensor:  # same_shape: needs the whole tensor
        calls.append(tuple(x.shape))
        x = x.to(torch.float64)
        return x - x.amax()

    monkeypatch.setitem(operators._UNARY, "centre", UnaryOp("centre", centre, "", "same_shape"))
    assert UNARY_OPS["centre"].stacked is None
    inputs = {"act": [torch.arange(3.0), torch.arange(4.0), torch.arange(3.0) * 2],
              "grad": [torch.ones(2, 2)]}  # fmt: skip
    e = Expression("sum", Branch("act", ("centre", "square")), Branch("grad"))
    [fast] = evaluate_many([e], inputs)
    assert len(calls) == 3  # once per tensor
    [slow] = evaluate_many([e], inputs, stacked=False)
    assert fast == slow and fast.score == pytest.approx(5 / 3 + 1)  # one pair: mean([4, 1, 0]) + 1


def test_empty_tensor_keeps_the_published_error() -> None:
    inputs = {"act": [torch.ones(3), torch.empty(0)], "grad": [torch.ones(2)] * 2}
    texts = ("sum(frobenius_norm(act), grad)", "sum(abs(act), grad)", "sum(grad, grad)")
    exprs = [parse_expression(t) for t in texts]
    fast, slow = evaluate_many(exprs, inputs), evaluate_many(exprs, inputs, stacked=False)
    assert fast == slow
    assert [r.status for r in fast] == ["error", "nonfinite", "ok"]
