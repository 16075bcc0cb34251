"""Correlation tables of proxies against ground truth, and paired comparisons between proxies.

Numbers in, records out: nothing here reads the database or runs a model. The workflow that
scores proxies and stores these tables is :func:`lpzero_queue.workflows.proxy_report.run_report`.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from lpzero_queue.proxies.correlation import (
    BootstrapDiff,
    fine_strata_for,
    paired_bootstrap,
    rank_correlations,
    strata_for,
)
from lpzero_queue.proxies.scoring import ScoringSetup
from lpzero_queue.proxies.spec import TRIVIAL_BASELINES, ProxySpec

__all__ = [
    "Comparison",
    "Report",
    "ReportRow",
    "best_free_baseline",
    "compare_rows",
    "correlate_scores",
    "held_out_comparisons",
]


@dataclass(frozen=True)
class ReportRow:
    """One proxy's correlation on the evaluated architectures."""

    proxy: ProxySpec
    n: int
    spearman: float | None
    kendall: float | None
    within_kendall: float | None
    top10_overlap: float | None
    failed: int
    per_seed_kendall: list[float | None] = field(default_factory=list)
    kendall_tiefair: float | None = None
    within_tiefair: float | None = None  # mean tie-fair Kendall inside depth strata
    within_fine_tiefair: float | None = None  # ... inside (depth, width) strata
    # Mean score over seeds per architecture id (for paired comparisons); scored ones only.
    scores: dict[int, float] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class Report:
    """A correlation table and how it was obtained."""

    benchmark: str
    split: str
    search_split: str
    n_archs: int
    seeds: tuple[int, ...]
    setup: ScoringSetup
    batch_hashes: tuple[str, ...]
    rows: list[ReportRow]
    max_archs: int | None = None  # the split cut to its first N architectures (a quick look)
    # Ground truth per architecture id, oriented higher-is-better.
    truth: dict[int, float] = field(default_factory=dict, hash=False, compare=False)
    higher_truth: bool = True

    def row(self, text: str) -> ReportRow:
        """The row of the proxy whose text (expression or baseline name) is ``text``."""
        for r in self.rows:
            if r.proxy.text == text:
                return r
        raise KeyError(text)


def correlate_scores(
    spec: ProxySpec,
    scores: dict[int, dict[int, float | None]],
    truth: dict[int, float],
    layers: dict[int, tuple[int, int]],
    space: str,
    higher_truth: bool,
    seeds: Sequence[int],
) -> ReportRow:
    """One proxy's report row: correlate its mean score over seeds with the truth.

    Architectures failing on any seed are counted out.

    Args:
        scores: architecture id -> seed -> score (None unless ok).
        truth: architecture id -> ground truth, as stored.
        layers: architecture id -> (n_layers, hidden_size), for the within-stratum figures.
    """
    ok = [a for a in truth if all(scores.get(a, {}).get(sd) is not None for sd in seeds)]
    failed = len(truth) - len(ok)
    if len(ok) < 3:
        return ReportRow(spec, len(ok), None, None, None, None, failed)
    higher_proxy = spec.direction == "higher"
    mean_scores = [statistics.fmean(scores[a][sd] for sd in seeds) for a in ok]  # type: ignore[misc]
    rep = rank_correlations(
        mean_scores,
        [truth[a] for a in ok],
        higher_is_better_truth=higher_truth,
        higher_is_better_proxy=higher_proxy,
        strata=strata_for(space, [layers[a][0] for a in ok]),
        fine_strata=fine_strata_for(space, [layers[a][0] for a in ok], [layers[a][1] for a in ok]),
    )
    per_seed: list[float | None] = []
    if len(seeds) > 1:
        for sd in seeds:
            one = rank_correlations(
                [scores[a][sd] for a in ok],  # type: ignore[misc]
                [truth[a] for a in ok],
                higher_is_better_truth=higher_truth,
                higher_is_better_proxy=higher_proxy,
            )
            per_seed.append(one.kendall)
    sign = 1.0 if higher_proxy else -1.0
    return ReportRow(
        spec,
        rep.n,
        rep.spearman,
        rep.kendall,
        rep.within_kendall,
        rep.top10_overlap,
        failed,
        per_seed,
        kendall_tiefair=rep.kendall_tiefair,
        within_tiefair=rep.within_tiefair,
        within_fine_tiefair=rep.within_fine_tiefair,
        scores={a: sign * v for a, v in zip(ok, mean_scores, strict=True)},
    )


@dataclass(frozen=True)
class Comparison:
    """Proxy ``a`` against proxy ``b`` on the architectures both scored (tie-fair Kendall)."""

    a: str
    b: str
    n: int
    result: BootstrapDiff


def compare_rows(report: Report, a: str, b: str, *, resamples: int = 1000) -> Comparison | None:
    """Paired bootstrap of the tie-fair Kendall difference ``a - b`` (texts of two rows).

    None when fewer than 3 architectures carry both scores or the truth is constant there.
    """
    ra, rb = report.row(a), report.row(b)
    common = [i for i in report.truth if i in ra.scores and i in rb.scores]
    truth = [report.truth[i] for i in common]
    if len(common) < 3 or len(set(truth)) < 2:
        return None
    result = paired_bootstrap(
        [ra.scores[i] for i in common],
        [rb.scores[i] for i in common],
        truth,
        resamples=resamples,
    )
    return Comparison(a, b, len(common), result)


def best_free_baseline(report: Report) -> str | None:
    """The trivial (structural, free) baseline with the highest tie-fair Kendall in ``report``."""
    rows = [
        r
        for r in report.rows
        if r.proxy.text in TRIVIAL_BASELINES and r.kendall_tiefair is not None
    ]
    return max(rows, key=lambda r: r.kendall_tiefair or 0.0).proxy.text if rows else None


def held_out_comparisons(report: Report, searched: str, published: str) -> list[Comparison]:
    """The searched proxy against the best free baseline and the published proxy.

    The best free baseline is picked on the same split it is compared on, which can only favour
    the baseline.
    """
    out = []
    for other in (best_free_baseline(report), published):
        if other is None or other == searched:
            continue
        comparison = compare_rows(report, searched, other)
        if comparison is not None:
            out.append(comparison)
    return out
