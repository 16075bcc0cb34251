"""Reports of a search run: fitness curves, held-out scatter, baseline bars and a Markdown summary.

Everything is read back from the database, never from the coordinator's memory, so a report can
be written for any historical run, finished or not. Missing pieces (no held-out correlations yet,
no ablation run) are stated in the summary, not raised.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from lpzero_queue.benchmarks.splits import SplitSpec, split_positions
from lpzero_queue.errors import NotFoundError
from lpzero_queue.storage import (
    Benchmark,
    BenchmarkRepository,
    Correlation,
    IndividualOutcome,
    IndividualStatus,
    Proxy,
    ReportRepository,
    RunStatus,
    SearchRun,
    Session,
    Sessions,
    transaction,
)
from lpzero_queue.workflows._search_plots import Curve, plot_bars, plot_fitness, plot_scatter
from lpzero_queue.workflows._search_summary import fmt, summary_markdown

__all__ = ["BASELINE_NAMES", "fitness_curves", "write_report"]

# Shown next to the best proxy: the trivial baselines and the published LPZero proxies.
BASELINE_NAMES = (
    "lpzero-flexibert",
    "lpzero-gpt2",
    "layers_x_hidden",
    "n_layers",
    "nonembedding_params",
    "params",
)


@dataclass(frozen=True)
class HeldOutRow:
    """One proxy's latest correlation on the run's test split."""

    label: str
    proxy_id: int
    correlation: Correlation


@dataclass
class RunData:
    """A run, its benchmark, best proxy, individuals and held-out correlations."""

    run: SearchRun
    bench: Benchmark
    best: Proxy | None
    individuals: list[IndividualOutcome]
    held_out: list[HeldOutRow] = field(default_factory=list)


@dataclass(frozen=True)
class ScatterPoint:
    """One test architecture of the scatter plot."""

    truth: float
    score: float  # the best proxy's mean score over the correlation's seeds
    n_layers: int


@dataclass(frozen=True)
class Scatter:
    """The scatter plot's points and a note on what they are (or why there are none)."""

    points: list[ScatterPoint]
    note: str


def fitness_curves(
    individuals: list[IndividualOutcome], population: int
) -> tuple[list[int], list[float], list[float]]:
    """Best and median fitness of the population after each generation.

    The population after generation g is the best ``population`` ok individuals of generations
    <= g; "best" is the maximum fitness so far, "median" the median of that population. A
    generation before any ok individual gives NaN.

    Returns:
        (generations, best, median), one entry per generation from 0 to the last one stored.
    """
    if not individuals:
        return [], [], []
    last = max(i.generation for i in individuals)
    by_gen: dict[int, list[float]] = {}
    for i in individuals:
        if i.status == IndividualStatus.OK and i.fitness is not None:
            by_gen.setdefault(i.generation, []).append(i.fitness)
    pool: list[float] = []
    gens, best, median = list(range(last + 1)), [], []
    for g in gens:
        pool = sorted(pool + by_gen.get(g, []), reverse=True)[:population]
        best.append(pool[0] if pool else float("nan"))
        median.append(statistics.median(pool) if pool else float("nan"))
    return gens, best, median


def write_report(sessions: Sessions, run_id: int, out_dir: Path | str) -> list[Path]:
    """Write the plots and ``summary.md`` of a search run into ``out_dir`` (created if missing).

    Args:
        sessions: session factory of the database holding the run.
        run_id: ``search_runs.id``.
        out_dir: destination folder; existing files of the same names are replaced.

    Returns:
        The paths written: ``fitness.png``, ``scatter_test.png`` and ``baselines_test.png`` when
        their data exist, and ``summary.md`` always, in that order.

    Raises:
        NotFoundError: no run has this id (the message names the ids that exist).
    """
    out = Path(out_dir)
    with transaction(sessions) as s:
        data = _load_run(s, run_id)
        other = _counterpart(s, data.run)
        other_data = _load_run(s, other.id) if other is not None else None
        scatter = _scatter_points(s, data) if data.held_out else None
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    population = int(data.run.config.get("population", 80))
    written.append(_plot_fitness(out / "fitness.png", data, other_data, population))
    if scatter is not None and scatter.points:
        written.append(_plot_scatter(out / "scatter_test.png", data, scatter.points))
    if data.held_out:
        written.append(_plot_bars(out / "baselines_test.png", data))
    curves = fitness_curves(data.individuals, population)
    note = scatter.note if scatter is not None else None
    summary = out / "summary.md"
    summary.write_text(
        summary_markdown(data, other_data, population, curves, note, [p.name for p in written])
    )
    written.append(summary)
    return written


# ---------------------------------------------------------------------------- reading


def _load_run(s: Session, run_id: int) -> RunData:
    reports = ReportRepository(s)
    run = reports.run(run_id)
    if run is None:
        span = reports.run_ids()
        known = (
            f"existing run ids: {span.lowest}-{span.highest} ({span.count} runs)"
            if span.count
            else "no search runs yet"
        )
        raise NotFoundError(f"unknown run {run_id}; {known}")
    best = reports.proxy(run.best_proxy_id) if run.best_proxy_id is not None else None
    data = RunData(run, reports.run_benchmark(run), best, reports.individual_outcomes(run_id))
    data.held_out = _held_out(reports, data)
    return data


def _held_out(reports: ReportRepository, data: RunData) -> list[HeldOutRow]:
    """The run's latest test-split correlations: its best proxy first, then the baselines."""
    labels = reports.proxy_labels(BASELINE_NAMES)
    if data.best is not None:
        labels[data.best.id] = f"best (run {data.run.id})"
    rows = reports.test_split_correlations(data.bench.id, labels)
    mine = [c for c in rows if (c.details or {}).get("run_id") == data.run.id]
    if not mine:
        return []
    anchor = next((c for c in mine if data.best and c.proxy_id == data.best.id), mine[0])
    latest: dict[int, Correlation] = {}
    for c in mine:
        if c.split == anchor.split and c.proxy_id not in latest:
            latest[c.proxy_id] = c
    rank = {name: i for i, name in enumerate(BASELINE_NAMES)}
    order = sorted(
        latest,
        key=lambda pid: -1 if data.best and pid == data.best.id else rank.get(labels[pid], 99),
    )
    return [HeldOutRow(labels[pid], pid, latest[pid]) for pid in order]


def _counterpart(s: Session, run: SearchRun) -> SearchRun | None:
    """The run with the same benchmark, seed and configuration but ``rps`` flipped."""
    want = {**run.config, "rps": not run.config.get("rps", True)}
    matching = [r for r in ReportRepository(s).runs_like(run) if r.config == want]
    completed = [r for r in matching if r.status == RunStatus.COMPLETED]
    pick = completed or matching
    return pick[0] if pick else None


def _parse_split(label: str) -> SplitSpec | None:
    """``test:sample50-seed0`` or ``test:first50`` -> the search split it is the complement of."""
    if m := re.fullmatch(r"test:first(\d+)(?:-val(\d+))?", label):
        return SplitSpec("first", int(m[1]), validation=int(m[2] or 0))
    if m := re.fullmatch(r"test:sample(\d+)-seed(-?\d+)(?:-val(\d+))?", label):
        return SplitSpec("sample", int(m[1]), int(m[2]), validation=int(m[3] or 0))
    return None


def _scatter_points(s: Session, data: RunData) -> Scatter | None:
    """The best proxy's test-split points (truth, mean score over seeds, depth) and a note."""
    best_row = next((h for h in data.held_out if data.best and h.proxy_id == data.best.id), None)
    if best_row is None:
        return None
    c = best_row.correlation
    spec = _parse_split(c.split)
    if spec is None:
        return Scatter(
            [], f"the scatter is missing: split label {c.split!r} is not one this code reads"
        )
    benchmarks = BenchmarkRepository(s)
    archs = benchmarks.architectures(data.bench.id)
    test = set(split_positions([a.position for a in archs], "test", spec))
    layers = {a.id: a.n_layers for a in archs if a.position in test}
    truth = benchmarks.ground_truth(layers, c.metric)
    seeds = list(c.seeds or [])
    scores = _seed_scores(ReportRepository(s), c, layers)
    points = [
        ScatterPoint(truth[a], statistics.fmean(scores[a].values()), layers[a])
        for a in sorted(scores)
        if a in truth and set(scores[a]) == set(seeds)
    ]
    note = (
        f"{len(points)} of {len(layers)} test architectures have an ok score for every seed "
        f"{seeds} (correlation n = {c.n})"
    )
    if not points:
        note = f"the scatter is missing: no stored evaluations match correlation {c.id}; " + note
    return Scatter(points, note)


def _seed_scores(
    reports: ReportRepository, c: Correlation, arch_ids: Iterable[int]
) -> dict[int, dict[int, float]]:
    """Architecture id -> seed -> ok score behind correlation ``c``."""
    # The correlation's i-th seed was computed on its i-th batch.
    pairs = set(zip(c.seeds or [], c.batch_hashes or [], strict=False))
    scores: dict[int, dict[int, float]] = {}
    for e in reports.correlation_scores(c, arch_ids):
        if e.score is not None and (e.seed, e.batch_hash) in pairs:
            scores.setdefault(e.architecture_id, {})[e.seed] = e.score
    return scores


# ---------------------------------------------------------------------------- plotting


def _plot_fitness(path: Path, data: RunData, other: RunData | None, population: int) -> Path:
    curves = []
    for rd in (data, other):
        if rd is not None:
            tag = f"run {rd.run.id} ({'RPS' if rd.run.config.get('rps', True) else 'no RPS'})"
            curves.append(Curve(tag, *fitness_curves(rd.individuals, population)))
    return plot_fitness(
        path,
        curves,
        title=f"Run {data.run.id} on {data.bench.name}: population of {population}",
        ylabel=f"fitness: {data.run.config.get('fitness', 'spearman')} on the search split",
    )


def _plot_scatter(path: Path, data: RunData, points: list[ScatterPoint]) -> Path:
    c = data.held_out[0].correlation
    expression = data.best.expression if data.best else ""
    short = expression if len(expression) <= 80 else expression[:77] + "..."
    return plot_scatter(
        path,
        [(p.truth, p.score, p.n_layers) for p in points],
        title=f"Run {data.run.id}, {c.split}: spearman {fmt(c.spearman)}, tie-fair kendall "
        f"{fmt(c.kendall_tiefair)}, n={len(points)}\n{short}",
        xlabel=f"ground truth: {c.metric} ({data.bench.direction} is better)",
        ylabel=f"best proxy score (mean over seeds {list(c.seeds)})",
    )


def _plot_bars(path: Path, data: RunData) -> Path:
    rows = data.held_out
    return plot_bars(
        path,
        [h.label for h in rows],
        [h.correlation.kendall_tiefair for h in rows],
        [h.correlation.within_tiefair for h in rows],
        title=f"Run {data.run.id}, held-out {rows[0].correlation.split}",
    )
