"""Insert-or-ignore for shared rows, on PostgreSQL and SQLite alike.

Rows that several coordinators may write at the same moment (input batches, proxies,
evaluations, work units, training jobs) are written with ``INSERT ... ON CONFLICT DO NOTHING``
and then read back: a unique-key race is success, not failure (``docs/operations.md``). On
PostgreSQL the losing insert waits for the winner's transaction and then does nothing; the read
that follows (a new statement under READ COMMITTED) sees the winner's row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Executable
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def insert_ignore(
    bind: Session | Connection,
    table: Any,
    rows: Sequence[dict[str, Any]],
    *,
    index_elements: Sequence[str] | None = None,
) -> int:
    """Insert ``rows`` into ``table`` (a mapped class), skipping any that hit a unique key.

    Args:
        bind: the session or connection whose transaction the insert joins.
        table: the mapped class.
        rows: column values, one dict per row (nothing is executed when empty).
        index_elements: the unique columns that decide a conflict; None skips a conflict on
            any unique constraint.

    Returns:
        How many rows were inserted (0 when every one existed).
    """
    if not rows:
        return 0
    dialect = bind.get_bind().dialect.name if isinstance(bind, Session) else bind.dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement: Executable = (
        insert(table).values(list(rows)).on_conflict_do_nothing(index_elements=index_elements)
    )
    inserted: int = bind.execute(statement).rowcount  # type: ignore[attr-defined]
    return inserted
