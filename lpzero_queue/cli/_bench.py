"""``lpzq bench``: list, load, show and import benchmarks."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from sqlalchemy import func, select

from lpzero_queue.benchmarks.bounds import MAX_DESCRIPTION_CHARS, check_name
from lpzero_queue.benchmarks.imports import parse_import_file
from lpzero_queue.benchmarks.records import (
    SHIPPED,
    SPACES,
    BenchmarkSpec,
)
from lpzero_queue.cli._output import echo_table
from lpzero_queue.cli._train import bench_create
from lpzero_queue.errors import LpzqError
from lpzero_queue.storage import Architecture, Benchmark, transaction

app = typer.Typer(help="Benchmarks: trained architectures with ground truth.", no_args_is_help=True)


@app.command("list")
def bench_list(ctx: typer.Context) -> None:
    """List the benchmarks in the database and the shipped ones not loaded yet.

    Example: lpzq bench list
    """
    rt = ctx.obj
    rt.require_schema(create=True)
    with transaction(rt.sessions) as s:
        rows = s.execute(
            select(
                Benchmark.name,
                Benchmark.space,
                Benchmark.metric,
                Benchmark.direction,
                func.count(Architecture.id),
            )
            .outerjoin(Architecture, Architecture.benchmark_id == Benchmark.id)
            .group_by(Benchmark.id)
            .order_by(Benchmark.name)
        ).all()
    stored = {r[0] for r in rows}
    table = [[n, sp, m, f"{d} is better", c, "loaded"] for n, sp, m, d, c in rows]
    table += [[n, "", "", "", None, "shipped, not loaded"] for n in SHIPPED if n not in stored]
    echo_table(["name", "space", "metric", "direction", "architectures", "state"], table)


@app.command("load")
def bench_load(
    ctx: typer.Context,
    name: str = typer.Argument(..., help=f"A shipped benchmark: {', '.join(SHIPPED)}."),
) -> None:
    """Load a shipped benchmark into the database (a second load changes nothing).

    Example: lpzq bench load flexibert
    """
    from lpzero_queue.benchmarks.catalog import load_shipped_benchmark
    from lpzero_queue.cli._progress import progress_bar

    rt = ctx.obj
    rt.require_schema(create=True)
    with progress_bar(f"loading {name}") as advance:
        result = load_shipped_benchmark(rt.sessions, name, advance)
    state = "loaded" if result.created else "already loaded, unchanged"
    typer.echo(f"{result.name}: {state} ({result.architectures} architectures)")


@app.command("show")
def bench_show(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Benchmark name."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show a benchmark: count, metric, direction, ground-truth range, structure.

    Example: lpzq bench show gpt2-wt103
    """
    from lpzero_queue.benchmarks.catalog import benchmark_overview, get_benchmark

    rt = ctx.obj
    rt.require_schema(create=True)
    with transaction(rt.sessions) as s:
        overview = benchmark_overview(s, get_benchmark(s, name))
    if as_json:
        typer.echo(json.dumps(overview, indent=2))
        return
    gt = overview["ground_truth"]
    typer.echo(
        f"{overview['name']}  ({overview['space']} space, default builder "
        f"{overview['default_builder']})"
    )
    typer.echo(f"  architectures      {overview['architectures']}")
    typer.echo(
        f"  metric             {overview['metric']} ({overview['direction']}); "
        f"also stored: {', '.join(m for m in overview['metrics'] if m != overview['metric'])}"
    )
    if gt:
        typer.echo(
            f"  ground truth       min {gt['min']:.4g}  median {gt['median']:.4g}  "
            f"max {gt['max']:.4g}"
        )
    typer.echo(f"  layers             {_counts(overview['layers'])}")
    typer.echo(f"  hidden size        {_counts(overview['hidden_size'])}")
    for key in ("params_total", "params_nonembedding"):
        r = overview[key]
        if r:
            typer.echo(f"  {key:<18} min {r['min']:,}  median {r['median']:,.0f}  max {r['max']:,}")
    prov = overview["provenance"]
    if prov.get("attribution"):
        typer.echo(f"  attribution        {prov['attribution']}")


def _counts(counter: dict[int, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in counter.items())


@app.command("import")
def bench_import(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="A .json or .csv file of trained architectures."),
    name: str = typer.Option(..., "--name", help="Name of the new benchmark."),
    space: str = typer.Option(..., "--space", help=f"Architecture space: {'|'.join(SPACES)}."),
    metric: str = typer.Option(..., "--metric", help="The ground-truth column or key."),
    higher_is_better: bool | None = typer.Option(
        None, "--higher-is-better/--lower-is-better", help="Direction of the metric (required)."
    ),
    description: str = typer.Option("", "--description", help="Free text stored with it."),
) -> None:
    """Import your own trained architectures; every record is validated before anything is stored.

    Example: lpzq bench import mine.csv --name mine --space gpt2 --metric ppl --lower-is-better
    """
    from lpzero_queue.benchmarks.catalog import store_benchmark
    from lpzero_queue.cli._progress import progress_bar

    if space not in SPACES:
        raise LpzqError(f"unknown space '{space}'; valid spaces: {', '.join(SPACES)}")
    if higher_is_better is None:
        raise LpzqError("say the metric's direction: --higher-is-better or --lower-is-better")
    check_name(name, "--name")
    if len(description) > MAX_DESCRIPTION_CHARS:
        raise LpzqError(f"--description is longer than {MAX_DESCRIPTION_CHARS:,} characters")
    if name in SHIPPED:
        raise LpzqError(f"'{name}' is the name of a shipped benchmark; choose another --name")
    records = parse_import_file(file, space=space, metric=metric, higher_is_better=higher_is_better)
    spec = BenchmarkSpec(
        name=name,
        space=space,
        metric=metric,
        higher_is_better=higher_is_better,
        description=description or f"imported from {file.name}",
        provenance={"source": f"user import of {file.name}"},
        records=tuple(records),
    )
    rt = ctx.obj
    rt.require_schema(create=True)
    with progress_bar(f"importing {name}") as advance, transaction(rt.sessions) as s:
        result = store_benchmark(s, spec, advance)
    state = "imported" if result.created else "already imported, unchanged"
    typer.echo(f"{name}: {state} ({result.architectures} architectures)")


app.command("create")(bench_create)
