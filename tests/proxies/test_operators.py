"""Tests for the operator registry: names, guards, and validation at registration."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lpzero_queue.proxies import operators
from lpzero_queue.proxies.operators import (
    BINARY_OPS,
    INPUT_DESCRIPTIONS,
    INPUT_NAMES,
    UNARY_OPS,
    BinaryOp,
    UnaryOp,
    register_binary,
    register_unary,
    validate_binary,
    validate_unary,
)

PUBLISHED_UNARY = """log abslog abs square exp normalize relu invert frobenius_norm mean l1_norm
softmax sigmoid logsoftmax sqrt negate min_max_normalize to_mean_scalar to_std_scalar no_op"""


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def test_names_are_the_published_ones() -> None:
    assert sorted(UNARY_OPS) == sorted(PUBLISHED_UNARY.split())
    assert len(UNARY_OPS) == 20
    assert set(BINARY_OPS) == {"sum", "difference", "product"}
    assert INPUT_NAMES == ("act", "head", "softmax", "grad", "weight", "jacobs")
    assert all(INPUT_DESCRIPTIONS[name] for name in INPUT_NAMES)
    assert all(op.name == name for name, op in UNARY_OPS.items())
    assert all(op.name == name for name, op in BINARY_OPS.items())


def test_registry_is_read_only() -> None:
    with pytest.raises(TypeError):
        UNARY_OPS["abs"] = UNARY_OPS["relu"]  # type: ignore[index]
    with pytest.raises(TypeError):
        BINARY_OPS["sum"] = BINARY_OPS["product"]  # type: ignore[index]


def test_records_are_frozen_and_state_their_guards() -> None:
    op = UNARY_OPS["log"]
    with pytest.raises(AttributeError):
        op.name = "other"  # type: ignore[misc]
    assert all(op.guard for op in UNARY_OPS.values())
    assert all(op.guard for op in BINARY_OPS.values())
    assert all(op.weight == 1.0 for op in UNARY_OPS.values())


@pytest.mark.parametrize("name", sorted(UNARY_OPS))
def test_builtin_unary_passes_validation(name: str) -> None:
    validate_unary(UNARY_OPS[name])


@pytest.mark.parametrize("name", sorted(BINARY_OPS))
def test_builtin_binary_passes_validation(name: str) -> None:
    validate_binary(BINARY_OPS[name])


def test_flags() -> None:
    idempotent = {n for n, op in UNARY_OPS.items() if op.idempotent}
    assert idempotent == {
        "abs", "relu", "no_op", "frobenius_norm", "mean", "l1_norm", "to_mean_scalar"
    }  # fmt: skip
    assert {n for n, op in UNARY_OPS.items() if op.self_inverse} == {"negate"}
    assert {n for n, op in BINARY_OPS.items() if op.commutative} == {"sum", "product"}
    scalar = {n for n, op in UNARY_OPS.items() if op.output == "scalar"}
    assert scalar == {"frobenius_norm", "mean", "l1_norm", "to_mean_scalar", "to_std_scalar"}
    same = {n for n, op in UNARY_OPS.items() if op.output == "same_shape"}
    assert same == {"normalize", "softmax", "logsoftmax", "min_max_normalize"}


def test_log_guard() -> None:
    y = UNARY_OPS["log"](t(0.0, -1.0, 2.0, math.inf, 1e300, -math.inf))
    expected = t(0.0, 0.0, math.log(2.0), math.log(1e30), math.log(1e30), 0.0)
    assert torch.allclose(y, expected, rtol=1e-15, atol=0)
    assert torch.isnan(UNARY_OPS["log"](t(math.nan))).all()  # NaN is reported, not hidden


def test_abslog_guard() -> None:
    y = UNARY_OPS["abslog"](t(0.0, -math.e, 1e-30, -math.inf))
    assert torch.allclose(y, t(0.0, 1.0, math.log(1e-30), math.log(1e30)), rtol=1e-15, atol=0)


def test_invert_guard() -> None:
    y = UNARY_OPS["invert"](t(0.0, 1e-20, -1e-20, 4.0, -0.5, math.inf))
    assert torch.equal(y, t(1e12, 1e12, -1e12, 0.25, -2.0, 0.0))


def test_exp_sqrt_square_guards() -> None:
    assert UNARY_OPS["exp"](t(1000.0)).item() == math.exp(80.0)
    assert torch.equal(UNARY_OPS["sqrt"](t(-4.0, 0.0, 9.0)), t(0.0, 0.0, 3.0))
    assert UNARY_OPS["square"](t(1e30)).item() == 1e30 * 1e30


def test_normalizers() -> None:
    x = t(1.0, 2.0, 3.0, 4.0)
    std = x.std(correction=0)
    assert torch.allclose(UNARY_OPS["normalize"](x), (x - 2.5) / (std + 1e-9))
    assert torch.equal(UNARY_OPS["normalize"](t(7.0, 7.0)), t(0.0, 0.0))
    assert torch.allclose(UNARY_OPS["min_max_normalize"](x), (x - 1.0) / (3.0 + 1e-9))
    assert UNARY_OPS["to_std_scalar"](t(5.0)).item() == 0.0
    assert UNARY_OPS["to_std_scalar"](x).item() == pytest.approx(std.item())


def test_softmax_over_first_axis() -> None:
    x = torch.arange(6.0, dtype=torch.float64).reshape(2, 3)
    assert torch.allclose(UNARY_OPS["softmax"](x), torch.softmax(x, dim=0))
    assert torch.allclose(UNARY_OPS["logsoftmax"](x), torch.log_softmax(x, dim=0))
    scalar = torch.tensor(3.0, dtype=torch.float64)
    assert UNARY_OPS["softmax"](scalar).shape == () and UNARY_OPS["softmax"](scalar).item() == 1.0
    assert UNARY_OPS["logsoftmax"](scalar).item() == 0.0


def test_reductions() -> None:
    x = t(3.0, -4.0)
    assert UNARY_OPS["frobenius_norm"](x).item() == 5.0
    assert UNARY_OPS["mean"](x).item() == -0.5
    assert UNARY_OPS["to_mean_scalar"](x).item() == -0.5
    assert UNARY_OPS["l1_norm"](x).item() == 3.5
    # Rescaled norm: no underflow/overflow of the squares, exact on a scalar.
    assert UNARY_OPS["frobenius_norm"](t(3e-200, 4e-200)).item() == pytest.approx(5e-200)
    assert UNARY_OPS["frobenius_norm"](t(3e200, 4e200)).item() == pytest.approx(5e200)
    assert UNARY_OPS["frobenius_norm"](torch.tensor(-1e-300, dtype=torch.float64)).item() == 1e-300


@pytest.mark.parametrize("name", sorted(UNARY_OPS))
def test_float64_input_is_not_modified_and_float32_is_promoted(name: str) -> None:
    x = t(0.0, -1.0, 2.5, 1e-30, -7.0)
    before = x.clone()
    UNARY_OPS[name](x)
    assert torch.equal(x, before)
    assert UNARY_OPS[name](x.to(torch.float32)).dtype == torch.float64


finite = st.floats(min_value=-1e30, max_value=1e30, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(finite, min_size=1, max_size=24),
    name=st.sampled_from(sorted(UNARY_OPS)),
)
def test_finite_inputs_give_finite_outputs(values: list[float], name: str) -> None:
    x = t(*values)
    before = x.clone()
    y = UNARY_OPS[name](x)
    assert bool(torch.isfinite(y).all())
    assert torch.equal(x, before)
    assert y.shape == (() if UNARY_OPS[name].output == "scalar" else x.shape)


def _unary(name: str, fn, output="elementwise", **flags) -> UnaryOp:  # type: ignore[no-untyped-def]
    return UnaryOp(name, fn, "test", output, **flags)


@pytest.mark.parametrize(
    ("op", "fragment"),
    [
        (_unary("bad_exp", lambda x: x.exp()), "non-finite"),
        (_unary("bad_inplace", lambda x: x.abs_()), "in place"),
        (_unary("bad_scalar", lambda x: x.to(torch.float64).sum()), "declared elementwise"),
        (_unary("bad_shape", lambda x: x.to(torch.float64), output="scalar"), "declared scalar"),
        (_unary("bad_elementwise", UNARY_OPS["normalize"].fn), "depend on each other"),
        (_unary("bad_idem", UNARY_OPS["sigmoid"].fn, idempotent=True), "idempotent"),
        (_unary("bad_inverse", UNARY_OPS["invert"].fn, self_inverse=True), "self-inverse"),
        (_unary("bad_raise", lambda x: x.reshape(2, -1)), "raised"),
        (_unary("bad_type", lambda x: 1.0), "returned float"),
    ],
)
def test_register_unary_rejects(op: UnaryOp, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment) as info:
        register_unary(op)
    assert repr(op.name) in str(info.value)
    assert op.name not in UNARY_OPS


def test_rejection_names_the_case() -> None:
    with pytest.raises(ValueError, match=r"huge 1e30 2-d"):
        validate_unary(_unary("cube", lambda x: x.to(torch.float64) ** 11))


@pytest.mark.parametrize("name", ["abs", "sum", "weight", "Bad-Name", ""])
def test_register_rejects_taken_or_malformed_names(name: str) -> None:
    with pytest.raises(ValueError, match="name"):
        register_unary(replace(UNARY_OPS["abs"], name=name))


def test_register_unary_accepts_a_valid_op() -> None:
    op = _unary("test_tanh", lambda x: x.to(torch.float64).tanh())
    try:
        register_unary(op)
        assert UNARY_OPS["test_tanh"] is op
    finally:
        operators._UNARY.pop("test_tanh", None)
    assert "test_tanh" not in UNARY_OPS


def test_register_binary() -> None:
    with pytest.raises(ValueError, match="commutative"):
        register_binary(BinaryOp("bad_sub", torch.sub, "none", commutative=True))
    with pytest.raises(ValueError, match="taken"):
        register_binary(BINARY_OPS["sum"])
    with pytest.raises(ValueError, match="non-finite"):
        register_binary(BinaryOp("bad_pow", lambda a, b: a * b * 1e300, "none", False))
    assert "bad_sub" not in BINARY_OPS and "bad_pow" not in BINARY_OPS


# The published `where` forms of the guards; the operators compute the same values without
# torch.where (slow on CPU), and must agree bit for bit, NaN, infinities and -0.0 included.
WHERE_FORMS = {
    "log": lambda x: torch.where(x <= 0, 1.0, x).clamp(max=operators.LOG_MAX).log(),
    "abslog": lambda x: torch.where(x.abs() == 0, 1.0, x.abs()).clamp(max=operators.LOG_MAX).log(),
    "invert": lambda x: (
        1.0
        / torch.where(
            x >= 0, x.clamp(min=operators.INVERT_MIN_ABS), x.clamp(max=-operators.INVERT_MIN_ABS)
        )
    ),
}
special = st.sampled_from([0.0, -0.0, math.inf, -math.inf, math.nan, 1e-320, -1e-320, 1e300])


@settings(max_examples=80, deadline=None)
@given(
    values=st.lists(st.one_of(st.floats(allow_nan=True), special), min_size=1, max_size=40),
    name=st.sampled_from(sorted(WHERE_FORMS)),
)
def test_guards_equal_their_where_forms(values: list[float], name: str) -> None:
    x = t(*values)
    before = x.clone()
    got, want = UNARY_OPS[name](x), WHERE_FORMS[name](x)
    assert torch.equal(got.isnan(), want.isnan())
    assert torch.equal(torch.nan_to_num(got), torch.nan_to_num(want))
    assert torch.equal(x.isnan(), before.isnan()) and torch.equal(
        x.nan_to_num(), before.nan_to_num()
    )


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.floats(allow_nan=True), special), min_size=1, max_size=40))
def test_sqrt_is_within_rounding_of_torch_sqrt(values: list[float]) -> None:
    x = t(*values)
    got, want = UNARY_OPS["sqrt"](x), x.clamp(min=0.0).sqrt()
    assert torch.equal(got.isnan(), want.isnan()) and torch.equal(got == 0, want == 0)
    assert torch.allclose(got, want, rtol=4e-16, atol=0.0, equal_nan=True)


def test_frobenius_norm_of_nan_and_inf() -> None:
    assert math.isnan(UNARY_OPS["frobenius_norm"](t(1.0, math.nan)).item())
    assert UNARY_OPS["frobenius_norm"](t(1.0, -math.inf)).item() == math.inf
    assert UNARY_OPS["frobenius_norm"](t(0.0, 0.0)).item() == 0.0


def test_stacked_forms_are_declared_where_exact() -> None:
    stacked = {n for n, op in UNARY_OPS.items() if op.stacked is not None}
    assert stacked == set(UNARY_OPS)  # every built-in has one (elementwise ops are their own)
    assert all(op.stacked is op.fn for op in UNARY_OPS.values() if op.output == "elementwise")
    assert replace(UNARY_OPS["normalize"], stacked_fn=None).stacked is None  # runs per tensor


def test_register_unary_rejects_a_wrong_stacked_form() -> None:
    # Normalising the whole stack instead of each slice mixes the tensors.
    whole = replace(
        UNARY_OPS["normalize"], name="whole_normalize", stacked_fn=UNARY_OPS["normalize"].fn
    )
    with pytest.raises(ValueError, match="stacked form differs"):
        register_unary(whole)
    assert "whole_normalize" not in UNARY_OPS
    inplace = _unary(
        "inplace_stack", lambda x: x.to(torch.float64).abs(), stacked_fn=lambda x: x.abs_()
    )
    with pytest.raises(ValueError, match="stacked form modified its input"):
        register_unary(inplace)
