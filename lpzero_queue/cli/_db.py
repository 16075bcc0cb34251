"""``lpzq db``: the schema, through Alembic only."""

from __future__ import annotations

import typer

from lpzero_queue.storage import current_revision, downgrade, head_revision, upgrade

app = typer.Typer(help="Create, inspect and migrate the database schema.", no_args_is_help=True)


@app.command("upgrade")
def db_upgrade(
    ctx: typer.Context,
    revision: str = typer.Argument("head", help="Target revision."),
) -> None:
    """Migrate the database up to REVISION (default: the newest).

    Example: LPZQ_DATABASE_URL=postgresql+psycopg2://root@127.0.0.1:5432/lpzq lpzq db upgrade
    """
    rt = ctx.obj
    before = current_revision(rt.engine)
    upgrade(rt.engine, revision)
    after = current_revision(rt.engine)
    typer.echo(f"{rt.url_for_display}: {before or 'empty'} -> {after or 'empty'}")


@app.command("current")
def db_current(ctx: typer.Context) -> None:
    """Print the database's revision and whether it is the newest.

    Example: lpzq db current
    """
    rt = ctx.obj
    current = current_revision(rt.engine)
    head = head_revision()
    state = "up to date" if current == head else f"behind head {head}; run: lpzq db upgrade"
    typer.echo(f"{rt.url_for_display}: {current or 'empty'} ({state})")


@app.command("downgrade")
def db_downgrade(
    ctx: typer.Context,
    revision: str = typer.Argument(..., help="Target revision; 'base' removes the whole schema."),
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
) -> None:
    """Migrate the database down to REVISION; 'base' drops every table.

    Example: lpzq db downgrade base --yes
    """
    rt = ctx.obj
    if not yes:
        typer.confirm(f"Downgrade {rt.url_for_display} to {revision}? Data may be lost", abort=True)
    before = current_revision(rt.engine)
    downgrade(rt.engine, revision)
    after = current_revision(rt.engine)
    typer.echo(f"{rt.url_for_display}: {before or 'empty'} -> {after or 'empty'}")
