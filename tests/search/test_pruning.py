"""Tests for rule-based pruning: each static and dynamic rule, and --no-rps behaviour."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lpzero_queue.proxies.correlation import rank_correlations
from lpzero_queue.proxies.expression import LPZERO_FLEXIBERT, LPZERO_GPT2, parse_expression
from lpzero_queue.search.config import SearchConfig
from lpzero_queue.search.pruning import (
    DYNAMIC_RULES,
    STATIC_RULES,
    correlation_fitness,
    dynamic_prune,
    hard_failure,
    rule_status,
    search_fitness,
    static_prune,
)

STATIC_EXAMPLES = {
    "difference_of_identical_branches": "difference(abs(abs(act)), no_op(abs(act)))",
    "scalar_then_normalizer": "sum(softmax(mean(act)), normalize(l1_norm(head)))",
    "product_with_zero_branch": "product(normalize(mean(act)), square(head))",
    "constant_branch": "sum(softmax(mean(act)), square(head))",
}
GOOD = [LPZERO_GPT2, "difference(square(head), abs(act))", "product(mean(act), invert(grad))"]
RPS = SearchConfig()
NO_RPS = SearchConfig(rps=False)


@pytest.mark.parametrize("rule", sorted(STATIC_EXAMPLES))
def test_each_static_rule_fires_on_its_example(rule: str) -> None:
    decision = static_prune(parse_expression(STATIC_EXAMPLES[rule]), set())
    assert decision.rule == rule
    assert static_prune(parse_expression(STATIC_EXAMPLES[rule]), set(), rps=False).rule is None


def test_constant_branch_fires_under_every_binary_operator() -> None:
    for binary in ("sum", "difference", "product"):
        expr = parse_expression(f"{binary}(square(head), softmax(mean(act)))")
        assert static_prune(expr, set()).rule == "constant_branch"


def test_duplicates_are_checked_on_the_canonical_form() -> None:
    first = static_prune(parse_expression("sum(abs(abs(act)), square(head))"), set())
    assert first.rule is None
    assert first.canonical_text == "sum(abs(act), square(head))"
    seen = {first.canonical_text}
    twin = parse_expression("sum(no_op(square(head)), abs(act))")  # same after canonicalisation
    decision = static_prune(twin, seen)
    assert decision.rule == "duplicate"
    assert decision.canonical == first.canonical
    assert static_prune(twin, seen, rps=False).rule is None  # --no-rps: evaluated again
    assert seen == {first.canonical_text}  # not modified


def test_published_flexibert_proxy_has_a_constant_branch() -> None:
    # logsoftmax of a scalar is 0 for every architecture: the proxy is square(head) alone.
    assert static_prune(parse_expression(LPZERO_FLEXIBERT), set()).rule == "constant_branch"


@pytest.mark.parametrize("text", GOOD)
def test_good_expressions_pass(text: str) -> None:
    assert static_prune(parse_expression(text), set()).rule is None


def population(n: int, fitness: float = 0.6) -> list[float]:
    return [fitness] * n


TRUTH = [float(i) for i in range(10)]
OK = ["ok"] * 10


def test_hard_failures() -> None:
    assert hard_failure([1.0, None], ["ok", "error"]) == "error"
    assert hard_failure([1.0, None], ["ok", "timeout"]) == "error"
    assert hard_failure([1.0, None], ["ok", "ok"]) == "error"  # inconsistent result
    assert hard_failure([1.0, None], ["ok", "nonfinite"]) == "nonfinite"
    assert hard_failure([1.0, math.inf], ["ok", "ok"]) == "nonfinite"
    assert hard_failure([2.0, 2.0, 2.0], ["ok"] * 3) == "all_identical"
    assert hard_failure([2.0], ["ok"]) is None
    assert hard_failure([1.0, 2.0], ["ok", "ok"]) is None
    with pytest.raises(ValueError, match="differ in length"):
        hard_failure([1.0], ["ok", "ok"])


def test_dynamic_rules_fire_on_their_examples() -> None:
    scores: list[float | None] = [float(i) for i in range(10)]
    statuses = ["error", *OK[1:]]
    assert dynamic_prune([None, *scores[1:]], statuses, TRUTH, population(20), RPS) == "error"
    nonfinite = ["nonfinite", *OK[1:]]
    assert dynamic_prune([None, *scores[1:]], nonfinite, TRUTH, population(20), RPS) == "nonfinite"
    assert dynamic_prune([3.0] * 10, OK, TRUTH, [], RPS) == "all_identical"
    reversed_scores: list[float | None] = [-s for s in TRUTH]  # rho = -1
    assert dynamic_prune(reversed_scores, OK, TRUTH, population(20), RPS) == "probe_far_below"
    assert dynamic_prune(scores, OK, TRUTH, population(20), RPS) is None  # rho = 1


def test_probe_far_below_is_relative_to_the_population_median() -> None:
    # Two swapped pairs: rho = 1 - 6 * 4 / 990 = 0.9758.
    scores: list[float | None] = [1.0, 0.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 9.0, 8.0]
    rho = 1 - 6 * 4 / 990
    below = population(20, rho + RPS.probe_margin + 0.01)
    at = population(20, rho + RPS.probe_margin - 0.01)
    assert dynamic_prune(scores, OK, TRUTH, below, RPS) == "probe_far_below"
    assert dynamic_prune(scores, OK, TRUTH, at, RPS) is None
    # Too few members with a fitness: the rule does not apply.
    small = population(RPS.probe_min_population - 1, 2.0) + [math.nan] * 5
    assert dynamic_prune(scores, OK, TRUTH, small, RPS) is None
    kendall = SearchConfig(fitness="kendall", probe_margin=0.0)
    # Kendall tau of the same scores: 1 - 2 * 2 / 45 = 0.911 < 0.95.
    assert dynamic_prune(scores, OK, TRUTH, population(20, 0.95), kendall) == "probe_far_below"


def test_no_rps_keeps_only_hard_failures() -> None:
    assert dynamic_prune([3.0] * 10, OK, TRUTH, population(20), NO_RPS) is None
    reversed_scores: list[float | None] = [-s for s in TRUTH]
    assert dynamic_prune(reversed_scores, OK, TRUTH, population(20), NO_RPS) is None
    statuses = ["error", *OK[1:]]
    assert dynamic_prune([None, *TRUTH[1:]], statuses, TRUTH, [], NO_RPS) == "error"
    assert dynamic_prune([math.nan, *TRUTH[1:]], OK, TRUTH, [], NO_RPS) == "nonfinite"


def test_correlation_fitness_matches_rank_correlations() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        scores = rng.integers(0, 6, size=12).astype(float)  # with ties
        truth = scores + rng.normal(size=12)
        report = rank_correlations(
            scores, truth, higher_is_better_truth=True, higher_is_better_proxy=True
        )
        assert correlation_fitness(scores, truth, "spearman") == pytest.approx(report.spearman)
        assert correlation_fitness(scores, truth, "kendall") == pytest.approx(report.kendall)
    assert correlation_fitness([1.0, 1.0, 1.0], [1.0, 2.0, 3.0], "spearman") is None
    with pytest.raises(ValueError, match="unknown fitness metric"):
        correlation_fitness([1.0, 2.0], [1.0, 2.0], "pearson")
    with pytest.raises(ValueError, match="finite"):
        correlation_fitness([1.0, math.nan], [1.0, 2.0], "spearman")


def test_rule_status() -> None:
    statuses = {rule: rule_status(rule) for rule in STATIC_RULES + DYNAMIC_RULES}
    assert statuses == {
        "difference_of_identical_branches": "constant",
        "scalar_then_normalizer": "constant",
        "product_with_zero_branch": "constant",
        "constant_branch": "pruned",
        "duplicate": "pruned",
        "error": "error",
        "nonfinite": "nonfinite",
        "all_identical": "constant",
        "probe_far_below": "pruned",
    }
    with pytest.raises(ValueError, match="unknown pruning rule"):
        rule_status("vibes")


def test_constant_branch_under_total_fires_for_product_only() -> None:
    # total(sum(c, x)) = n * c + sum(x): the constant adds the depth, a ranking of its own.
    for binary in ("sum", "difference"):
        expr = parse_expression(f"total({binary}(softmax(mean(act)), square(head)))")
        assert static_prune(expr, set()).rule is None
    expr = parse_expression("total(product(softmax(mean(act)), square(head)))")
    assert static_prune(expr, set()).rule == "constant_branch"


def test_search_fitness_blends_the_within_strata_correlation() -> None:
    truth = [1.0, 2.0, 3.0, 4.0, 11.0, 12.0, 13.0, 14.0]
    strata = [2, 2, 2, 2, 4, 4, 4, 4]
    depth_only = [1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0]  # ranks depth, nothing within
    reversed_within = [4.0, 3.0, 2.0, 1.0, 14.0, 13.0, 12.0, 11.0]
    overall = correlation_fitness(reversed_within, truth, "spearman")
    assert search_fitness(reversed_within, truth, "spearman") == overall  # w = 0: published
    blended = search_fitness(reversed_within, truth, "spearman", strata=strata, within_weight=0.5)
    assert overall is not None and blended == pytest.approx(0.5 * overall + 0.5 * -1.0)
    # Constant inside every stratum (ranks depth only): it ranks nothing within, which counts 0.
    depth_fit = correlation_fitness(depth_only, truth, "kendall")
    assert depth_fit is not None
    assert search_fitness(
        depth_only, truth, "kendall", strata=strata, within_weight=0.5
    ) == pytest.approx(0.5 * depth_fit)
    # Strata whose truth is constant, or with fewer than 3 members, do not count.
    assert search_fitness(
        reversed_within, [1.0] * 4 + truth[4:], "spearman", strata=strata, within_weight=0.5
    ) == pytest.approx(
        0.5 * correlation_fitness(reversed_within, [1.0] * 4 + truth[4:], "spearman") - 0.5
    )
    with pytest.raises(ValueError, match="strata"):
        search_fitness(truth, truth, "spearman", strata=[1, 2], within_weight=0.5)
