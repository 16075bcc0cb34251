"""Plain aligned tables for the terminal (no colour codes, so output pipes cleanly)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import typer


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
