"""What every leased-queue call shares: the process's engine cache, the database clock,
transient-error retries, and small helpers for messages and IN (...) lists."""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TypeAlias, TypeVar

from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from lpzero_queue.storage._engine import make_engine

log = logging.getLogger(__name__)

TRANSIENT_DB_ERRORS = (OperationalError, InterfaceError)
CHUNK = 500  # ids per IN (...) query: one query per chunk, never one per row

T = TypeVar("T")

# A coordinator's session factory (bound to its engine).
Sessions: TypeAlias = sessionmaker[Session]

_engines: dict[str, Engine] = {}


def engine_of(sessions: Sessions) -> Engine:
    """The engine a session factory is bound to."""
    bind = sessions.kw["bind"]
    assert isinstance(bind, Engine)
    return bind


def queue_engine(url: str) -> Engine:
    """This process's engine for ``url`` (created on first use, shared by every task)."""
    if url not in _engines:
        _engines[url] = make_engine(url)
    return _engines[url]


def adopt_engine(url: str, engine: Engine) -> None:
    """Make ``engine`` the one :func:`queue_engine` returns for ``url`` (in-process runners)."""
    _engines.setdefault(url, engine)


def forget_engines() -> None:
    """Drop every cached engine: a forked child must never reuse its parent's connections."""
    _engines.clear()


def db_now(conn: Connection) -> dt.datetime:
    """The clock leases use: the database's on PostgreSQL (not the workers'), UTC on SQLite."""
    if conn.dialect.name == "postgresql":
        value: dt.datetime = conn.scalar(select(func.now()))  # type: ignore[assignment]
        return value
    return dt.datetime.now(dt.UTC)


def with_db_retries(fn: Callable[[], T], *, tries: int = 6, base_s: float = 0.5) -> T:
    """Call ``fn``, retrying transient database errors with exponential backoff and jitter."""
    for attempt in range(tries):
        try:
            return fn()
        except TRANSIENT_DB_ERRORS:
            if attempt == tries - 1:
                raise
            delay = min(30.0, base_s * 2**attempt) * (0.5 + random.random())
            log.warning("transient database error; retrying in %.1f s", delay, exc_info=True)
            time.sleep(delay)
    raise AssertionError("unreachable")


def attempts_text(n: int) -> str:
    """``1 attempt``, ``3 attempts``."""
    return f"{n} attempt{'' if n == 1 else 's'}"


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    """Consecutive slices of at most ``size`` items."""
    for i in range(0, len(items), size):
        yield items[i : i + size]
