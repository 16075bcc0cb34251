"""The root typer application and its command groups."""

from __future__ import annotations

import json

import typer

from lpzero_queue.cli import _bench, _db, _proxy, _search, _subnet, _transfer, _worker
from lpzero_queue.cli._context import Runtime
from lpzero_queue.cli._report import report as report_command
from lpzero_queue.versions import code_version

app = typer.Typer(
    name="lpzq",
    help=(
        "lpzero_queue: search zero-cost proxies for language-model architecture search.\n\n"
        "Example: lpzq search start --bench flexibert"
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)
config_app = typer.Typer(help="Show the effective configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(_db.app, name="db")
app.add_typer(_bench.app, name="bench")
_proxy.app.command("transfer")(_transfer.proxy_transfer)
app.add_typer(_proxy.app, name="proxy")
app.command("worker")(_worker.worker)
app.command("report")(report_command)
app.add_typer(_search.app, name="search")
app.add_typer(_subnet.app, name="subnet")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"lpzq {code_version()}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """lpzero_queue: search zero-cost proxies for language-model architecture search.

    Example: lpzq search start --bench flexibert
    """
    ctx.obj = Runtime()


@config_app.command("show")
def config_show(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of aligned text."),
) -> None:
    """Print the effective configuration, passwords masked.

    Example: LPZQ_DATABASE_URL=postgresql+psycopg2://me:pw@db/lpzq lpzq config show
    """
    values = ctx.obj.settings.masked()
    if as_json:
        typer.echo(json.dumps(values, indent=2))
        return
    width = max(len(k) for k in values)
    for key, value in values.items():
        typer.echo(f"{key:<{width}}  {value}")
