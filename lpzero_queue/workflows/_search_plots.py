"""PNG plots of a search report, drawn from plain values (matplotlib, Agg backend, no display).

Nothing here reads the database; :mod:`lpzero_queue.workflows.search_report` gathers the values.
matplotlib is imported inside the functions so that importing the package stays cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Curve:
    """Best and median fitness per generation of one run."""

    label: str
    generations: list[int]
    best: list[float]
    median: list[float]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt: Any, fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_fitness(path: Path, curves: Sequence[Curve], *, title: str, ylabel: str) -> Path:
    """Best (solid) and population median (dashed) per generation, one colour per run."""
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for curve, color in zip(curves, ("tab:blue", "tab:orange", "tab:green"), strict=False):
        ax.plot(
            curve.generations,
            curve.best,
            color=color,
            marker="o",
            ms=3,
            label=f"{curve.label} best",
        )
        ax.plot(
            curve.generations,
            curve.median,
            color=color,
            ls="--",
            label=f"{curve.label} median of population",
        )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("generation (0 = initial population)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if any(curve.generations for curve in curves):  # a run not started yet has no lines
        ax.legend(fontsize=8, loc="lower right")
    return _save(plt, fig, path)


def plot_scatter(
    path: Path,
    points: Sequence[tuple[float, float, int]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
) -> Path:
    """Proxy score against ground truth, one colour per depth; log y for wide positive scores."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=120)
    for depth in sorted({d for *_, d in points}):
        xs = [t for t, _, d in points if d == depth]
        ys = [v for _, v, d in points if d == depth]
        ax.scatter(xs, ys, s=14, alpha=0.75, label=f"{depth} layers")
    scores = [v for _, v, _ in points]
    if min(scores) > 0 and max(scores) / min(scores) > 1e3:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, title="depth", title_fontsize=8)
    return _save(plt, fig, path)


def plot_bars(
    path: Path,
    labels: Sequence[str],
    kendall: Sequence[float | None],
    within: Sequence[float | None],
    *,
    title: str,
) -> Path:
    """Kendall and within-depth Kendall side by side per proxy; missing values read 'n/a'."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(labels) + 2), 4.2), dpi=120)
    width = 0.38
    series = (
        ("tie-fair Kendall", kendall, "tab:blue"),
        ("within-depth tie-fair Kendall", within, "tab:green"),
    )
    for k, (name, values, color) in enumerate(series):
        xs = [i + (k - 0.5) * width for i in range(len(labels))]
        heights = [v if v is not None else 0.0 for v in values]
        bars = ax.bar(xs, heights, width, label=name, color=color)
        for bar, v in zip(bars, values, strict=True):
            text = "n/a" if v is None else f"{v:.2f}"
            ax.annotate(
                text,
                (bar.get_x() + width / 2, bar.get_height()),
                ha="center",
                va="bottom" if (v or 0) >= 0 else "top",
                fontsize=7,
            )
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(range(len(labels)), list(labels), rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("rank correlation with ground truth")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _save(plt, fig, path)
