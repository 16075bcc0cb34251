"""Correlation reports: score proxies on a benchmark split, store every evaluation and correlation.

Evaluations already in the database (same proxy, architecture, batch, seed, builder, objective,
linear scope) are reused, not recomputed: historical results are the point of the database. Every
figure is stored with how it was obtained (split, seeds, batch hashes, builder, objective, linear
scope).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lpzero_queue.benchmarks.splits import SplitSpec, split_positions
from lpzero_queue.errors import NotFoundError
from lpzero_queue.execution.base import Executor
from lpzero_queue.proxies.correlation import (
    BootstrapDiff,
    depth_strata_gpt2,
    paired_bootstrap,
    rank_correlations,
)
from lpzero_queue.proxies.evaluations import (
    Job,
    ScoreTable,
    ensure_batch,
    ensure_proxies,
    score_missing,
)
from lpzero_queue.proxies.scoring import ArchRef, ScoringSetup
from lpzero_queue.proxies.spec import ProxySpec
from lpzero_queue.storage import (
    ArchitectureRow,
    BenchmarkRepository,
    NewCorrelation,
    ReportRepository,
    Session,
    SessionFactory,
    transaction,
)


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


def strata_for(space: str, n_layers: Sequence[int]) -> list[Any]:
    """Within-stratum groups: FlexiBERT by depth, GPT-2 by depth bins."""
    return list(n_layers) if space == "flexibert" else depth_strata_gpt2(list(n_layers))


def fine_strata_for(space: str, n_layers: Sequence[int], widths: Sequence[int]) -> list[Any]:
    """Finer groups: (depth stratum, width), where a depth/width detector ranks nothing."""
    return list(zip(strata_for(space, n_layers), widths, strict=True))


@dataclass(frozen=True)
class _Plan:
    """A report's architectures, their ground truth and what scoring them takes."""

    benchmark_id: int
    space: str
    metric: str
    higher_truth: bool
    job: Job
    batch_hashes: dict[int, str]  # seed -> input batch content hash
    truth: dict[int, float]  # architecture id -> ground truth (as stored)
    layers: dict[int, tuple[int, int]]  # architecture id -> (n_layers, hidden_size)
    max_archs: int | None  # None when the split was not cut


def _chosen_architectures(
    archs: Sequence[ArchitectureRow], split: str, split_spec: SplitSpec, max_archs: int | None
) -> tuple[list[ArchitectureRow], int | None]:
    """The split's architectures, cut to the first ``max_archs`` (None when nothing was cut)."""
    by_pos = {a.position: a for a in archs}
    chosen = [by_pos[p] for p in split_positions(list(by_pos), split, split_spec)]
    if max_archs is not None and max_archs < len(chosen):
        return chosen[:max_archs], max_archs
    return chosen, None


def _plan_report(
    s: Session,
    bench_name: str,
    proxies: Sequence[ProxySpec],
    *,
    split: str,
    split_spec: SplitSpec,
    seeds: Sequence[int],
    setup: ScoringSetup,
    max_archs: int | None,
) -> _Plan:
    """Read the split and its ground truth; make sure the proxies and input batches are stored."""
    benchmarks = BenchmarkRepository(s)
    bench = benchmarks.find(bench_name)
    if bench is None:
        raise NotFoundError(f"no benchmark '{bench_name}' in the database")
    chosen, max_archs = _chosen_architectures(
        benchmarks.architectures(bench.id), split, split_spec, max_archs
    )
    proxy_ids = ensure_proxies(s, proxies)
    batches = {seed: ensure_batch(s, bench, setup, seed) for seed in seeds}
    job = Job(
        setup=setup,
        proxies=tuple(proxies),
        proxy_ids=proxy_ids,
        archs=tuple(ArchRef(a.id, a.key, dict(a.config)) for a in chosen),
        batch_ids={seed: batch.id for seed, batch in batches.items()},
    )
    return _Plan(
        benchmark_id=bench.id,
        space=bench.space,
        metric=bench.metric,
        higher_truth=bench.direction == "higher",
        job=job,
        batch_hashes={seed: batch.content_hash for seed, batch in batches.items()},
        truth=benchmarks.ground_truth([a.id for a in chosen], bench.metric),
        layers={a.id: (a.n_layers, a.hidden_size) for a in chosen},
        max_archs=max_archs,
    )


def _split_label(split: str, split_spec: SplitSpec, max_archs: int | None) -> str:
    """The stored split label: ``all``, or ``test:<search split>``, ending ``:firstN`` if cut."""
    label = split if split == "all" else f"{split}:{split_spec.label}"
    return label if max_archs is None else f"{label}:first{max_archs}"


def _proxy_scores(table: ScoreTable, proxy_id: int) -> dict[int, dict[int, float | None]]:
    """Architecture id -> seed -> score (None unless ok) of one proxy."""
    return {
        arch: {seed: value for seed, (value, _) in by_seed.items()}
        for arch, by_seed in table[proxy_id].items()
    }


def _correlation_row(
    plan: _Plan,
    row: ReportRow,
    *,
    split_label: str,
    seeds: Sequence[int],
    setup: ScoringSetup,
    details: dict[str, Any] | None,
) -> NewCorrelation:
    """The stored form of one report row, with how it was obtained."""
    return NewCorrelation(
        proxy_id=plan.job.proxy_ids[row.proxy.text],
        benchmark_id=plan.benchmark_id,
        split=split_label,
        metric=plan.metric,
        builder=setup.builder,
        objective=setup.objective,
        linear_scope=setup.linear_scope,
        seeds=list(seeds),
        batch_hashes=[plan.batch_hashes[sd] for sd in seeds],
        n=row.n,
        spearman=row.spearman,
        kendall=row.kendall,
        kendall_tiefair=row.kendall_tiefair,
        within_kendall=row.within_kendall,
        within_tiefair=row.within_tiefair,
        within_fine_tiefair=row.within_fine_tiefair,
        top10_overlap=row.top10_overlap,
        details={
            "failed": row.failed,
            "per_seed_kendall": row.per_seed_kendall,
            "batch_shape": [setup.batch_size, setup.seq_len],
            **(details or {}),
        },
    )


def run_report(
    sessions: SessionFactory,
    bench_name: str,
    proxies: Sequence[ProxySpec],
    *,
    split: str,
    split_spec: SplitSpec,
    seeds: Sequence[int],
    setup: ScoringSetup,
    executor: Executor,
    shard_size: int = 25,
    progress: Callable[[int, int], None] | None = None,
    details: dict[str, Any] | None = None,
    max_archs: int | None = None,
) -> Report:
    """Score ``proxies`` on a split of a benchmark, store evaluations and correlations.

    Args:
        progress: called with (units done, units total) as work completes.
        details: extra JSON stored with every correlation row (e.g. the search run's id).
        max_archs: score only the first N architectures of the split; the stored split label
            ends in ``:firstN`` so the figure is never mistaken for the whole split's.
    """
    with transaction(sessions) as s:
        plan = _plan_report(
            s, bench_name, proxies, split=split, split_spec=split_spec, seeds=seeds,
            setup=setup, max_archs=max_archs,
        )  # fmt: skip
    table = score_missing(sessions, plan.job, executor, shard_size=shard_size, progress=progress)
    split_label = _split_label(split, split_spec, plan.max_archs)
    rows = [
        _correlate(
            spec,
            _proxy_scores(table, plan.job.proxy_ids[spec.text]),
            plan.truth,
            plan.layers,
            plan.space,
            plan.higher_truth,
            seeds,
        )
        for spec in proxies
    ]
    with transaction(sessions) as s:
        ReportRepository(s).add_correlations(
            _correlation_row(
                plan, row, split_label=split_label, seeds=seeds, setup=setup, details=details
            )
            for row in rows
        )
    return Report(
        benchmark=bench_name,
        split=split,
        search_split=split_spec.label,
        n_archs=len(plan.job.archs),
        seeds=tuple(seeds),
        setup=setup,
        batch_hashes=tuple(plan.batch_hashes[sd] for sd in seeds),
        rows=rows,
        max_archs=plan.max_archs,
        truth={a: v if plan.higher_truth else -v for a, v in plan.truth.items()},
        higher_truth=plan.higher_truth,
    )


def _correlate(
    spec: ProxySpec,
    scores: dict[int, dict[int, float | None]],
    truth: dict[int, float],
    layers: dict[int, tuple[int, int]],
    space: str,
    higher_truth: bool,
    seeds: Sequence[int],
) -> ReportRow:
    """Correlate the mean score over seeds; architectures failing on any seed are counted out."""
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
    from lpzero_queue.proxies.spec import TRIVIAL_BASELINES

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
