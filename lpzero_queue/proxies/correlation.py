"""Ranking statistics between proxy scores and ground truth.

Directions are normalised first: both the proxy and the truth are turned into "higher is better"
(negated when lower is better), so a positive correlation always means that the proxy ranks
architectures like their trained quality. Benchmarks where depth alone predicts quality (on
FlexiBERT the layer count gives rho 0.834) are also reported *within* depth strata: for FlexiBERT
the stratum is simply the layer count (2 or 4); for GPT-2 use :func:`depth_strata_gpt2`; and
within finer (depth, width) strata, where a depth/width detector ranks nothing.

**Tie-fair Kendall.** Kendall tau-b drops the pairs a proxy ties, so a key with a few values (the
layer count: 2 values over 500 architectures) looks better than it ranks. The tie-fair figure is
``tau_b * sqrt((n0 - n1) / n0)`` with ``n0`` all pairs and ``n1`` the pairs tied in the proxy: the
expected Kendall after breaking the proxy's ties at random, which is what a user choosing among
tied architectures gets. A proxy constant on a set scores 0 there. Goals and "beats" claims use it.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

__all__ = [
    "BootstrapDiff",
    "CorrelationReport",
    "depth_strata_gpt2",
    "fine_strata_for",
    "kendall_tiefair",
    "paired_bootstrap",
    "rank_correlations",
    "strata_for",
]

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
        kendall_tiefair: Tie-fair Kendall (module docstring); 0 for a constant proxy, None when
            the truth is constant.
        within_tiefair: Mean tie-fair Kendall over the depth strata whose truth varies (at least
            3 members; a proxy constant inside one counts 0 there).
        within_fine_tiefair: The same over the finer strata (e.g. (depth, width)).
        within_fine: Fine stratum -> (members, tie-fair Kendall or None).
    """

    n: int
    spearman: float | None
    kendall: float | None
    top10_overlap: float | None
    within_kendall: float | None = None
    within: Mapping[Hashable, tuple[int, float | None]] = field(default_factory=dict, hash=False)
    kendall_tiefair: float | None = None
    within_tiefair: float | None = None
    within_fine_tiefair: float | None = None
    within_fine: Mapping[Hashable, tuple[int, float | None]] = field(
        default_factory=dict, hash=False
    )


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


def _tied_pairs(x: np.ndarray) -> int:
    _, counts = np.unique(x, return_counts=True)
    return int((counts * (counts - 1) // 2).sum())


def kendall_tiefair(
    scores: Sequence[float] | np.ndarray, truth: Sequence[float] | np.ndarray
) -> float | None:
    """Tie-fair Kendall of ``scores`` against ``truth`` (both oriented higher-is-better).

    ``tau_b * sqrt((n0 - n1) / n0)``: the expected Kendall once the proxy's ties are broken at
    random. A constant proxy gives 0 (it ranks nothing); a constant truth gives None.

    Raises:
        ValueError: on fewer than two values or unequal lengths.
    """
    x = np.asarray(scores, dtype=np.float64)
    y = np.asarray(truth, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 2:
        raise ValueError(f"need equal-length sequences of >= 2 values, got {x.shape}, {y.shape}")
    if _is_constant(y):
        return None
    if _is_constant(x):
        return 0.0
    n0 = len(x) * (len(x) - 1) // 2
    tau = float(stats.kendalltau(x, y).statistic)
    return tau * float(np.sqrt((n0 - _tied_pairs(x)) / n0))


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
    fine_strata: Sequence[Hashable] | None = None,
) -> CorrelationReport:
    """Compare proxy scores with ground truth for the same architectures.

    Args:
        scores: Proxy score per architecture (finite; filter failed evaluations first).
        truth: Ground truth per architecture, same order (e.g. GLUE score, or perplexity).
        higher_is_better_truth: False for truths like perplexity.
        higher_is_better_proxy: The proxy's declared direction (LPZero GPT-2: False).
        strata: Optional group per architecture (e.g. depth) for the within-stratum figures.
        fine_strata: Optional finer group per architecture (e.g. (depth, width)).

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
    within, within_kendall, within_fair = _strata_figures(s, t, strata)
    fine, _, fine_fair = _strata_figures(s, t, fine_strata)
    return CorrelationReport(
        n=len(s),
        spearman=None if constant else float(stats.spearmanr(s, t).statistic),
        kendall=_kendall(s, t),
        top10_overlap=None if constant else _top_fraction_overlap(s, t),
        within_kendall=within_kendall,
        within={k: (n, tau) for k, (n, tau, _) in within.items()},
        kendall_tiefair=kendall_tiefair(s, t),
        within_tiefair=within_fair,
        within_fine_tiefair=fine_fair,
        within_fine={k: (n, fair) for k, (n, _, fair) in fine.items()},
    )


def _groups(strata: Sequence[Hashable], n: int) -> dict[Hashable, list[int]]:
    if len(strata) != n:
        raise ValueError(f"strata ({len(strata)}) and scores ({n}) differ in length")
    groups: dict[Hashable, list[int]] = {}
    for i, stratum in enumerate(strata):
        groups.setdefault(stratum, []).append(i)
    try:
        return {k: groups[k] for k in sorted(groups)}  # type: ignore[type-var]
    except TypeError:  # unorderable mix of keys: keep first-appearance order
        return groups


def _strata_figures(
    s: np.ndarray, t: np.ndarray, strata: Sequence[Hashable] | None
) -> tuple[dict[Hashable, Any], float | None, float | None]:
    """Per stratum (members, tau-b, tie-fair); the mean tau-b and the mean tie-fair Kendall.

    tau-b is averaged over strata where neither side is constant (as before); tie-fair over
    strata where the truth varies, a proxy constant there counting 0.
    """
    if strata is None:
        return {}, None, None
    out: dict[Hashable, tuple[int, float | None, float | None]] = {}
    for key, members in _groups(strata, len(s)).items():
        idx = np.asarray(members)
        big = len(idx) >= MIN_STRATUM
        tau = _kendall(s[idx], t[idx]) if big else None
        fair = kendall_tiefair(s[idx], t[idx]) if big else None
        out[key] = (len(idx), tau, fair)
    taus = [tau for _, tau, _ in out.values() if tau is not None]
    fairs = [fair for _, _, fair in out.values() if fair is not None]
    return (
        out,
        float(np.mean(taus)) if taus else None,
        float(np.mean(fairs)) if fairs else None,
    )


@dataclass(frozen=True)
class BootstrapDiff:
    """A paired bootstrap of ``metric(a) - metric(b)`` over the same architectures.

    Attributes:
        diff: The observed difference.
        low: Lower end of the two-sided interval.
        high: Upper end.
        level: Confidence level of the interval (0.95).
        resamples: Bootstrap resamples drawn.
        seed: Seed of the resampling generator.
    """

    diff: float
    low: float
    high: float
    level: float
    resamples: int
    seed: int

    @property
    def verdict(self) -> str:
        """``"beats"`` (interval above 0), ``"loses"`` (below 0) or ``"tie"`` (contains 0)."""
        if self.low > 0:
            return "beats"
        if self.high < 0:
            return "loses"
        return "tie"


def paired_bootstrap(
    a: Sequence[float],
    b: Sequence[float],
    truth: Sequence[float],
    *,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> BootstrapDiff:
    """Percentile interval of the tie-fair Kendall difference of two proxies on the same archs.

    Architectures are resampled with replacement; both proxies are scored on every resample, so
    the interval reflects how much the comparison depends on which architectures were drawn.
    Scores and truth must be oriented higher-is-better.

    Raises:
        ValueError: on unequal lengths, fewer than 3 architectures, or a constant truth.
    """
    x, y, t = (np.asarray(v, dtype=np.float64) for v in (a, b, truth))
    if not (x.shape == y.shape == t.shape) or len(t) < 3:
        raise ValueError("paired bootstrap needs >= 3 architectures with two scores and a truth")
    observed = _fair_diff(x, y, t)
    if observed is None:
        raise ValueError("paired bootstrap needs a truth that varies")
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(resamples):
        idx = rng.integers(0, len(t), len(t))
        d = _fair_diff(x[idx], y[idx], t[idx])
        if d is not None:
            diffs.append(d)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(np.asarray(diffs), [tail, 1.0 - tail])
    return BootstrapDiff(observed, float(low), float(high), level, resamples, seed)


def _fair_diff(x: np.ndarray, y: np.ndarray, t: np.ndarray) -> float | None:
    fx, fy = kendall_tiefair(x, t), kendall_tiefair(y, t)
    return None if fx is None or fy is None else fx - fy


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


def strata_for(space: str, n_layers: Sequence[int]) -> list[Any]:
    """Within-stratum groups: FlexiBERT by depth, GPT-2 by depth bins."""
    return list(n_layers) if space == "flexibert" else depth_strata_gpt2(list(n_layers))


def fine_strata_for(space: str, n_layers: Sequence[int], widths: Sequence[int]) -> list[Any]:
    """Finer groups: (depth stratum, width), where a depth/width detector ranks nothing."""
    return list(zip(strata_for(space, n_layers), widths, strict=True))
