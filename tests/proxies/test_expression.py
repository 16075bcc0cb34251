"""Tests for expressions: text form, parser, canonicalisation, constant rules and evaluation."""

from __future__ import annotations

import functools
import hashlib
import math
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lpzero_queue.proxies import operators
from lpzero_queue.proxies.expression import (
    LPZERO_FLEXIBERT,
    LPZERO_GPT2,
    REDUCTIONS,
    Branch,
    EvalResult,
    Expression,
    ExpressionSyntaxError,
    ProxyInputError,
    canonicalize,
    constant_branch_value,
    evaluate,
    evaluate_many,
    format_expression,
    is_provably_constant,
    parse_expression,
)
from lpzero_queue.proxies.operators import BINARY_OPS, INPUT_NAMES, UNARY_OPS, UnaryOp

UNARY = sorted(UNARY_OPS)
branches = st.builds(
    Branch,
    st.sampled_from(INPUT_NAMES),
    st.lists(st.sampled_from(UNARY), max_size=4).map(tuple),
)
expressions = st.builds(
    Expression,
    st.sampled_from(sorted(BINARY_OPS)),
    branches,
    branches,
    st.sampled_from(REDUCTIONS),
)


pytestmark = pytest.mark.usefixtures("one_thread")


@functools.cache
def random_inputs(seed: int) -> dict[str, list[torch.Tensor]]:
    """Inputs of mixed shapes, dtypes and list lengths (so pairing truncates)."""
    g = torch.Generator().manual_seed(seed)
    shapes: dict[str, list[tuple[int, ...]]] = {
        "act": [(4, 6), (4, 6), (4, 6)],
        "head": [(2, 3, 4), (2, 3, 4)],
        "softmax": [(2, 2, 3, 3)] * 4,
        "grad": [(5, 5), (5, 5), (5, 5)],
        "weight": [(5, 5), (5, 5)],
        "jacobs": [(7,)],
    }
    return {
        name: [
            torch.randn(shape, generator=g, dtype=torch.float64) * (i + 1)
            for i, shape in enumerate(sizes)
        ]
        for name, sizes in shapes.items()
    } | {"act": [torch.randn(4, 6, generator=g).to(torch.float32) for _ in range(3)]}


def same_value(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b or math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-300)


# --- text form --------------------------------------------------------------------------------


def test_published_proxies_parse_to_the_documented_structure() -> None:
    gpt2 = parse_expression(LPZERO_GPT2)
    assert gpt2 == Expression(
        "sum", Branch("weight", ("square", "l1_norm")), Branch("grad", ("softmax", "square"))
    )
    assert str(gpt2) == format_expression(gpt2) == LPZERO_GPT2
    flexibert = parse_expression(LPZERO_FLEXIBERT)
    assert flexibert.left == Branch("head", ("negate", "square"))
    assert str(flexibert) == LPZERO_FLEXIBERT


def test_whitespace_is_accepted_and_hash_is_of_the_canonical_text() -> None:
    messy = "  sum (\n l1_norm( square (weight) ) ,\tsquare(softmax(grad))  )\n"
    e = parse_expression(messy)
    assert str(e) == LPZERO_GPT2
    assert e.hash == hashlib.sha256(LPZERO_GPT2.encode()).hexdigest()
    assert len({e, parse_expression(LPZERO_GPT2)}) == 1


def test_branches_without_unary_ops_and_list_coercion() -> None:
    e = parse_expression("product(weight, grad)")
    assert e.left == Branch("weight") and e.left.unary == ()
    assert Branch("act", ["abs", "relu"]).unary == ("abs", "relu")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown input"):
        Branch("nope")
    with pytest.raises(ValueError, match="unknown unary"):
        Branch("act", ("sum",))
    with pytest.raises(ValueError, match="unknown binary"):
        Expression("matmul", Branch("act"), Branch("act"))


def test_deep_chains_do_not_exhaust_the_stack() -> None:
    depth = 5000
    text = "sum(" + "abs(" * depth + "weight" + ")" * depth + ", grad)"
    e = parse_expression(text)
    assert len(e.left.unary) == depth and str(e) == text
    assert canonicalize(e).left.unary == ("abs",)


@settings(max_examples=200, deadline=None)
@given(expressions)
def test_format_parse_roundtrip(e: Expression) -> None:
    text = format_expression(e)
    assert parse_expression(text) == e
    assert re.fullmatch(r"[a-z_0-9(),]*(, [a-z_0-9(),]*)?", text)


@pytest.mark.parametrize(
    ("text", "position", "fragment"),
    [
        ("", 0, "empty expression"),
        ("   ", 3, "empty expression"),
        ("sum(sqaure(weight), grad)", 4, "unknown operator 'sqaure'; expected one of: abs, abslog"),
        ("sum(weight, grad", 16, "expected ')'"),
        ("sum(wieght, grad)", 4, "unknown input 'wieght'; expected one of: act, head"),
        ("sum(weight(act), grad)", 4, "input 'weight' cannot be called"),
        ("sum(sum(weight, grad), grad)", 4, "binary operator 'sum' is only allowed as the outer"),
        ("abs(weight)", 0, "unary operator 'abs' cannot be the outermost call"),
        ("weight", 0, "input 'weight' cannot be the outermost"),
        ("matmul(weight, grad)", 0, "unknown binary operator or reduction 'matmul'; expected "
                                    "one of: difference, product, sum, total"),
        ("total(weight)", 6, "input 'weight' cannot be the argument of 'total'; expected "
                             "one of: difference, product, sum"),
        ("total(abs(weight))", 6, "unary operator 'abs' cannot be the argument of 'total'"),
        ("total(total(sum(weight, grad)))", 6, "reduction 'total' can only be the outermost"),
        ("total(matmul(weight, grad))", 6, "unknown binary operator 'matmul'; expected one of"),
        ("total()", 6, "unexpected ')'"),
        ("total(", 6, "expected a binary operator; expected one of: difference, product, sum"),
        ("total(sum(weight, grad)", 23, "expected ')', found end of input"),
        ("total(sum(weight, grad), act)", 23, "reduction 'total' takes exactly one argument"),
        ("total(sum(weight, grad)) x", 25, "trailing text"),
        ("total", 5, "expected '('"),
        ("sum(total(weight), grad)", 4, "reduction 'total' is only allowed as the outermost"),
        ("sum(total, grad)", 4, "reduction 'total' is only allowed as the outermost"),
        ("mean(sum(weight, grad))", 0, "the default reduction 'mean' is written without a wrapper"),
        ("sum(weight)", 10, "takes two arguments"),
        ("sum(weight, grad, act)", 16, "takes exactly two arguments"),
        ("sum(abs(weight, act), grad)", 14, "'abs' takes exactly one argument"),
        ("sum(weight, grad) x", 18, "trailing text"),
        ("sum(weight, grad)#", 17, "unexpected character '#'"),
        ("sum(abs, grad)", 7, "'abs' needs an argument"),
        ("sum", 3, "expected '('"),
        ("sum(, grad)", 4, "expected a unary operator or an input"),
        ("(sum(weight, grad))", 0, "unexpected '('"),
    ],
)  # fmt: skip
def test_syntax_errors(text: str, position: int, fragment: str) -> None:
    with pytest.raises(ExpressionSyntaxError) as info:
        parse_expression(text)
    assert isinstance(info.value, ValueError)
    assert info.value.position == position
    assert str(info.value).startswith(f"position {position}: ")
    assert fragment in str(info.value)
    assert info.value.expected


TOKENS = [*INPUT_NAMES, *UNARY, *BINARY_OPS, *REDUCTIONS, "(", ")", ",", " ", "\n", "x", "1"]
TOKENS.append("é")


@st.composite
def damaged_texts(draw: st.DrawFn) -> str:
    """The text of a valid expression with one slice deleted or one token inserted."""
    text = format_expression(draw(expressions))
    i = draw(st.integers(0, len(text)))
    j = draw(st.integers(i, min(len(text), i + 12)))
    return text[:i] + draw(st.sampled_from(["", *TOKENS])) + text[j:]


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(), st.lists(st.sampled_from(TOKENS), max_size=20).map("".join), damaged_texts()
    )
)
def test_fuzz_parser_only_raises_syntax_errors(text: str) -> None:
    try:
        e = parse_expression(text)
    except ExpressionSyntaxError as exc:
        message = str(exc)
        match = re.match(r"position (\d+): ", message)
        assert match is not None and "\n" not in message
        assert int(match.group(1)) == exc.position
        assert 0 <= exc.position <= len(text)
    else:
        assert parse_expression(str(e)) == e


# --- canonicalisation and static rules ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("sum(no_op(abs(no_op(weight))), grad)", "sum(abs(weight), grad)"),
        ("sum(abs(abs(abs(weight))), relu(relu(grad)))", "sum(abs(weight), relu(grad))"),
        ("difference(negate(negate(weight)), grad)", "difference(weight, grad)"),
        ("difference(negate(negate(negate(weight))), grad)", "difference(negate(weight), grad)"),
        ("difference(abs(negate(negate(abs(weight)))), grad)", "difference(abs(weight), grad)"),
        ("difference(l1_norm(l1_norm(weight)), mean(mean(grad)))",
         "difference(l1_norm(weight), mean(grad))"),
        ("difference(invert(invert(weight)), grad)", "difference(invert(invert(weight)), grad)"),
        ("difference(sigmoid(sigmoid(weight)), normalize(normalize(grad)))",
         "difference(sigmoid(sigmoid(weight)), normalize(normalize(grad)))"),
        ("sum(weight, act)", "sum(act, weight)"),
        ("product(square(weight), abs(weight))", "product(abs(weight), square(weight))"),
        ("difference(weight, act)", "difference(weight, act)"),
    ],
)  # fmt: skip
def test_canonicalize_cases(text: str, canonical: str) -> None:
    assert str(canonicalize(parse_expression(text))) == canonical


@settings(max_examples=150, deadline=None)
@given(expressions)
def test_canonicalize_preserves_the_value_and_is_idempotent(e: Expression) -> None:
    c = canonicalize(e)
    assert canonicalize(c) == c
    if BINARY_OPS[e.binary].commutative:
        swapped = Expression(e.binary, e.right, e.left, e.reduce)
        assert canonicalize(swapped) == c
    assert c.reduce == e.reduce
    inputs = random_inputs(0)
    assert same_value(evaluate(c, inputs), evaluate(e, inputs))


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("difference(abs(weight), abs(abs(no_op(weight))))", "difference_of_identical_branches"),
        ("sum(softmax(mean(weight)), normalize(l1_norm(grad)))", "scalar_then_normalizer"),
        ("difference(to_std_scalar(frobenius_norm(act)), exp(min_max_normalize(mean(head))))",
         "scalar_then_normalizer"),
        ("product(abs(grad), normalize(exp(to_mean_scalar(head))))", "product_with_zero_branch"),
        ("product(softmax(mean(weight)), grad)", None),
        ("sum(softmax(mean(weight)), grad)", None),
        ("sum(mean(softmax(weight)), mean(normalize(grad)))", None),
        ("sum(weight, weight)", None),
        (LPZERO_GPT2, None),
        (LPZERO_FLEXIBERT, None),
    ],
)  # fmt: skip
def test_is_provably_constant(text: str, rule: str | None) -> None:
    assert is_provably_constant(parse_expression(text)) == rule


def test_published_flexibert_proxy_has_a_constant_branch() -> None:
    # logsoftmax of a scalar is 0: the published FlexiBERT proxy is mean(head^2) + 0.
    e = parse_expression(LPZERO_FLEXIBERT)
    assert constant_branch_value(e.right) == 0.0
    assert constant_branch_value(e.left) is None
    assert constant_branch_value(Branch("act", ("mean", "softmax", "negate"))) == -1.0


constant_branches = st.builds(
    lambda pre, scalar, norm, post, name: Branch(name, (*pre, scalar, *post[:1], norm, *post[1:])),
    st.lists(st.sampled_from(UNARY), max_size=2),
    st.sampled_from([n for n, op in UNARY_OPS.items() if op.output == "scalar"]),
    st.sampled_from(["softmax", "logsoftmax", "normalize", "min_max_normalize", "to_std_scalar"]),
    st.lists(st.sampled_from(UNARY), max_size=2),
    st.sampled_from(INPUT_NAMES),
)


@settings(max_examples=100, deadline=None)
@given(st.one_of(constant_branches, branches), st.one_of(constant_branches, branches),
       st.sampled_from(sorted(BINARY_OPS)))  # fmt: skip
def test_provably_constant_expressions_are_constant(left: Branch, right: Branch, op: str) -> None:
    e = Expression(op, left, right)
    first, second = evaluate(e, random_inputs(1)), evaluate(e, random_inputs(2))
    if is_provably_constant(e) is not None:
        assert same_value(first, second)
    value = constant_branch_value(left)
    if value is not None:  # product with softmax(mean(x)) == 1 gives the branch value itself
        one = Branch("jacobs", ("mean", "softmax"))
        assert same_value(evaluate(Expression("product", left, one), random_inputs(3)), value)


# --- evaluation --------------------------------------------------------------------------------


def test_evaluate_by_hand() -> None:
    g = torch.Generator().manual_seed(7)
    weight = [torch.randn(3, 4, generator=g) for _ in range(2)]
    grad = [torch.randn(3, 4, generator=g) for _ in range(3)]  # the third is dropped by pairing
    left = [(w.double() ** 2).abs().mean() for w in weight]
    right = [(torch.softmax(gr.double(), dim=0) ** 2).mean() for gr in grad[:2]]
    expected = float(torch.stack([a + b for a, b in zip(left, right, strict=True)]).mean())
    score = evaluate(parse_expression(LPZERO_GPT2), {"weight": weight, "grad": grad})
    assert isinstance(score, float)
    assert score == pytest.approx(expected, rel=1e-12)
    pairs = evaluate(parse_expression("difference(mean(grad), mean(weight))"),
                     {"weight": weight, "grad": grad})  # fmt: skip
    assert pairs == pytest.approx(float(sum(grad[i].double().mean() - weight[i].double().mean()
                                            for i in range(2)) / 2), rel=1e-12)  # fmt: skip


@pytest.mark.parametrize("name", UNARY)
def test_evaluate_never_modifies_inputs(name: str) -> None:
    inputs = {
        "weight": [torch.tensor([[0.0, -1.0], [2.0, -3.5]], dtype=torch.float64)],
        "grad": [torch.tensor([0.0, -2.0, 1e-30], dtype=torch.float64),
                 torch.tensor([-1.0, 0.0, 5.0], dtype=torch.float32)],
    }  # fmt: skip
    before = {k: [v.clone() for v in vs] for k, vs in inputs.items()}
    evaluate(Expression("sum", Branch("weight", (name, name)), Branch("grad", (name,))), inputs)
    evaluate_many([Expression("product", Branch("grad", (name,)), Branch("weight"))], inputs)
    for key, tensors in inputs.items():
        for t, b in zip(tensors, before[key], strict=True):
            assert torch.equal(t, b) and t.dtype == b.dtype


def test_missing_or_empty_input() -> None:
    e = parse_expression(LPZERO_GPT2)
    with pytest.raises(ProxyInputError, match="'grad' is missing"):
        evaluate(e, {"weight": [torch.ones(2)]})
    with pytest.raises(ProxyInputError, match="'grad' is an empty list"):
        evaluate(e, {"weight": [torch.ones(2)], "grad": []})
    [result] = evaluate_many([e], {"weight": [torch.ones(2)]})
    assert result.status == "error" and result.score is None
    assert result.error is not None and "ProxyInputError" in result.error and "grad" in result.error


def test_evaluate_many_statuses() -> None:
    inputs = {
        "weight": [torch.ones(2, 2), torch.full((2,), 2.0)],
        "grad": [torch.tensor([1e100, 1.0])],
        "act": [torch.empty(0)],
    }
    texts = [
        "sum(mean(weight), weight)",
        "sum(square(square(grad)), weight)",
        "sum(frobenius_norm(act), weight)",
        "sum(head, weight)",
    ]
    results = evaluate_many([parse_expression(t) for t in texts], inputs)
    assert results[0] == EvalResult(3.0, "ok")
    assert results[1] == EvalResult(None, "nonfinite")
    assert results[2].status == "error" and results[2].score is None
    assert results[3].status == "error" and "'head' is missing" in (results[3].error or "")


@settings(max_examples=30, deadline=None)
@given(st.lists(expressions, min_size=1, max_size=8))
def test_evaluate_many_matches_evaluate(exprs: list[Expression]) -> None:
    inputs = random_inputs(4)
    for e, result in zip(exprs, evaluate_many(exprs, inputs), strict=True):
        single = evaluate(e, inputs)
        if math.isfinite(single):
            assert result.status == "ok" and result.score == single
        else:
            assert result == EvalResult(None, "nonfinite")


def test_evaluate_many_shares_branch_prefixes(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    square = UNARY_OPS["square"]

    def counting(x: torch.Tensor) -> torch.Tensor:
        calls.append("square")
        return square.fn(x)

    monkeypatch.setitem(operators._UNARY, "square", UnaryOp("square", counting, "", "elementwise"))
    inputs = {"weight": [torch.ones(2), torch.ones(3)], "grad": [torch.ones(2)] * 3}
    texts = [
        "sum(square(weight), square(grad))",
        "product(square(weight), abs(grad))",
        "difference(l1_norm(square(weight)), grad)",
        "sum(mean(square(weight)), softmax(square(grad)))",
    ]
    results = evaluate_many([parse_expression(t) for t in texts], inputs, stacked=False)
    assert all(r.status == "ok" for r in results)
    assert len(calls) == 2 + 3  # once per tensor of weight and of grad, not once per branch
    calls.clear()
    assert evaluate_many([parse_expression(t) for t in texts], inputs) == results
    assert len(calls) == 2 + 1  # stacked: once per shape (weight has two, grad one)
