"""``lpzq bench``: list, load, show, import and create (by training) benchmarks."""

from __future__ import annotations

import dataclasses
import json
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from lpzero_queue.benchmarks.bounds import MAX_DESCRIPTION_CHARS, check_name
from lpzero_queue.benchmarks.imports import parse_import_file
from lpzero_queue.benchmarks.records import (
    SHIPPED,
    SPACES,
    BenchmarkSpec,
)
from lpzero_queue.cli._output import echo_table
from lpzero_queue.errors import LpzqError
from lpzero_queue.storage import BenchmarkRepository, transaction

if TYPE_CHECKING:
    from lpzero_queue.cli._context import Runtime
    from lpzero_queue.execution.train_tasks import JobResult
    from lpzero_queue.workflows.bench_create import CreatePlan
    from lpzero_queue.workflows.catalog import BenchmarkOverview, LoadResult

app = typer.Typer(help="Benchmarks: trained architectures with ground truth.", no_args_is_help=True)


@app.command("list")
def bench_list(ctx: typer.Context) -> None:
    """List the benchmarks in the database and the shipped ones not loaded yet.

    Example: lpzq bench list
    """
    rt = ctx.obj
    rt.require_schema(create=True)
    with transaction(rt.sessions) as s:
        rows = BenchmarkRepository(s).listing()
    stored = {r.name for r in rows}
    table = [
        [r.name, r.space, r.metric, f"{r.direction} is better", r.architectures, "loaded"]
        for r in rows
    ]
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
    from lpzero_queue.cli._progress import progress_bar
    from lpzero_queue.workflows.catalog import load_shipped_benchmark

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
    from lpzero_queue.workflows.catalog import benchmark_overview, get_benchmark

    rt = ctx.obj
    rt.require_schema(create=True)
    with transaction(rt.sessions) as s:
        overview = benchmark_overview(s, get_benchmark(s, name))
    if as_json:
        typer.echo(json.dumps(dataclasses.asdict(overview), indent=2))
        return
    _echo_overview(overview)


def _echo_overview(overview: BenchmarkOverview) -> None:
    gt = overview.ground_truth
    typer.echo(
        f"{overview.name}  ({overview.space} space, default builder {overview.default_builder})"
    )
    typer.echo(f"  architectures      {overview.architectures}")
    typer.echo(
        f"  metric             {overview.metric} ({overview.direction}); "
        f"also stored: {', '.join(m for m in overview.metrics if m != overview.metric)}"
    )
    if gt:
        typer.echo(
            f"  ground truth       min {gt.min:.4g}  median {gt.median:.4g}  max {gt.max:.4g}"
        )
    typer.echo(f"  layers             {_counts(overview.layers)}")
    typer.echo(f"  hidden size        {_counts(overview.hidden_size)}")
    for key in ("params_total", "params_nonembedding"):
        r = getattr(overview, key)
        if r:
            typer.echo(f"  {key:<18} min {r.min:,}  median {r.median:,.0f}  max {r.max:,}")
    prov = overview.provenance
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
    from lpzero_queue.cli._progress import progress_bar
    from lpzero_queue.workflows.catalog import store_benchmark

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


# ---------------------------------------------------------------------------- bench create

CREATE_SPACES = ("gpt2", "flexibert")


def _train_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise LpzqError(
            f"--train-seeds {text!r}: give comma-separated integers, e.g. 0,1"
        ) from None
    if not seeds or any(s < 0 for s in seeds):
        raise LpzqError(f"--train-seeds {text!r}: give non-negative integers, e.g. 0,1")
    return seeds


def _check_new_name(name: str, space: str) -> None:
    """Refuse an unknown space, an invalid name or a shipped benchmark's name."""
    if space not in CREATE_SPACES:
        raise LpzqError(f"unknown space '{space}'; valid spaces: {', '.join(CREATE_SPACES)}")
    check_name(name, "benchmark name")
    if name in SHIPPED:
        raise LpzqError(f"'{name}' is the name of a shipped benchmark; choose another name")


def _refuse_existing(rt: Runtime, name: str) -> None:
    with transaction(rt.sessions) as s:
        exists = BenchmarkRepository(s).id_of(name) is not None
    if exists:
        raise LpzqError(f"benchmark '{name}' already exists; choose another name")


def _train_plan(
    rt: Runtime, plan: CreatePlan, train_seeds: str, retry_failed: bool
) -> list[JobResult]:
    """Run every training job of ``plan`` (on Celery workers when a broker is set)."""
    from lpzero_queue.cli._progress import training_progress
    from lpzero_queue.execution.train_runner import TrainRunner

    hp = plan.hyperparameters
    runner = TrainRunner(rt.settings, rt.engine, say=lambda m: typer.echo(m, err=True))
    requests = plan.requests()
    typer.echo(
        f"training {len(requests)} jobs ({len(plan.configs)} {plan.space} architectures x seeds "
        f"{train_seeds}, {hp['steps']} steps of {hp['batch_size']}x{hp['seq_len']} tokens) on "
        f"{'Celery workers (train queue)' if rt.settings.broker_url else 'this process'}",
        err=True,
    )
    with training_progress(rt.engine, requests, f"training {plan.name}"):
        return runner.run(requests, retry_failed=retry_failed)


def _store_created(
    rt: Runtime, plan: CreatePlan, results: list[JobResult]
) -> tuple[LoadResult, BenchmarkSpec, dict[str, float] | None]:
    """Store the trained benchmark and point its training jobs at its architectures."""
    from lpzero_queue.workflows.bench_create import link_jobs, results_to_spec
    from lpzero_queue.workflows.catalog import store_benchmark

    command = shlex.join(["lpzq", *sys.argv[1:]]) if sys.argv else "lpzq bench create"
    spec, ceiling = results_to_spec(plan, results, command)
    with transaction(rt.sessions) as s:
        result = store_benchmark(s, spec)
        bench_id = BenchmarkRepository(s).id_of(plan.name)
        assert bench_id is not None
        link_jobs(s, bench_id, spec.records)
    return result, spec, ceiling


def _echo_created(
    plan: CreatePlan,
    result: LoadResult,
    spec: BenchmarkSpec,
    ceiling: dict[str, float] | None,
    train_seeds: str,
) -> None:
    ppl = sorted(r.ground_truth["valid_ppl"] for r in spec.records)
    typer.echo(
        f"{plan.name}: created ({result.architectures} architectures; valid_ppl min "
        f"{ppl[0]:.1f}, median {ppl[len(ppl) // 2]:.1f}, max {ppl[-1]:.1f}; "
        f"{plan.hyperparameters['steps']} steps, seeds {train_seeds})"
    )
    if ceiling is not None:
        typer.echo(
            f"noise ceiling (valid_ppl, training seed {plan.train_seeds[0]} vs "
            f"{plan.train_seeds[1]}, n={int(ceiling['n'])}): Kendall {ceiling['kendall']:.3f}, "
            f"Spearman {ceiling['spearman']:.3f}"
        )
    sample = max(3, len(plan.configs) // 2)  # half the architectures for the search, half held out
    probe = "" if sample > 10 else f" --probe-size {max(3, sample // 2)}"
    typer.echo(f"next: lpzq search start --bench {plan.name} --sample {sample}{probe}")


@app.command("create")
def bench_create(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Name of the new benchmark."),
    space: str = typer.Option(..., "--space", help="Architecture space: gpt2|flexibert."),
    archs: int = typer.Option(40, "--archs", help="Architectures to sample and train."),
    steps: int = typer.Option(300, "--steps", help="Training steps per architecture."),
    seed: int = typer.Option(0, "--seed", help="Seed of the architecture sample."),
    train_seeds: str = typer.Option(
        "0", "--train-seeds", help="Training seed(s); two or more also measure the noise ceiling."
    ),
    width_scale: float = typer.Option(
        0.25, "--width-scale", help="Multiply the shipped benchmark's widths by this (0, 1]."
    ),
    max_layers: int = typer.Option(4, "--max-layers", help="Depth cap of the sampled space."),
    batch_size: int = typer.Option(8, "--batch-size", help="Training batch size."),
    seq_len: int = typer.Option(64, "--seq-len", help="Training sequence length (8..192)."),
    lr: float = typer.Option(1e-3, "--lr", help="AdamW peak learning rate."),
    eval_batches: int = typer.Option(16, "--eval-batches", help="Validation batches."),
    max_seconds: float = typer.Option(3600.0, "--max-seconds", help="Time limit per job."),
    retry_failed: bool = typer.Option(
        False, "--retry-failed", help="Train again jobs of an earlier attempt that failed."
    ),
) -> None:
    """Create a benchmark by training sampled architectures (ground truth: validation perplexity).

    Example: lpzq bench create small --space gpt2 --archs 40 --steps 300 --seed 0
    """
    from lpzero_queue.cli._train import hyperparameters
    from lpzero_queue.training.spaces import SpaceScale
    from lpzero_queue.workflows.bench_create import plan_benchmark

    _check_new_name(name, space)
    hp = hyperparameters(
        steps=steps, batch_size=batch_size, seq_len=seq_len, lr=lr, eval_batches=eval_batches,
        max_seconds=max_seconds,
    )  # fmt: skip
    plan = plan_benchmark(
        name,
        space,
        archs,
        sample_seed=seed,
        train_seeds=_train_seeds(train_seeds),
        scale=SpaceScale(width_scale=width_scale, max_layers=max_layers),
        hyperparameters=hp,
    )
    rt = ctx.obj
    rt.apply_torch_settings()
    rt.require_schema(create=True)
    _refuse_existing(rt, name)
    results = _train_plan(rt, plan, train_seeds, retry_failed)
    result, spec, ceiling = _store_created(rt, plan, results)
    _echo_created(plan, result, spec, ceiling, train_seeds)
