"""Tests for the expression-level reduction (``mean`` as published, ``total``)."""

from __future__ import annotations

import functools
import hashlib
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lpzero_queue.proxies.expression import (
    LPZERO_GPT2,
    Branch,
    EvalResult,
    Expression,
    canonicalize,
    constant_branch_value,
    evaluate,
    evaluate_many,
    format_expression,
    is_provably_constant,
    parse_expression,
)
from lpzero_queue.proxies.operators import BINARY_OPS, INPUT_NAMES, UNARY_OPS

TOTAL_GPT2 = f"total({LPZERO_GPT2})"


def layered_inputs(layers: int, seed: int) -> dict[str, list[torch.Tensor]]:
    """One tensor per layer for every input (jacobs: one), like an extracted architecture."""
    g = torch.Generator().manual_seed(seed)
    shapes = {"act": (4, 6), "head": (2, 3, 4), "softmax": (2, 3, 3), "grad": (5, 5)}
    inputs = {name: [torch.randn(shape, generator=g) for _ in range(layers)]
              for name, shape in shapes.items()}  # fmt: skip
    inputs["weight"] = [torch.randn(5, 5, generator=g) for _ in range(layers)]
    inputs["jacobs"] = [torch.randn(7, generator=g)]
    return inputs


def test_text_form_construction_and_hash() -> None:
    e = parse_expression(TOTAL_GPT2)
    published = parse_expression(LPZERO_GPT2)
    assert e == Expression("sum", published.left, published.right, "total")
    assert e.reduce == "total" and published.reduce == "mean"
    assert Expression("sum", published.left, published.right) == published  # positional, default
    assert str(e) == format_expression(e) == TOTAL_GPT2
    assert str(parse_expression("  total ( sum(l1_norm(square(weight)),square(softmax(grad))) ) "))
    assert e.hash == hashlib.sha256(TOTAL_GPT2.encode()).hexdigest() != published.hash
    assert published.hash == hashlib.sha256(LPZERO_GPT2.encode()).hexdigest()  # unchanged
    with pytest.raises(ValueError, match="unknown reduction 'max'"):
        Expression("sum", Branch("act"), Branch("act"), "max")  # type: ignore[arg-type]


def test_canonicalize_keeps_the_reduction() -> None:
    e = parse_expression("total(sum(no_op(weight), abs(abs(act))))")
    assert str(canonicalize(e)) == "total(sum(abs(act), weight))"


def test_total_by_hand_is_the_sum_over_pairs() -> None:
    inputs = layered_inputs(3, seed=0)
    inputs["grad"] = inputs["grad"][:2]  # pairs are truncated to the shorter list, as for mean
    total = evaluate(parse_expression(TOTAL_GPT2), inputs)
    mean = evaluate(parse_expression(LPZERO_GPT2), inputs)
    expected = sum(
        float((w.double() ** 2).abs().mean() + (torch.softmax(g.double(), dim=0) ** 2).mean())
        for w, g in zip(inputs["weight"], inputs["grad"], strict=False)
    )
    assert total == pytest.approx(expected, rel=1e-12)
    assert total == pytest.approx(2 * mean, rel=1e-12)


def test_total_scales_with_the_number_of_layers() -> None:
    # Same tensors repeated: mean is blind to depth, total is proportional to it.
    text = "sum(l1_norm(weight), to_std_scalar(act))"
    one = layered_inputs(1, seed=1)
    deep = {name: tensors * 4 for name, tensors in one.items()}
    mean = parse_expression(text)
    total = parse_expression(f"total({text})")
    assert evaluate(mean, deep) == pytest.approx(evaluate(mean, one), rel=1e-12)
    assert evaluate(total, deep) == pytest.approx(4 * evaluate(total, one), rel=1e-12)


def test_evaluate_many_mixes_reductions() -> None:
    inputs = {"weight": [torch.ones(2), torch.full((3,), 2.0)], "grad": [torch.ones(2)] * 2}
    texts = ["sum(mean(weight), grad)", "total(sum(mean(weight), grad))",
             "total(difference(weight, square(weight)))"]  # fmt: skip
    results = evaluate_many([parse_expression(t) for t in texts], inputs)
    assert results == [EvalResult(2.5, "ok"), EvalResult(5.0, "ok"), EvalResult(-2.0, "ok")]


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("total(difference(abs(weight), abs(abs(weight))))", "difference_of_identical_branches"),
        ("total(product(abs(grad), normalize(exp(to_mean_scalar(head)))))",
         "product_with_zero_branch"),
        # Both branches constant with a zero pair value: n * 0 == 0 for every depth.
        ("total(sum(logsoftmax(mean(weight)), normalize(l1_norm(grad))))",
         "scalar_then_normalizer"),
        ("total(difference(softmax(mean(weight)), softmax(l1_norm(grad))))",
         "scalar_then_normalizer"),
        # Non-zero pair value: n * k follows the number of layers, so it is NOT constant.
        ("total(sum(softmax(mean(weight)), normalize(l1_norm(grad))))", None),
        ("sum(softmax(mean(weight)), normalize(l1_norm(grad)))", "scalar_then_normalizer"),
        ("total(sum(softmax(mean(weight)), grad))", None),
        (TOTAL_GPT2, None),
    ],
)  # fmt: skip
def test_is_provably_constant_under_total(text: str, rule: str | None) -> None:
    assert is_provably_constant(parse_expression(text)) == rule


def test_constant_branches_under_total_follow_depth() -> None:
    e = parse_expression("total(sum(softmax(mean(weight)), normalize(l1_norm(grad))))")
    scores = [evaluate(e, layered_inputs(layers, seed=layers)) for layers in (2, 4)]
    assert scores == [2.0, 4.0]  # 1 + 0 per pair


UNARY = sorted(UNARY_OPS)
SCALARS = [n for n, op in UNARY_OPS.items() if op.output == "scalar"]
NORMALIZERS = ["softmax", "logsoftmax", "normalize", "min_max_normalize", "to_std_scalar"]
constant_branches = st.builds(
    lambda scalar, norm, post, name: Branch(name, (scalar, norm, *post)),
    st.sampled_from(SCALARS),
    st.sampled_from(NORMALIZERS),
    st.lists(st.sampled_from(UNARY), max_size=2),
    st.sampled_from(INPUT_NAMES[:5]),  # jacobs has one tensor whatever the depth
)
branches = st.builds(
    Branch, st.sampled_from(INPUT_NAMES[:5]), st.lists(st.sampled_from(UNARY), max_size=3)
)


@settings(max_examples=150, deadline=None)
@given(
    st.one_of(constant_branches, branches),
    st.one_of(constant_branches, branches),
    st.sampled_from(sorted(BINARY_OPS)),
)
def test_total_constant_rule_is_sound_across_depths(left: Branch, right: Branch, op: str) -> None:
    e = Expression(op, left, right, "total")
    shallow, deep = evaluate(e, layered_inputs(2, seed=5)), evaluate(e, layered_inputs(4, seed=6))
    if is_provably_constant(e) is not None:
        assert shallow == deep or (math.isnan(shallow) and math.isnan(deep))
    lv, rv = constant_branch_value(left), constant_branch_value(right)
    if lv is not None and rv is not None and math.isfinite(shallow):
        f64 = functools.partial(torch.tensor, dtype=torch.float64)
        pair = float(BINARY_OPS[op].fn(f64(lv), f64(rv)))
        assert shallow == pytest.approx(2 * pair, rel=1e-9, abs=1e-12)
        assert deep == pytest.approx(4 * pair, rel=1e-9, abs=1e-12)
