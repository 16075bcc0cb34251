"""``lpzq proxy``: evaluate proxies against ground truth, with the trivial baselines beside them."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Literal

import typer

from lpzero_queue.cli._output import echo_report
from lpzero_queue.errors import LpzqError

if TYPE_CHECKING:
    from lpzero_queue.benchmarks.splits import SplitSpec
    from lpzero_queue.cli._context import Runtime
    from lpzero_queue.proxies.scoring import ScoringSetup
    from lpzero_queue.proxies.spec import ProxySpec

app = typer.Typer(help="Evaluate zero-cost proxies on a benchmark.", no_args_is_help=True)

SPLIT_HELP = "Architectures to report on: test (never seen by a default search), search, all."


def _split_spec(search_size: int, search_seed: int, first: bool) -> SplitSpec:
    from lpzero_queue.benchmarks.splits import SplitSpec

    try:
        return SplitSpec("first" if first else "sample", search_size, search_seed)
    except ValueError as exc:
        raise LpzqError(str(exc)) from None


@dataclass(frozen=True)
class SetupOptions:
    """The scoring options a user gave (None: the benchmark's default)."""

    builder: str | None = None
    objective: str | None = None
    linear_scope: str | None = None
    batch_size: int | None = None
    seq_len: int | None = None


def fitted_setup(rt: Runtime, bench: str, options: SetupOptions) -> tuple[ScoringSetup, int]:
    """The scoring setup on ``bench`` and the longest sequence its architectures accept.

    The options are checked before a shipped benchmark is loaded (a typo should not cost a
    load); the sequence length then fits the architectures: without ``--seq-len`` the longest
    they all accept (up to the space's default), and a longer ``--seq-len`` is refused.
    """
    from lpzero_queue.proxies.scoring import ScoringSetup
    from lpzero_queue.storage import transaction
    from lpzero_queue.workflows.catalog import benchmark_space, max_seq_len

    space = benchmark_space(rt.sessions, bench) or rt.benchmark(bench).space

    def resolve(limit: int | None) -> ScoringSetup:
        return ScoringSetup.resolve(space, **asdict(options), max_seq_len=limit)

    try:
        resolve(None)
        stored = rt.benchmark(bench)
        with transaction(rt.sessions) as s:
            longest = max_seq_len(s, stored)
        setup = resolve(longest)
    except ValueError as exc:
        raise LpzqError(f"{bench}: {exc}") from None
    return setup, longest


def _run(
    ctx: typer.Context,
    specs: list[ProxySpec],
    *,
    bench: str,
    split: str,
    seeds: int,
    builder: str | None,
    objective: str | None,
    linear_scope: str | None,
    batch_size: int | None,
    seq_len: int | None,
    search_size: int,
    search_seed: int,
    first: bool,
) -> None:
    from lpzero_queue.benchmarks.splits import SPLIT_NAMES
    from lpzero_queue.cli._progress import progress_bar
    from lpzero_queue.proxies.spec import TRIVIAL_BASELINES, baseline_spec
    from lpzero_queue.workflows.proxy_report import run_report

    if split not in SPLIT_NAMES:
        raise LpzqError(f"unknown split '{split}'; valid: {', '.join(SPLIT_NAMES)}")
    if seeds < 1:
        raise LpzqError(f"--seeds must be at least 1, got {seeds}")
    split_spec = _split_spec(search_size, search_seed, first)
    rt = ctx.obj
    rt.require_schema(create=True)
    options = SetupOptions(builder, objective, linear_scope, batch_size, seq_len)
    setup, longest = fitted_setup(rt, bench, options)
    texts = {s.text for s in specs}
    specs = specs + [baseline_spec(n) for n in TRIVIAL_BASELINES if n not in texts]
    rt.apply_torch_settings()
    with progress_bar("scoring") as advance:
        report = run_report(
            rt.sessions,
            bench,
            specs,
            split=split,
            split_spec=split_spec,
            seeds=list(range(seeds)),
            setup=setup,
            executor=rt.executor(),
            progress=advance,
        )
    echo_report(report, max_seq_len=longest)


COMMON = {
    "bench": typer.Option(..., "--bench", help="Benchmark name (shipped ones load on first use)."),
    "split": typer.Option("test", "--split", help=SPLIT_HELP),
    "seeds": typer.Option(1, "--seeds", help="Number of seeds (0..N-1) for init and batch."),
    "builder": typer.Option(None, "--builder", help="FlexiBERT: faithful (default) or lpzero."),
    "objective": typer.Option(None, "--objective", help="Gradient loss: ones|mlm (FlexiBERT)."),
    "linear_scope": typer.Option(
        None,
        "--linear-scope",
        help="Linears feeding weight/grad: mixer (token-mixing, default) or all.",
    ),
    "batch_size": typer.Option(None, "--batch-size", help="Proxy batch size (default per space)."),
    "seq_len": typer.Option(None, "--seq-len", help="Proxy sequence length (default per space)."),
    "search_size": typer.Option(50, "--search-size", help="Size of the search split."),
    "search_seed": typer.Option(0, "--search-seed", help="Seed drawing the search split."),
    "first": typer.Option(False, "--first", help="Search split = first N records (the paper)."),
}


@app.command("eval")
def proxy_eval(
    ctx: typer.Context,
    proxy: str = typer.Argument(..., help="An expression, or a name (lpzq proxy list)."),
    higher_is_better: bool | None = typer.Option(
        None, "--higher-is-better/--lower-is-better", help="Direction of a new expression."
    ),
    bench: str = COMMON["bench"],
    split: str = COMMON["split"],
    seeds: int = COMMON["seeds"],
    builder: str | None = COMMON["builder"],
    objective: str | None = COMMON["objective"],
    linear_scope: str | None = COMMON["linear_scope"],
    batch_size: int | None = COMMON["batch_size"],
    seq_len: int | None = COMMON["seq_len"],
    search_size: int = COMMON["search_size"],
    search_seed: int = COMMON["search_seed"],
    first: bool = COMMON["first"],
) -> None:
    """Correlate one proxy with ground truth, next to the trivial baselines; results are stored.

    Example: lpzq proxy eval "sum(mean(grad), l1_norm(act))" --higher-is-better --bench gpt2-wt103
    """
    from lpzero_queue.proxies.spec import resolve_proxy

    direction: Literal["higher", "lower"] | None = None
    if higher_is_better is not None:
        direction = "higher" if higher_is_better else "lower"
    spec = resolve_proxy(proxy, direction)
    _run(
        ctx,
        [spec],
        bench=bench,
        split=split,
        seeds=seeds,
        builder=builder,
        objective=objective,
        linear_scope=linear_scope,
        batch_size=batch_size,
        seq_len=seq_len,
        search_size=search_size,
        search_seed=search_seed,
        first=first,
    )


@app.command("baselines")
def proxy_baselines(
    ctx: typer.Context,
    bench: str = COMMON["bench"],
    split: str = COMMON["split"],
    seeds: int = COMMON["seeds"],
    builder: str | None = COMMON["builder"],
    objective: str | None = COMMON["objective"],
    linear_scope: str | None = COMMON["linear_scope"],
    batch_size: int | None = COMMON["batch_size"],
    seq_len: int | None = COMMON["seq_len"],
    search_size: int = COMMON["search_size"],
    search_seed: int = COMMON["search_seed"],
    first: bool = COMMON["first"],
    only: list[str] = typer.Option(None, "--only", help="Run only these baselines (repeatable)."),
) -> None:
    """Score every baseline proxy (and the published LPZero proxies); print and store the table.

    Example: lpzq proxy baselines --bench flexibert --split all
    """
    from lpzero_queue.proxies.spec import NAMED_EXPRESSIONS, baseline_names, resolve_proxy

    names = list(only) if only else [*baseline_names(), *NAMED_EXPRESSIONS]
    specs = [resolve_proxy(n) for n in names]
    _run(
        ctx,
        specs,
        bench=bench,
        split=split,
        seeds=seeds,
        builder=builder,
        objective=objective,
        linear_scope=linear_scope,
        batch_size=batch_size,
        seq_len=seq_len,
        search_size=search_size,
        search_seed=search_seed,
        first=first,
    )


@app.command("list")
def proxy_list() -> None:
    """List the inputs, operators, named expressions and baselines you can use.

    Example: lpzq proxy list
    """
    from lpzero_queue.proxies.operators import BINARY_OPS, INPUT_DESCRIPTIONS, UNARY_OPS
    from lpzero_queue.proxies.spec import NAMED_EXPRESSIONS

    typer.echo("inputs:")
    for name, text in INPUT_DESCRIPTIONS.items():
        typer.echo(f"  {name:<10} {text}")
    typer.echo("unary operators (guard):")
    for name, op in UNARY_OPS.items():
        typer.echo(f"  {name:<18} {op.guard}")
    typer.echo("binary operators: " + ", ".join(BINARY_OPS))
    typer.echo("named expressions:")
    for name, (expr, direction) in NAMED_EXPRESSIONS.items():
        typer.echo(f"  {name:<18} {expr}  ({direction} is better)")
    from lpzero_queue.proxies.baselines import BASELINES

    typer.echo("baselines:")
    for name, b in BASELINES.items():
        typer.echo(f"  {name:<22} {b.direction:<6} {b.description}")
