"""The packed engine: architectures packed together, the branch memo, error attribution."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from lpzero_queue.proxies import _engine
from lpzero_queue.proxies._engine import evaluate_archs
from lpzero_queue.proxies.expression import evaluate_many, parse_expression
from tests.proxies.test_expression_stacked import (
    assert_same_results,
    random_expressions,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_packed_archs_equal_one_at_a_time_and_the_reference(real_inputs: dict[str, Any]) -> None:
    """Same-space architectures packed into shared groups give each its own scores."""
    exprs = random_expressions(120, seed=1)
    for space in ("flexibert", "gpt2-wt103"):
        archs = [v for k, v in real_inputs.items() if k.startswith(space)]
        packed = evaluate_archs(exprs, archs, pack_bytes=1 << 40)
        for inputs, got in zip(archs, packed, strict=True):
            assert_same_results(got, evaluate_many(exprs, inputs))
            assert_same_results(got, evaluate_many(exprs, inputs, stacked=False))


def test_memo_gives_bit_identical_results_without_recomputing(
    real_inputs: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    inputs = real_inputs["flexibert[0]"]
    exprs = random_expressions(40, seed=2)
    memo: dict[Any, Any] = {}
    first = evaluate_many(exprs, inputs, memo=memo)
    assert memo  # filled with canonical branches
    walks: list[int] = []
    real_walk = _engine._walk
    monkeypatch.setattr(_engine, "_walk", lambda *a: walks.append(1) or real_walk(*a))
    again = evaluate_many(exprs, inputs, memo=memo)
    assert again == first  # every branch from the memo: bit for bit
    assert walks == []  # and nothing computed
    more = evaluate_many(
        [*exprs, parse_expression("sum(mean(act), l1_norm(head))")], inputs, memo=memo
    )
    assert more[:-1] == first and len(walks) > 0  # only the new branches were walked


def test_errors_belong_to_the_architecture_that_caused_them(real_inputs: dict[str, Any]) -> None:
    good = real_inputs["flexibert[0]"]
    broken = {k: v for k, v in good.items() if k != "jacobs"}  # one input missing
    exprs = [
        parse_expression("sum(mean(jacobs), mean(act))"),
        parse_expression("sum(mean(act), l1_norm(head))"),
    ]
    ok, bad = evaluate_archs(exprs, [good, broken], pack_bytes=1 << 40)
    assert [r.status for r in ok] == ["ok", "ok"]
    assert bad[0].status == "error" and "jacobs" in (bad[0].error or "")
    assert bad[1] == ok[1]


def test_an_operator_failing_on_one_architecture_fails_only_there(
    real_inputs: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from lpzero_queue.proxies import operators

    def picky(x: torch.Tensor) -> torch.Tensor:  # per tensor: raises on one arch's shapes only
        if x.shape[-1] == 7:
            raise ValueError("no 7s")
        return x.to(torch.float64) * 2

    a = {"act": (torch.ones(3, 5),), "head": (torch.ones(2, 5),)}
    b = {"act": (torch.ones(3, 7),), "head": (torch.ones(2, 5),)}
    op = operators.UnaryOp("picky_test", picky, "none", "same_shape")
    monkeypatch.setitem(operators._UNARY, "picky_test", op)
    e = parse_expression("sum(mean(picky_test(act)), mean(head))")
    ra, rb = evaluate_archs([e], [a, b], pack_bytes=1 << 40)
    assert ra[0].status == "ok" and ra[0].score == pytest.approx(3.0)
    assert rb[0].status == "error" and "no 7s" in (rb[0].error or "")


def test_an_operator_with_a_bug_raises_instead_of_an_error_result(
    real_inputs: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from lpzero_queue.proxies import operators

    def buggy(x: torch.Tensor) -> torch.Tensor:
        raise TypeError("a bug, not a property of the proxy")

    op = operators.UnaryOp("buggy_test", buggy, "none", "same_shape")
    monkeypatch.setitem(operators._UNARY, "buggy_test", op)
    good = real_inputs["flexibert[0]"]
    e = parse_expression("sum(mean(buggy_test(act)), mean(head))")
    memo: dict[Any, Any] = {}
    with pytest.raises(TypeError, match="a bug"):
        evaluate_archs([e], [good], memos=[memo])
    assert all(not isinstance(v, Exception) for v in memo.values())  # never memoised


def test_device_independent_grouping_defaults() -> None:
    """CPU: one architecture per pack (memory); other devices pack up to DEVICE_GROUP_BYTES."""
    small = {"act": (torch.ones(2, 3),)}
    assert _engine._packs([small, small, small], 0) == [[0], [1], [2]]
    assert _engine._packs([small, small, small], 1 << 20) == [[0, 1, 2]]


def test_memoised_errors_keep_no_frames_alive(monkeypatch: pytest.MonkeyPatch) -> None:
    """An error kept in the memo holds no traceback: its frames would pin the packed buffers."""
    import gc
    import weakref

    from lpzero_queue.proxies import operators

    alive: list[weakref.ref[torch.Tensor]] = []

    def failing(x: torch.Tensor) -> torch.Tensor:
        big = torch.ones(1000, 1000, dtype=torch.float64)  # a local the traceback would hold
        alive.append(weakref.ref(big))
        raise ValueError("rejected")  # a declared outcome: memoised as an error

    op = operators.UnaryOp("failing_test", failing, "none", "same_shape")
    monkeypatch.setitem(operators._UNARY, "failing_test", op)
    inputs = {"act": (torch.ones(3, 5),), "head": (torch.ones(2, 5),)}
    e = parse_expression("sum(mean(failing_test(act)), mean(head))")
    memo: dict[Any, Any] = {}
    for _ in range(2):  # computed, then served from the memo
        (result,) = evaluate_many([e], inputs, memo=memo)
        assert result.status == "error" and "rejected" in (result.error or "")
    errors = [v for v in memo.values() if isinstance(v, Exception)]
    assert errors and all(v.__traceback__ is None for v in errors)
    gc.collect()
    assert alive and all(ref() is None for ref in alive)
