"""``lpzq proxy transfer``: how proxies rank the architectures of every benchmark of a space."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import typer

from lpzero_queue.cli._output import ORIENTATION, echo_table, report_header
from lpzero_queue.cli._proxy import COMMON, SetupOptions, fitted_setup
from lpzero_queue.errors import LpzqError

if TYPE_CHECKING:
    from lpzero_queue.cli._context import Runtime
    from lpzero_queue.proxies.comparison import Report
    from lpzero_queue.proxies.scoring import ScoringSetup
    from lpzero_queue.workflows.transfer import Column, TransferProxy


def _run_proxy(rt: Runtime, run_id: int) -> tuple[TransferProxy, str]:
    """The best proxy of a search run, where it was fitted, and the run's space."""
    from lpzero_queue.proxies.spec import ProxySpec
    from lpzero_queue.storage import ReportRepository, transaction
    from lpzero_queue.workflows.search_run import load_context
    from lpzero_queue.workflows.transfer import TransferProxy

    ctx = load_context(rt.sessions, run_id)  # a one-line error for an unknown run
    with transaction(rt.sessions) as s:
        best = ReportRepository(s).run_best(run_id)
    assert best is not None
    if best.expression is None:
        raise LpzqError(f"search run {run_id} has no best proxy yet (status {best.status})")
    spec = ProxySpec("expression", best.expression, "higher", None)
    proxy = TransferProxy(spec, f"run {run_id} best", run_id, ctx.bench_name, ctx.split)
    return proxy, ctx.setup.space


def _benchmarks(rt: Runtime, space: str | None, benches: list[str]) -> tuple[list[str], str]:
    """The benchmarks of the matrix (a whole space: the stored and the shipped ones) and their
    space; benchmarks of another space are refused."""
    from lpzero_queue.benchmarks.records import SPACES
    from lpzero_queue.workflows.catalog import benchmark_space, space_benchmarks

    if (space is None) == (not benches):
        raise LpzqError("give either --space gpt2|flexibert or --bench NAME (repeatable)")
    if space is not None:
        if space not in SPACES:
            raise LpzqError(f"unknown space '{space}'; valid spaces: {', '.join(SPACES)}")
        return space_benchmarks(rt.sessions, space), space
    spaces = {b: benchmark_space(rt.sessions, b) for b in benches}
    for bench, found in spaces.items():
        if found is None:
            raise LpzqError(f"no benchmark '{bench}' (lpzq bench list)")
    if len(set(spaces.values())) > 1:
        listed = ", ".join(f"{b} ({s})" for b, s in spaces.items())
        raise LpzqError(f"the benchmarks of a transfer matrix share one space; got {listed}")
    return list(dict.fromkeys(benches)), str(spaces[benches[0]])


def _cell(report: Report, text: str) -> str:
    row = next(r for r in report.rows if r.proxy.text == text)
    if row.kendall_tiefair is None or row.kendall is None or row.spearman is None:
        return "-"
    cell = f"{row.kendall_tiefair:+.3f} / {row.kendall:+.3f} / {row.spearman:+.3f}"
    return cell if row.n == report.n_archs else f"{cell} (n={row.n})"


def proxy_transfer(
    ctx: typer.Context,
    proxies: list[str] = typer.Argument(
        None, help="Expressions or names (lpzq proxy list); --run adds a run's best."
    ),
    runs: list[int] = typer.Option(
        None, "--run", help="Add the best proxy of this search run (repeatable)."
    ),
    higher_is_better: bool | None = typer.Option(
        None, "--higher-is-better/--lower-is-better", help="Direction of new expressions."
    ),
    space: str | None = typer.Option(
        None, "--space", help="Every benchmark of this space: gpt2|flexibert."
    ),
    benches: list[str] = typer.Option(
        None, "--bench", help="These benchmarks instead of a whole space (repeatable)."
    ),
    seeds: int = COMMON["seeds"],
    builder: str | None = COMMON["builder"],
    objective: str | None = COMMON["objective"],
    linear_scope: str | None = COMMON["linear_scope"],
    batch_size: int | None = COMMON["batch_size"],
    seq_len: int | None = typer.Option(
        None, "--seq-len", help="Proxy sequence length (default per benchmark)."
    ),
    max_archs: int | None = typer.Option(
        None, "--max-archs", help="Score only the first N architectures of each benchmark."
    ),
) -> None:
    """Score proxies on every benchmark of a space: tie-fair Kendall / tau-b / Spearman.

    A search run's best proxy is scored held out on its own benchmark (the run's search split
    excluded, for every proxy of that column); other benchmarks use all their architectures.
    Results are stored as correlations.

    Example: lpzq proxy transfer lpzero-gpt2 --run 1 --space gpt2
    """
    from lpzero_queue.workflows.transfer import plan_columns

    if seeds < 1:
        raise LpzqError(f"--seeds must be at least 1, got {seeds}")
    if max_archs is not None and max_archs < 3:
        raise LpzqError(f"--max-archs must be at least 3 (a rank correlation), got {max_archs}")
    if not proxies and not runs:
        raise LpzqError("name at least one proxy (an expression or a name) or --run RUN")
    chosen = _given_proxies(list(proxies or []), higher_is_better)
    rt = ctx.obj
    rt.require_schema(create=True)
    names, matrix_space = _benchmarks(rt, space, list(benches or []))
    for run_id in dict.fromkeys(runs or []):
        proxy, run_space = _run_proxy(rt, run_id)
        if run_space != matrix_space:
            raise LpzqError(f"search run {run_id} searched {run_space}, not {matrix_space}")
        chosen.append(proxy)
    # Every benchmark's setup (and a --seq-len some cannot take) is settled before any scoring.
    options = SetupOptions(builder, objective, linear_scope, batch_size, seq_len)
    setups = {bench: fitted_setup(rt, bench, options) for bench in names}
    rt.apply_torch_settings()
    columns = plan_columns(names, chosen)
    reports = [
        _score(rt, column, chosen, setups[column.benchmark][0], seeds, max_archs)
        for column in columns
    ]
    longest = {bench: setup[1] for bench, setup in setups.items()}
    _echo_matrix(matrix_space, chosen, list(zip(columns, reports, strict=True)), longest)


def _given_proxies(proxies: list[str], higher_is_better: bool | None) -> list[TransferProxy]:
    """The proxies named on the command line; the direction is that of new expressions."""
    from lpzero_queue.proxies.spec import NAMED_EXPRESSIONS, resolve_proxy
    from lpzero_queue.workflows.transfer import TransferProxy

    direction: Literal["higher", "lower"] | None = None
    if higher_is_better is not None:
        direction = "higher" if higher_is_better else "lower"
    # A named proxy keeps its own direction.
    specs = [
        resolve_proxy(p, None if p.strip() in NAMED_EXPRESSIONS else direction) for p in proxies
    ]
    return [TransferProxy(spec, spec.label) for spec in specs]


def _score(
    rt: Runtime,
    column: Column,
    chosen: list[TransferProxy],
    setup: ScoringSetup,
    seeds: int,
    max_archs: int | None,
) -> Report:
    """Score every proxy of the matrix on one column, with a progress bar."""
    from lpzero_queue.cli._progress import progress_bar
    from lpzero_queue.workflows.transfer import score_column

    with progress_bar(column.label) as advance:
        return score_column(
            rt.sessions,
            column,
            chosen,
            setup=setup,
            seeds=list(range(seeds)),
            executor=rt.executor(),
            max_archs=max_archs,
            progress=advance,
        )


def _echo_matrix(
    space: str,
    chosen: list[TransferProxy],
    scored: list[tuple[Column, Report]],
    longest: dict[str, int],
) -> None:
    reports = [report for _, report in scored]
    labels = {p.spec.text: p.label for p in chosen}

    def row(text: str, label: str) -> list[str]:
        return [labels.get(text, label), *(_cell(r, text) for r in reports)]

    typer.echo(
        f"proxy transfer on {space}: tie-fair Kendall / Kendall tau-b / Spearman per benchmark"
    )
    echo_table(
        ["proxy", *(column.label for column, _ in scored)],
        [row(r.proxy.text, r.proxy.label) for r in reports[0].rows],
    )
    for report in reports:
        typer.echo(report_header(report, longest[report.benchmark]))
    typer.echo(ORIENTATION)
