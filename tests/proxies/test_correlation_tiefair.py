"""Tie-fair Kendall, (depth, width) strata and the paired bootstrap of a difference."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from lpzero_queue.proxies.correlation import (
    kendall_tiefair,
    paired_bootstrap,
    rank_correlations,
)


def _random_tiebreak_mean(x: np.ndarray, y: np.ndarray, draws: int = 4000) -> float:
    """Kendall tau after breaking the proxy's ties at random, averaged over draws."""
    rng = np.random.default_rng(0)
    taus = [stats.kendalltau(x + 1e-9 * rng.random(len(x)), y).statistic for _ in range(draws)]
    return float(np.mean(taus))


def test_tiefair_equals_tau_b_without_ties() -> None:
    x = np.array([3.0, 1.0, 2.0, 5.0, 4.0])
    y = np.array([2.0, 1.0, 3.0, 5.0, 4.0])
    assert kendall_tiefair(x, y) == pytest.approx(stats.kendalltau(x, y).statistic)


def test_tiefair_hand_computed_for_a_two_valued_key() -> None:
    # 4 architectures, key with two values: pairs (0,1) and (2,3) tied in the proxy.
    x = np.array([1.0, 1.0, 2.0, 2.0])
    y = np.array([1.0, 2.0, 3.0, 4.0])
    tau_b = stats.kendalltau(x, y).statistic  # 4 concordant / sqrt(4 * 6)
    assert tau_b == pytest.approx(4 / math.sqrt(24))
    assert kendall_tiefair(x, y) == pytest.approx(tau_b * math.sqrt(4 / 6))  # = 4/6
    assert kendall_tiefair(x, y) == pytest.approx(4 / 6)


def test_tiefair_is_the_expected_kendall_after_random_tie_breaking() -> None:
    rng = np.random.default_rng(3)
    y = rng.normal(size=40)
    x = np.round(y + rng.normal(scale=0.8, size=40))  # a few distinct values, many ties
    assert len(np.unique(x)) < 10
    tau_b = stats.kendalltau(x, y).statistic
    fair = kendall_tiefair(x, y)
    assert fair is not None and fair < tau_b  # ties no longer flatter the key
    assert fair == pytest.approx(_random_tiebreak_mean(x, y), abs=0.01)


def test_constant_proxy_scores_zero_and_constant_truth_none() -> None:
    assert kendall_tiefair([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]) == 0.0
    assert kendall_tiefair([1.0, 2.0, 3.0], [5.0, 5.0, 5.0]) is None


def test_report_carries_tiefair_overall_within_depth_and_fine_strata() -> None:
    depth = [2] * 6 + [4] * 6 + [6, 6]
    width = ([128] * 3 + [256] * 3) * 2 + [128, 256]
    truth = [float(i) for i in range(14)]
    # A depth/width detector: constant inside every (depth, width) group.
    key = [d * 10_000 + w for d, w in zip(depth, width, strict=True)]
    rep = rank_correlations(
        key,
        truth,
        higher_is_better_truth=True,
        higher_is_better_proxy=True,
        strata=depth,
        fine_strata=list(zip(depth, width, strict=True)),
    )
    n0, n1 = 91, 12  # every pair the key does not tie is concordant
    assert rep.kendall == pytest.approx((n0 - n1) / math.sqrt((n0 - n1) * n0))
    assert rep.kendall_tiefair == pytest.approx((n0 - n1) / n0)
    assert rep.within_fine_tiefair == 0.0  # ranks nothing inside a (depth, width) group
    assert rep.within_fine[(2, 128)] == (3, 0.0)
    assert rep.within_fine[(6, 128)] == (1, None)  # below 3 members: not counted
    # Inside a depth group of 6 the key ties 6 of 15 pairs and orders the rest right.
    assert rep.within_tiefair == pytest.approx(9 / 15)


def test_paired_bootstrap_separates_a_clear_winner_and_calls_a_tie() -> None:
    rng = np.random.default_rng(0)
    truth = rng.normal(size=200)
    good = truth + rng.normal(scale=0.3, size=200)
    bad = truth + rng.normal(scale=3.0, size=200)
    win = paired_bootstrap(good, bad, truth, resamples=300)
    assert win.verdict == "beats" and win.low > 0
    assert win.diff == pytest.approx(kendall_tiefair(good, truth) - kendall_tiefair(bad, truth))
    lose = paired_bootstrap(bad, good, truth, resamples=300)
    assert lose.verdict == "loses"
    twin = good + rng.normal(scale=1e-3, size=200)  # practically the same proxy
    tie = paired_bootstrap(good, twin, truth, resamples=300)
    assert tie.verdict == "tie" and tie.low <= 0 <= tie.high


def test_paired_bootstrap_is_deterministic_for_a_seed() -> None:
    rng = np.random.default_rng(1)
    truth, a, b = (rng.normal(size=50) for _ in range(3))
    first = paired_bootstrap(a, b, truth, resamples=200, seed=7)
    assert first == paired_bootstrap(a, b, truth, resamples=200, seed=7)
    assert first != paired_bootstrap(a, b, truth, resamples=200, seed=8)


@pytest.mark.parametrize("n", [2, 3, 5])
def test_tiefair_matches_pair_counting(n: int) -> None:
    # Brute force over all pairs: (C - D) / sqrt(n0 * (n0 - n2)) where n2 = truth ties.
    for x in itertools.product([0.0, 1.0], repeat=n):
        y = np.arange(n, dtype=float)
        xs = np.asarray(x)
        c = d = 0
        for i, j in itertools.combinations(range(n), 2):
            s = np.sign(xs[i] - xs[j]) * np.sign(y[i] - y[j])
            c, d = c + (s > 0), d + (s < 0)
        n0 = n * (n - 1) // 2
        assert kendall_tiefair(xs, y) == pytest.approx((c - d) / n0)
