"""Correlation reports: score proxies on a benchmark split, store every evaluation and correlation.

Evaluations already in the database (same proxy, architecture, batch, seed, builder, objective,
linear scope) are reused, not recomputed: historical results are the point of the database. Every
figure is stored with how it was obtained (split, seeds, batch hashes, builder, objective, linear
scope). The rows and the comparisons between proxies are plain numbers, in
:mod:`lpzero_queue.proxies.comparison`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from lpzero_queue.benchmarks.splits import SplitSpec, split_positions
from lpzero_queue.errors import NotFoundError
from lpzero_queue.execution.base import Executor
from lpzero_queue.proxies.comparison import Report, ReportRow, correlate_scores
from lpzero_queue.proxies.scoring import ArchRef, ScoringSetup
from lpzero_queue.proxies.spec import ProxySpec
from lpzero_queue.storage import (
    ArchitectureRow,
    BenchmarkRepository,
    NewCorrelation,
    ReportRepository,
    Session,
    Sessions,
    transaction,
)
from lpzero_queue.workflows.evaluations import (
    Job,
    ScoreTable,
    ensure_batch,
    ensure_proxies,
    score_missing,
)

__all__ = ["run_report"]


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
    sessions: Sessions,
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
        correlate_scores(
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
