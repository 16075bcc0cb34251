"""``lpzq report``: plots and a Markdown summary of a search run, read from the database."""

from __future__ import annotations

from pathlib import Path

import typer


def report(
    ctx: typer.Context,
    run: int = typer.Argument(..., help="Search run id (lpzq search list)."),
    out: Path = typer.Option(..., "--out", help="Folder for the PNG plots and summary.md."),
) -> None:
    """Write fitness curves, the held-out scatter, baseline bars and summary.md of a run.

    Example: lpzq report 3 --out reports/run3
    """
    from lpzero_queue.workflows.search_report import write_report

    rt = ctx.obj
    rt.require_schema(create=True)
    for path in write_report(rt.sessions, run, out):
        typer.echo(str(path))
