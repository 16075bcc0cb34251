"""Alembic glue: the schema is created and changed only through these functions."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from lpzero_queue.errors import StorageError
from lpzero_queue.storage._engine import describe_db_error


def migrations_dir() -> Path:
    """The Alembic environment: inside the wheel, or ``migrations/`` of a source checkout."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "_migrations", package.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise StorageError("the Alembic migrations are missing from this installation")


def alembic_config(engine: Engine) -> Config:
    """An Alembic configuration bound to ``engine`` (no alembic.ini needed)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.attributes["engine"] = engine
    return cfg


def head_revision() -> str:
    """The newest revision shipped with this code."""
    script = ScriptDirectory(str(migrations_dir()))
    head = script.get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None for an empty database."""
    url = engine.url.render_as_string(hide_password=False)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except (OperationalError, DBAPIError) as exc:
        raise StorageError(describe_db_error(url, exc)) from exc


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database up to ``revision`` in one transaction per revision."""
    _run(engine, lambda cfg: command.upgrade(cfg, revision))


def downgrade(engine: Engine, revision: str) -> None:
    """Migrate the database down to ``revision`` ("base" empties it)."""
    _run(engine, lambda cfg: command.downgrade(cfg, revision))


def _run(engine: Engine, action: object) -> None:
    url = engine.url.render_as_string(hide_password=False)
    try:
        action(alembic_config(engine))  # type: ignore[operator]
    except (OperationalError, DBAPIError) as exc:
        raise StorageError(describe_db_error(url, exc)) from exc
    except Exception as exc:
        # Alembic reports unknown revisions through its own exception types.
        if type(exc).__module__.startswith("alembic"):
            raise StorageError(f"migration failed: {exc}") from exc
        raise
