"""Engines and transactional sessions for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeAlias

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from lpzero_queue.config import mask_url
from lpzero_queue.errors import StorageError

# A factory of sessions on one database: what repositories and coordinators are given.
Sessions: TypeAlias = sessionmaker[Session]


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # SQLite ignores foreign keys unless asked; WAL lets readers run beside one writer.
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine for ``url``; a SQLite file's directory is created when missing.

    Raises:
        StorageError: the URL cannot be parsed or names an unavailable driver.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StorageError(f"invalid database URL {mask_url(url)!r}: {exc}") from exc
    options: dict[str, Any] = dict(kwargs)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    else:
        options.setdefault("pool_pre_ping", True)
    try:
        engine = create_engine(parsed, **options)
    except (NoSuchModuleError, ImportError) as exc:
        raise StorageError(f"unsupported database URL {mask_url(url)!r}: {exc}") from exc
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def describe_db_error(url: str, exc: BaseException) -> str:
    """One line naming the (masked) URL and the driver's reason, without a traceback."""
    reason = str(getattr(exc, "orig", None) or exc).strip()
    # Drivers print multi-line reasons; keep the most telling line.
    lines = [line.strip() for line in reason.splitlines() if line.strip()]
    reason = next(
        (ln for ln in lines if "refused" in ln or "does not exist" in ln), lines[0] if lines else ""
    )
    reason = re.sub(r"\s+", " ", reason)
    return f"cannot use database {mask_url(url)}: {reason}"


def check_connection(engine: Engine) -> None:
    """Open one connection, turning driver errors into a one-line StorageError."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except (OperationalError, DBAPIError) as exc:
        raise StorageError(describe_db_error(engine.url.render_as_string(False), exc)) from exc


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose work commits at the end of the block or rolls back entirely on error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
