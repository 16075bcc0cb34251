"""``lpzq search``: start, resume and inspect GP searches for zero-cost proxies."""

from __future__ import annotations

import contextlib
import json
from typing import TYPE_CHECKING, Any

import typer

from lpzero_queue.cli._output import echo_comparisons, echo_report, echo_table
from lpzero_queue.errors import LpzqError

if TYPE_CHECKING:
    from lpzero_queue.cli._context import Runtime

app = typer.Typer(help="Search zero-cost proxies with genetic programming.", no_args_is_help=True)


def _held_out(rt: Runtime, run_id: int, best: str) -> Any:
    """Score the run's best proxy and the baselines on the held-out test split (stored)."""
    from lpzero_queue.cli._progress import progress_bar
    from lpzero_queue.proxies.spec import (
        TRIVIAL_BASELINES,
        ProxySpec,
        baseline_spec,
        resolve_proxy,
    )
    from lpzero_queue.workflows.proxy_report import run_report
    from lpzero_queue.workflows.search_run import load_context

    ctx = load_context(rt.sessions, run_id)
    published = "lpzero-flexibert" if ctx.setup.space == "flexibert" else "lpzero-gpt2"
    specs = [ProxySpec("expression", best, "higher", None), resolve_proxy(published)]
    specs += [baseline_spec(n) for n in TRIVIAL_BASELINES]
    with progress_bar("held-out test split") as advance:
        return run_report(
            rt.sessions,
            ctx.bench_name,
            specs,
            split="test",
            split_spec=ctx.split,
            seeds=[ctx.config.seed],
            setup=ctx.setup,
            executor=rt.executor(),
            progress=advance,
            details={"run_id": run_id},
        )


def _finish(rt: Runtime, run_id: int, report: Any = None) -> None:
    """Print the best proxy's held-out table (scored now unless ``report`` is given)."""
    from lpzero_queue.proxies.comparison import held_out_comparisons
    from lpzero_queue.storage import transaction
    from lpzero_queue.workflows.catalog import get_benchmark, max_seq_len
    from lpzero_queue.workflows.search_run import run_summary

    summary = run_summary(rt.sessions, run_id)
    best = summary.best
    if summary.status != "completed" or best is None:
        typer.echo(f"run {run_id}: {summary.status}")
        return
    if report is None:
        report = _held_out(rt, run_id, best)
    with transaction(rt.sessions) as s:
        longest = max_seq_len(s, get_benchmark(s, summary.benchmark))
    typer.echo(
        f"run {run_id} best (search-split {summary.fitness} {summary.best_fitness:+.4f}): {best}"
    )
    labels = {best: "best (searched)"}
    echo_report(report, labels, max_seq_len=longest)
    published = report.rows[1].proxy  # rows: searched, published, trivial baselines
    labels[published.text] = published.label
    echo_comparisons(held_out_comparisons(report, best, published.text), labels)


def _execute(rt: Runtime, run_id: int, owner: str) -> None:
    """Drive the run as the coordinator ``owner`` (its lease token)."""
    from lpzero_queue.cli._progress import progress_bar
    from lpzero_queue.workflows.search_run import execute_run

    rt.apply_torch_settings()
    reports: list[Any] = []
    with contextlib.ExitStack() as bar:

        def held_out(best: str) -> None:
            bar.close()  # the search bar ends before the held-out one starts
            reports.append(_held_out(rt, run_id, best))

        advance = bar.enter_context(progress_bar(f"search run {run_id}"))
        execute_run(
            rt.sessions,
            run_id,
            rt.executor(),
            progress=advance,
            held_out=held_out,
            owner=owner,
            lease_s=rt.settings.run_lease_s,
        )
    _finish(rt, run_id, reports[0] if reports else None)


@app.command("start")
def search_start(
    ctx: typer.Context,
    bench: str = typer.Option(..., "--bench", help="Benchmark (shipped ones load on first use)."),
    population: int = typer.Option(80, "--population", help="Population size."),
    children: int = typer.Option(
        1000, "--children", help="Children in all after the initial population."
    ),
    per_generation: int = typer.Option(40, "--per-generation", help="Children evaluated together."),
    sample: int = typer.Option(50, "--sample", help="Architectures in the search split."),
    validation: int | None = typer.Option(
        None,
        "--validation",
        help="Architectures (outside search and test) on which the best of the final population "
        "is chosen; default min(50, (benchmark size - sample) / 4); 0: the best fitness wins "
        "(published).",
    ),
    select_top: int = typer.Option(
        40, "--select-top", help="Members of the final population compared on --validation."
    ),
    first: bool = typer.Option(
        False, "--first", help="Search split = first N records (the paper)."
    ),
    seed: int = typer.Option(0, "--seed", help="Run seed."),
    fitness: str = typer.Option("spearman", "--fitness", help="spearman or kendall."),
    within_weight: float = typer.Option(
        0.0,
        "--within-weight",
        help="Weight in [0, 1] of the within-depth correlation in the fitness (0: published).",
    ),
    selection: str = typer.Option("truncation", "--selection", help="truncation or tournament."),
    rps: bool = typer.Option(
        True, "--rps/--no-rps", help="Rule-based pruning (--no-rps: ablation)."
    ),
    probe_size: int | None = typer.Option(
        None,
        "--probe-size",
        help="Probe architectures (default: 10, or the sample when smaller; 0: no probe).",
    ),
    unary: int = typer.Option(2, "--unary-per-branch", help="Unary operators per branch."),
    builder: str | None = typer.Option(None, "--builder", help="FlexiBERT: faithful or lpzero."),
    objective: str | None = typer.Option(None, "--objective", help="Gradient loss: ones|mlm."),
    linear_scope: str | None = typer.Option(
        None, "--linear-scope", help="Linears feeding weight/grad: mixer or all."
    ),
    reductions: str = typer.Option(
        "mean,total",
        "--reductions",
        help="Reductions over layers the GP may use, comma-separated: mean (published), total.",
    ),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Proxy batch size."),
    seq_len: int | None = typer.Option(None, "--seq-len", help="Proxy sequence length."),
) -> None:
    """Run a GP search; print the best proxy's held-out figures next to the baselines.

    Example: lpzq search start --bench flexibert
    """
    from lpzero_queue.search.config import SearchConfig
    from lpzero_queue.storage import new_lease_owner
    from lpzero_queue.workflows.search_run import create_run

    options = dict(
        population=population,
        children=children,
        per_generation=per_generation,
        sample=sample,
        validation=validation,
        select_top=select_top,
        split="first" if first else "sample",
        seed=seed,
        fitness=fitness,
        within_weight=within_weight,
        selection=selection,
        rps=rps,
        unary_per_branch=unary,
        builder=builder,
        objective=objective,
        linear_scope=linear_scope,
        reductions=[r.strip() for r in reductions.split(",")],
        batch_size=batch_size,
        seq_len=seq_len,
    )
    if probe_size is not None:  # left out, it follows the sample (SearchConfig.from_dict)
        options["probe_size"] = probe_size
    try:
        config = SearchConfig.from_dict(options)
    except ValueError as exc:
        raise LpzqError(str(exc)) from None
    rt = ctx.obj
    rt.require_schema(create=True)
    rt.benchmark(bench)
    owner = new_lease_owner()  # the run is created held by this coordinator
    run_id = create_run(rt.sessions, bench, config, owner=owner, lease_s=rt.settings.run_lease_s)
    typer.echo(f"search run {run_id} on {bench} (lpzq search status {run_id})")
    _execute(rt, run_id, owner)


@app.command("resume")
def search_resume(ctx: typer.Context, run: int = typer.Argument(..., help="Run id.")) -> None:
    """Continue a run that was interrupted; ends exactly as an uninterrupted run would.

    A stale run (its coordinator stopped renewing its lease) is taken over; a run another
    coordinator still drives is refused.

    Example: lpzq search resume 3
    """
    from lpzero_queue.storage import new_lease_owner

    rt = ctx.obj
    rt.require_schema()
    _execute(rt, run, new_lease_owner())


@app.command("status")
def search_status(
    ctx: typer.Context,
    run: int = typer.Argument(..., help="Run id."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show a run's status, progress, pruning and best member.

    Example: lpzq search status 1
    """
    from lpzero_queue.workflows.search_run import run_summary

    rt = ctx.obj
    rt.require_schema()
    summary = run_summary(rt.sessions, run)
    if as_json:
        typer.echo(json.dumps(summary.as_dict(), indent=2, default=str))
        return
    for key, value in summary.as_dict().items():
        typer.echo(f"{key:<15} {value}")


@app.command("list")
def search_list(ctx: typer.Context) -> None:
    """List search runs (``stale``: running, but its coordinator stopped renewing its lease).

    Example: lpzq search list
    """
    from lpzero_queue.storage import RunRepository

    rt = ctx.obj
    rt.require_schema(create=True)
    runs = RunRepository(rt.sessions).list_runs()
    echo_table(
        ["run", "benchmark", "status", "seed", "best_fitness", "best", "created"],
        [
            [
                r.id,
                r.benchmark,
                r.shown_status,
                r.seed,
                r.best_fitness,
                r.best_expression,
                str(r.created_at)[:19],
            ]
            for r in runs
        ],
    )


@app.command("best")
def search_best(ctx: typer.Context, run: int = typer.Argument(..., help="Run id.")) -> None:
    """Print a run's best expression and its held-out figures.

    Example: lpzq search best 1
    """
    rt = ctx.obj
    rt.require_schema()
    _finish(rt, run)


@app.command("cancel")
def search_cancel(ctx: typer.Context, run: int = typer.Argument(..., help="Run id.")) -> None:
    """Mark a run cancelled; a coordinator running it stops after the current generation.

    Example: lpzq search cancel 2
    """
    from lpzero_queue.storage import RunRepository, RunStatus

    rt = ctx.obj
    rt.require_schema()
    runs = RunRepository(rt.sessions)
    status = runs.get(run).status
    if status in (RunStatus.COMPLETED, RunStatus.CANCELLED):
        raise LpzqError(f"search run {run} is already {status}")
    runs.cancel(run)
    typer.echo(f"search run {run}: cancelled")
