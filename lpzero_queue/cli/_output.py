"""Plain aligned tables for the terminal (no colour codes, so output pipes cleanly)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from lpzero_queue.proxies.comparison import Report

ORIENTATION = (
    "Positive means the proxy ranks architectures like their trained quality. kendall_tf is "
    "the tie-fair Kendall (tau_b * sqrt(share of pairs the proxy does not tie): the expected "
    "Kendall once its ties are broken at random; tau_b flatters keys with few values); "
    "within_* are its means inside depth and (depth, width) groups."
)


def fmt(value: Any, digits: int = 3) -> str:
    """Format a cell: floats to ``digits`` decimals, None as '-'."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 3) -> str:
    """An aligned text table: text left-aligned, numbers right-aligned."""
    cells = [[fmt(v, digits) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    numeric = [
        all(isinstance(row[i], int | float) or row[i] is None for row in rows)
        for i in range(len(headers))
    ]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    out = [line(list(headers)), line(["-" * w for w in widths])]
    out.extend(line(r) for r in cells)
    return "\n".join(out)


def echo_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 3) -> None:
    """Print :func:`table`."""
    typer.echo(table(headers, rows, digits))


def report_header(report: Report, max_seq_len: int | None = None) -> str:
    """How a report was obtained: benchmark, split, seeds, setup, batch shape and hashes.

    Args:
        max_seq_len: The longest sequence every architecture of the benchmark accepts; a batch
            cut to it (shorter than the space's default) says so.
    """
    from lpzero_queue.proxies.inputs import DEFAULT_BATCH

    setup = report.setup
    hashes = ", ".join(h[:12] for h in report.batch_hashes)
    where = (
        "all architectures"
        if report.split == "all"
        else f"{report.split} split (search split {report.search_split})"
    )
    if report.max_archs is not None:
        where += f", its first {report.max_archs}"
    cut = max_seq_len is not None and setup.seq_len == max_seq_len < DEFAULT_BATCH[setup.space][1]
    return (
        f"{report.benchmark}: {where}, n={report.n_archs}; seeds {list(report.seeds)}; "
        f"builder {setup.builder}; objective {setup.objective}; "
        f"linear scope {setup.linear_scope}; "
        f"batch {setup.batch_size}x{setup.seq_len}"
        f"{' (the longest sequence every architecture accepts)' if cut else ''} [{hashes}]"
    )


def echo_report(
    report: Report, labels: dict[str, str] | None = None, *, max_seq_len: int | None = None
) -> None:
    """Print a correlation report: how it was obtained, then one row per proxy.

    Args:
        labels: replacement labels by proxy text (e.g. "best (searched)").
        max_seq_len: as for :func:`report_header`.
    """
    typer.echo(report_header(report, max_seq_len))
    labels = labels or {}
    rows = [
        [
            labels.get(r.proxy.text, r.proxy.label),
            r.proxy.direction,
            r.n,
            r.spearman,
            r.kendall,
            r.kendall_tiefair,
            r.within_tiefair,
            r.within_fine_tiefair,
            r.top10_overlap,
            r.failed,
        ]
        for r in report.rows
    ]
    echo_table(
        [
            "proxy",
            "direction",
            "n",
            "spearman",
            "tau_b",
            "kendall_tf",
            "within_depth_tf",
            "within_depth_width_tf",
            "top10",
            "failed",
        ],
        rows,
    )
    typer.echo(ORIENTATION)


def echo_comparisons(comparisons: Sequence[Any], labels: dict[str, str] | None = None) -> None:
    """Print paired-bootstrap verdicts (``proxies.comparison.Comparison``), one line each."""
    labels = labels or {}
    for c in comparisons:
        r = c.result
        verdict = {"beats": "beats", "loses": "loses to", "tie": "ties with"}[r.verdict]
        typer.echo(
            f"{labels.get(c.a, c.a)} {verdict} {labels.get(c.b, c.b)}: tie-fair Kendall "
            f"difference {r.diff:+.3f}, {r.level:.0%} interval [{r.low:+.3f}, {r.high:+.3f}] "
            f"(paired bootstrap over n={c.n} architectures, {r.resamples} resamples, "
            f"seed {r.seed}; an interval containing 0 is a tie)"
        )
