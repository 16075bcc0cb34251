"""The Markdown summary of a search report: figures next to how each one was obtained."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lpzero_queue.workflows.search_report import RunData

Curves = tuple[list[int], list[float], list[float]]


def fmt(value: float | None, digits: int = 3) -> str:
    """A float to ``digits`` decimals, None as '-'."""
    return "-" if value is None else f"{value:.{digits}f}"


def _duration(start: dt.datetime | None, end: dt.datetime | None) -> float | None:
    if start is None or end is None:
        return None
    if (start.tzinfo is None) != (end.tzinfo is None):
        start, end = start.replace(tzinfo=None), end.replace(tzinfo=None)
    return (end - start).total_seconds()


def _counts(rd: RunData) -> tuple[Counter[str], Counter[str]]:
    statuses = Counter(i.status for i in rd.individuals)
    rules = Counter(i.pruning_rule for i in rd.individuals if i.pruning_rule is not None)
    return statuses, rules


def summary_markdown(
    data: RunData,
    other: RunData | None,
    population: int,
    curves: Curves,
    scatter_note: str | None,
    files: list[str],
) -> str:
    """The text of ``summary.md``.

    Args:
        data: the run, its individuals and held-out rows.
        other: its counterpart with ``rps`` flipped, when one is stored.
        population: population size the curves were computed with.
        curves: (generations, best, median) of ``data``.
        scatter_note: what the scatter plot shows or why it is missing; None without held-out rows.
        files: names of the files written next to the summary.
    """
    lines = [
        *_headline(data, len(curves[0])),
        *_configuration(data),
        *_pruning_section(data),
        *_held_out_section(data, scatter_note),
        *_ablation_section(other),
        *_fitness_section(curves),
        *_provenance_section(data.run.id, population),
        "",
        "Files: " + ", ".join([*files, "summary.md"]),
        "",
    ]
    return "\n".join(lines)


def _wall_time(data: RunData) -> str:
    run = data.run
    wall = _duration(run.started_at, run.finished_at)
    wall_note = "started_at to finished_at"
    if wall is None:
        wall, wall_note = _duration(run.started_at, run.heartbeat_at), "started_at to heartbeat_at"
    compute = sum(i.seconds or 0.0 for i in data.individuals)
    return (
        f"- wall time: {wall:.1f} s ({wall_note})" if wall is not None else "- wall time: -"
    ) + f"; scoring time of the individuals: {compute:.1f} s"


def _headline(data: RunData, generations: int) -> list[str]:
    run, cfg = data.run, data.run.config
    statuses, _ = _counts(data)
    return [
        f"# Search run {run.id} on {data.bench.name}",
        "",
        f"- status: **{run.status}**; code version {run.code_version}",
        f"- best expression: `{data.best.expression if data.best else '(none yet)'}`",
        f"- best fitness ({cfg.get('fitness', 'spearman')} on the search split): "
        f"{fmt(run.best_fitness)}",
        f"- held-out: {_held_out_line(data)}",
        f"- generations: {generations}; candidates: {len(data.individuals)}"
        + "".join(f"; {k} {v}" for k, v in sorted(statuses.items())),
        _wall_time(data),
    ]


def _configuration(data: RunData) -> list[str]:
    config = {"seed": data.run.seed, **data.run.config}
    return [
        "",
        "## Configuration",
        "",
        "```json",
        json.dumps(config, indent=2, sort_keys=True, default=str),
        "```",
    ]


def _pruning_section(data: RunData) -> list[str]:
    _, rules = _counts(data)
    lines = ["", "## Pruned candidates by rule", ""]
    if not rules:
        rps_off = not data.run.config.get("rps")
        return [*lines, "No pruning rule fired" + (" (RPS is off)." if rps_off else ".")]
    lines += ["| rule | candidates |", "|---|---:|"]
    return lines + [f"| {rule} | {n} |" for rule, n in rules.most_common()]


def _held_out_section(data: RunData, scatter_note: str | None) -> list[str]:
    lines = ["", "## Held-out test split", ""]
    if not data.held_out:
        run_id = data.run.id
        return [
            *lines,
            f"No test-split correlations are stored for run {run_id} yet (rows in `correlations` "
            f"with split `test:...` and details.run_id = {run_id}); the scatter and bar plots "
            "are left out.",
        ]
    c0 = data.held_out[0].correlation
    lines += [
        f"Split `{c0.split}`, metric {c0.metric}, builder {c0.builder}, objective "
        f"{c0.objective}, linear scope {c0.linear_scope}, seeds {list(c0.seeds)}, batches "
        f"{', '.join(h[:12] for h in c0.batch_hashes or [])}.",
        "",
        "| proxy | n | spearman | tau_b | kendall_tf | within depth tf | "
        "within (depth, width) tf | top10 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for h in data.held_out:
        c = h.correlation
        lines.append(
            f"| {h.label} | {c.n} | {fmt(c.spearman)} | {fmt(c.kendall)} | "
            f"{fmt(c.kendall_tiefair)} | {fmt(c.within_tiefair)} | "
            f"{fmt(c.within_fine_tiefair)} | {fmt(c.top10_overlap)} |"
        )
    lines += [
        "",
        "kendall_tf is the tie-fair Kendall (tau_b times the square root of the share of "
        "pairs the proxy does not tie: the expected Kendall once its ties are broken at "
        "random); tau_b flatters keys with few values. Comparisons use kendall_tf.",
    ]
    if data.best is not None and data.held_out[0].proxy_id != data.best.id:
        lines += ["", "The best proxy has no correlation on this test split yet."]
    if scatter_note is not None:
        lines += ["", f"Scatter: {scatter_note}."]
    return lines


def _ablation_section(other: RunData | None) -> list[str]:
    lines = ["", "## No-RPS ablation", ""]
    if other is None:
        return [
            *lines,
            "No counterpart run (same benchmark, seed and configuration with `rps` flipped) "
            "is stored.",
        ]
    o_status = _counts(other)[0]
    o_best = next((h for h in other.held_out if other.best and h.proxy_id == other.best.id), None)
    return [
        *lines,
        f"Run {other.run.id} (rps={other.run.config.get('rps')}, "
        f"status {other.run.status}): best fitness {fmt(other.run.best_fitness)}, "
        f"{len(other.individuals)} candidates ("
        + ", ".join(f"{k} {v}" for k, v in sorted(o_status.items()))
        + f"), best `{other.best.expression if other.best else '(none yet)'}`"
        + (f", held-out kendall {fmt(o_best.correlation.kendall)}" if o_best else "")
        + ". It is drawn on the same axes in fitness.png.",
    ]


def _fitness_section(curves: Curves) -> list[str]:
    gens, best, median = curves
    return [
        "",
        "## Fitness per generation",
        "",
        "| generation | best | median |",
        "|---:|---:|---:|",
        *(f"| {g} | {fmt(b)} | {fmt(m)} |" for g, b, m in zip(gens, best, median, strict=True)),
    ]


def _provenance_section(run_id: int, population: int) -> list[str]:
    return [
        "",
        "## How the numbers were obtained",
        "",
        f"- Fitness: `individuals.fitness` of run {run_id}, the signed correlation of a "
        "candidate's scores with ground truth on the search split (NULL unless status ok). "
        f"'best' = max over ok individuals of generations <= g; 'median' = median of the top "
        f"{population} (the population) among them.",
        "- Pruned counts: `individuals.pruning_rule`; statuses from `individuals.status`.",
        "- Held-out figures: the latest `correlations` row per proxy with split `test:<search "
        f"split>` and details.run_id = {run_id}; architectures never seen by the search.",
        "- Scatter: `evaluations` (status ok) of the best proxy on the test-split architectures, "
        "with the correlation row's builder, objective, seeds and batch hashes, averaged over "
        "seeds; ground truth from `ground_truth` with the benchmark's metric.",
        "- Wall time: the run's timestamps; scoring time: sum of `individuals.seconds`.",
    ]


def _held_out_line(data: RunData) -> str:
    best_id = data.best.id if data.best is not None else None
    best = next((h.correlation for h in data.held_out if h.proxy_id == best_id), None)
    if best is None:
        return "not computed yet"
    parts = [
        f"spearman {fmt(best.spearman)}, tie-fair kendall {fmt(best.kendall_tiefair)} "
        f"(tau_b {fmt(best.kendall)}), within-depth {fmt(best.within_tiefair)}, within "
        f"(depth, width) {fmt(best.within_fine_tiefair)} on {best.split} (n={best.n})"
    ]
    parts += [
        f"{h.label} {fmt(h.correlation.kendall_tiefair)}"
        for h in data.held_out
        if h.proxy_id != best_id
    ]
    return parts[0] + ("; tie-fair kendall of " + ", ".join(parts[1:]) if parts[1:] else "")
