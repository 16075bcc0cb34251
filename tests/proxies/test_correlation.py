"""Tests for ranking statistics: hand-computed cases, scipy agreement, directions and strata."""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pytest
from scipy import stats

from lpzero_queue.proxies.correlation import (
    CorrelationReport,
    depth_strata_gpt2,
    rank_correlations,
)


def corr(scores, truth, strata=None, proxy_up=True, truth_up=True) -> CorrelationReport:  # type: ignore[no-untyped-def]
    return rank_correlations(
        scores,
        truth,
        higher_is_better_truth=truth_up,
        higher_is_better_proxy=proxy_up,
        strata=strata,
    )


def test_hand_computed_spearman_and_kendall_with_ties() -> None:
    # d = (-1, 1, -1, 1, 0): rho = 1 - 6 * 4 / (5 * 24) = 0.8
    assert corr([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]).spearman == pytest.approx(0.8)
    # 5 concordant pairs, 0 discordant, 1 pair tied in x only: tau-b = 5 / sqrt(6 * 5)
    report = corr([1, 2, 2, 3], [1, 3, 2, 4])
    assert report.kendall == pytest.approx(5 / math.sqrt(30))
    assert report.n == 4


def test_agrees_with_scipy_on_random_data_with_ties() -> None:
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 20, size=60).astype(float)
    truth = scores + rng.normal(0, 5, size=60)
    report = corr(scores.tolist(), truth.tolist())
    assert report.spearman == pytest.approx(stats.spearmanr(scores, truth).statistic, abs=1e-12)
    assert report.kendall == pytest.approx(stats.kendalltau(scores, truth).statistic, abs=1e-12)
    assert report.spearman is not None and report.spearman > 0.5


@pytest.mark.parametrize(
    ("proxy_up", "truth_up", "sign"),
    [(True, True, 1), (False, False, 1), (True, False, -1), (False, True, -1)],
)
def test_directions_are_normalised(proxy_up: bool, truth_up: bool, sign: int) -> None:
    # Perplexity-like truth and a proxy that grows with it.
    report = corr([1, 2, 3, 4], [10, 20, 30, 40], proxy_up=proxy_up, truth_up=truth_up)
    assert report.spearman == pytest.approx(sign)
    assert report.kendall == pytest.approx(sign)
    assert report.top10_overlap == (1.0 if sign == 1 else 0.0)


@pytest.mark.parametrize(("n", "k"), [(2, 1), (5, 1), (10, 1), (11, 2), (20, 2), (30, 3)])
def test_top10_size(n: int, k: int) -> None:
    truth = list(range(n))
    scores = truth.copy()
    scores[-1] = -1  # the best architecture by truth falls to the bottom by proxy
    report = corr(scores, truth)
    assert report.top10_overlap == pytest.approx((k - 1) / k)


def test_top10_uses_the_best_by_each_direction() -> None:
    ppl = [50.0, 10.0, 40.0, 30.0, 20.0]  # best (lowest) is index 1
    assert corr([5, 1, 4, 3, 2], ppl, proxy_up=False, truth_up=False).top10_overlap == 1.0
    assert corr([5, 1, 4, 3, 2], ppl, proxy_up=True, truth_up=False).top10_overlap == 0.0


def test_constant_inputs_give_none_without_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for scores, truth in [([1.0] * 5, [1, 2, 3, 4, 5]), ([1, 2, 3, 4, 5], [7] * 5)]:
            report = corr(scores, truth, strata=[0] * 5)
            assert report.spearman is None and report.kendall is None
            assert report.top10_overlap is None
            assert report.within == {0: (5, None)} and report.within_kendall is None


@pytest.mark.parametrize(
    ("scores", "truth", "fragment"),
    [
        ([1.0, math.nan, 2.0], [1, 2, 3], "NaN"),
        ([1.0, None, 2.0], [1, 2, 3], "None"),
        ([1.0, math.inf, 2.0], [1, 2, 3], "infinite"),
        ([1.0, 2.0, 3.0], [1, math.nan, 3], "truth"),
        ([1.0, 2.0], [1, 2, 3], "length"),
        ([1.0], [1], "at least two"),
    ],
)
def test_invalid_values_raise(scores, truth, fragment: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=fragment):
        corr(scores, truth)


def test_within_strata() -> None:
    # Stratum "a": perfectly ordered; "b": perfectly reversed; "c": too small; "d": constant truth.
    scores = [1, 2, 3, 4, 3, 2, 1, 9, 8, 1, 2, 3]
    truth = [1, 2, 3, 4, 1, 2, 3, 5, 6, 7, 7, 7]
    strata = ["a"] * 4 + ["b"] * 3 + ["c"] * 2 + ["d"] * 3
    report = corr(scores, truth, strata=strata)
    assert report.within == {"a": (4, 1.0), "b": (3, -1.0), "c": (2, None), "d": (3, None)}
    assert report.within_kendall == pytest.approx(0.0)
    # Directions apply inside strata too.
    flipped = corr(scores, truth, strata=strata, proxy_up=False)
    assert flipped.within["a"] == (4, -1.0)


def test_within_against_scipy_and_no_strata() -> None:
    rng = np.random.default_rng(1)
    scores, truth = rng.normal(size=40), rng.normal(size=40)
    layers = [2, 4] * 20
    report = corr(scores.tolist(), truth.tolist(), strata=layers)
    for depth in (2, 4):
        mask = np.asarray(layers) == depth
        expected = stats.kendalltau(scores[mask], truth[mask]).statistic
        assert report.within[depth] == (20, pytest.approx(expected))
    assert report.within_kendall == pytest.approx(
        np.mean([report.within[2][1], report.within[4][1]])
    )
    plain = corr(scores.tolist(), truth.tolist())
    assert plain.within == {} and plain.within_kendall is None
    with pytest.raises(ValueError, match="strata"):
        corr([1, 2, 3], [1, 2, 3], strata=[1, 2])


def test_report_is_frozen_and_hashable() -> None:
    report = corr([1, 2, 3], [1, 2, 3], strata=[1, 1, 1])
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.n = 4  # type: ignore[misc]
    hash(report)


def test_depth_strata_gpt2() -> None:
    layers = [2, 4, 5, 7, 8, 10, 11, 13, 14, 16]
    assert depth_strata_gpt2(layers) == [
        "2-4", "2-4", "5-7", "5-7", "8-10", "8-10", "11-13", "11-13", "14-16", "14-16"
    ]  # fmt: skip
    for bad in (1, 17, 3.5, True):
        with pytest.raises(ValueError, match=r"2\.\.16"):
            depth_strata_gpt2([bad])  # type: ignore[list-item]
