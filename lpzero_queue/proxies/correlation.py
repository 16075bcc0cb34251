"""Ranking statistics between proxy scores and ground truth.

Directions are normalised first: both the proxy and the truth are turned into "higher is better"
(negated when lower is better), so a positive correlation always means that the proxy ranks
architectures like their trained quality. Benchmarks where depth alone predicts quality (on
FlexiBERT the layer count gives rho 0.834) are also reported *within* depth strata: for FlexiBERT
the stratum is simply the layer count (2 or 4); for GPT-2 use :func:`depth_strata_gpt2`.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

__all__ = ["CorrelationReport", "depth_strata_gpt2", "rank_correlations"]

MIN_STRATUM = 3  # Kendall tau on fewer than 3 architectures is too coarse to average


@dataclass(frozen=True)
class CorrelationReport:
    """Rank agreement between a proxy and the ground truth, directions normalised.

    Attributes:
        n: Number of architectures.
        spearman: Spearman rho, or None when either side is constant.
        kendall: Kendall tau-b, or None when either side is constant.
        top10_overlap: |top-10% by proxy ∩ top-10% by truth| / k with k = max(1, ceil(n / 10));
            ties at the cut are broken by input order. None when either side is constant.
        within_kendall: Mean Kendall tau-b over the strata that qualify (at least 3 members and
            neither side constant inside the stratum); None without strata or if none qualifies.
        within: Stratum -> (members, tau-b or None when the stratum does not qualify).
    """

    n: int
    spearman: float | None
    kendall: float | None
    top10_overlap: float | None
    within_kendall: float | None = None
    within: Mapping[Hashable, tuple[int, float | None]] = field(default_factory=dict, hash=False)


def _finite_array(values: Sequence[float], what: str) -> np.ndarray:
    if any(v is None for v in values):
        raise ValueError(f"{what} contains None; filter unscored architectures first")
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{what} contains NaN or infinite values; filter them first")
    return array


def _is_constant(x: np.ndarray) -> bool:
    return bool(np.all(x == x[0]))


def _kendall(x: np.ndarray, y: np.ndarray) -> float | None:
    if _is_constant(x) or _is_constant(y):
        return None
    return float(stats.kendalltau(x, y).statistic)  # tau-b (scipy's default variant)


def _top_fraction_overlap(proxy: np.ndarray, truth: np.ndarray) -> float:
    k = max(1, -(-len(proxy) // 10))  # ceil(n / 10) in integers (0.1 * n can round up wrongly)
    by_proxy = np.argsort(-proxy, kind="stable")[:k]
    by_truth = np.argsort(-truth, kind="stable")[:k]
    return len(set(by_proxy.tolist()) & set(by_truth.tolist())) / k


def rank_correlations(
    scores: Sequence[float],
    truth: Sequence[float],
    *,
    higher_is_better_truth: bool,
    higher_is_better_proxy: bool,
    strata: Sequence[Hashable] | None = None,
) -> CorrelationReport:
    """Compare proxy scores with ground truth for the same architectures.

    Args:
        scores: Proxy score per architecture (finite; filter failed evaluations first).
        truth: Ground truth per architecture, same order (e.g. GLUE score, or perplexity).
        higher_is_better_truth: False for truths like perplexity.
        higher_is_better_proxy: The proxy's declared direction (LPZero GPT-2: False).
        strata: Optional group per architecture (e.g. depth) for the within-stratum Kendall tau.

    Returns:
        The report; a positive correlation means the proxy ranks like the quality.

    Raises:
        ValueError: on None/NaN/infinite values, mismatched lengths, or fewer than 2 architectures.
    """
    s = _finite_array(scores, "scores")
    t = _finite_array(truth, "truth")
    if len(s) != len(t):
        raise ValueError(f"scores ({len(s)}) and truth ({len(t)}) differ in length")
    if len(s) < 2:
        raise ValueError("at least two architectures are needed to compare rankings")
    s = s if higher_is_better_proxy else -s
    t = t if higher_is_better_truth else -t
    constant = _is_constant(s) or _is_constant(t)
    spearman = None if constant else float(stats.spearmanr(s, t).statistic)
    kendall = _kendall(s, t)
    top10 = None if constant else _top_fraction_overlap(s, t)

    within: dict[Hashable, tuple[int, float | None]] = {}
    within_kendall: float | None = None
    if strata is not None:
        if len(strata) != len(s):
            raise ValueError(f"strata ({len(strata)}) and scores ({len(s)}) differ in length")
        groups: dict[Hashable, list[int]] = {}
        for i, stratum in enumerate(strata):
            groups.setdefault(stratum, []).append(i)
        try:
            keys = sorted(groups)  # type: ignore[type-var]
        except TypeError:  # unorderable mix of keys: keep first-appearance order
            keys = list(groups)
        for key in keys:
            idx = np.asarray(groups[key])
            tau = _kendall(s[idx], t[idx]) if len(idx) >= MIN_STRATUM else None
            within[key] = (len(idx), tau)
        taus = [tau for _, tau in within.values() if tau is not None]
        within_kendall = float(np.mean(taus)) if taus else None

    return CorrelationReport(
        n=len(s),
        spearman=spearman,
        kendall=kendall,
        top10_overlap=top10,
        within_kendall=within_kendall,
        within=within,
    )


def depth_strata_gpt2(n_layers: Sequence[int]) -> list[str]:
    """Group GPT-2 (LiteTransformerSearch) architectures by depth, three layer counts per group.

    The benchmark spans 2 to 16 layers; bins of three ("2-4", "5-7", "8-10", "11-13", "14-16")
    keep each group populated while removing most of the depth signal inside a group.

    Args:
        n_layers: Layer count per architecture.

    Returns:
        The bin label per architecture, in input order.

    Raises:
        ValueError: for a layer count outside 2..16.
    """
    labels = []
    for n in n_layers:
        if isinstance(n, bool) or int(n) != n or not 2 <= n <= 16:
            raise ValueError(f"GPT-2 layer count must be an integer in 2..16, got {n!r}")
        low = 2 + 3 * ((int(n) - 2) // 3)
        labels.append(f"{low}-{low + 2}")
    return labels
