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

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from lpzero_queue.benchmarks.splits import SplitSpec, split_positions
from lpzero_queue.execution.base import Executor
from lpzero_queue.proxies.correlation import depth_strata_gpt2, rank_correlations
from lpzero_queue.proxies.evaluations import Job, ensure_batch, ensure_proxies, score_missing
from lpzero_queue.proxies.scoring import ArchRef, ScoringSetup
from lpzero_queue.proxies.spec import ProxySpec
from lpzero_queue.storage import (
    Architecture,
    Benchmark,
    Correlation,
    GroundTruth,
    InputBatch,
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


def strata_for(space: str, n_layers: Sequence[int]) -> list[Any]:
    """Within-stratum groups: FlexiBERT by depth, GPT-2 by depth bins."""
    return list(n_layers) if space == "flexibert" else depth_strata_gpt2(list(n_layers))


def run_report(
    sessions: sessionmaker[Session],
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
        bench = s.scalars(select(Benchmark).where(Benchmark.name == bench_name)).one()
        archs = s.scalars(select(Architecture).where(Architecture.benchmark_id == bench.id)).all()
        by_pos = {a.position: a for a in archs}
        chosen = [by_pos[p] for p in split_positions(list(by_pos), split, split_spec)]
        if max_archs is not None and max_archs < len(chosen):
            chosen = chosen[:max_archs]
        else:
            max_archs = None
        truth = dict(
            s.execute(
                select(GroundTruth.architecture_id, GroundTruth.value).where(
                    GroundTruth.architecture_id.in_([a.id for a in chosen]),
                    GroundTruth.metric == bench.metric,
                )
            ).all()
        )
        job = Job(
            setup=setup,
            proxies=tuple(proxies),
            proxy_ids=ensure_proxies(s, proxies),
            archs=tuple(ArchRef(a.id, a.key, dict(a.config)) for a in chosen),
            batch_ids={seed: ensure_batch(s, bench, setup, seed).id for seed in seeds},
        )
        hashes = {
            seed: s.scalars(select(InputBatch.content_hash).where(InputBatch.id == bid)).one()
            for seed, bid in job.batch_ids.items()
        }
        space, higher_truth = bench.space, bench.direction == "higher"
        layers = {a.id: a.n_layers for a in chosen}
        bench_id, metric = bench.id, bench.metric

    table = score_missing(sessions, job, executor, shard_size=shard_size, progress=progress)
    split_label = split if split == "all" else f"{split}:{split_spec.label}"
    if max_archs is not None:
        split_label += f":first{max_archs}"
    report_rows = []
    with transaction(sessions) as s:
        for spec in proxies:
            pid = job.proxy_ids[spec.text]
            scores = {
                a: {sd: v for sd, (v, _) in by_seed.items()} for a, by_seed in table[pid].items()
            }
            row = _correlate(spec, scores, truth, layers, space, higher_truth, seeds)
            report_rows.append(row)
            s.add(
                Correlation(
                    proxy_id=pid,
                    benchmark_id=bench_id,
                    split=split_label,
                    metric=metric,
                    builder=setup.builder,
                    objective=setup.objective,
                    linear_scope=setup.linear_scope,
                    seeds=list(seeds),
                    batch_hashes=[hashes[sd] for sd in seeds],
                    n=row.n,
                    spearman=row.spearman,
                    kendall=row.kendall,
                    within_kendall=row.within_kendall,
                    top10_overlap=row.top10_overlap,
                    details={
                        "failed": row.failed,
                        "per_seed_kendall": row.per_seed_kendall,
                        "batch_shape": [setup.batch_size, setup.seq_len],
                        **(details or {}),
                    },
                )
            )
    return Report(
        benchmark=bench_name,
        split=split,
        search_split=split_spec.label,
        n_archs=len(job.archs),
        seeds=tuple(seeds),
        setup=setup,
        batch_hashes=tuple(hashes[sd] for sd in seeds),
        rows=report_rows,
        max_archs=max_archs,
    )


def _correlate(
    spec: ProxySpec,
    scores: dict[int, dict[int, float | None]],
    truth: dict[int, float],
    layers: dict[int, int],
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
        strata=strata_for(space, [layers[a] for a in ok]),
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
    return ReportRow(
        spec,
        rep.n,
        rep.spearman,
        rep.kendall,
        rep.within_kendall,
        rep.top10_overlap,
        failed,
        per_seed,
    )
