"""Database leases shared by proxy units (``work_units``) and training jobs (``training_jobs``).

A worker *leases* a row with one conditional UPDATE, renews the lease from a :class:`Heartbeat`
thread while it computes, and writes its outcome only while it still holds the lease.
``(worker, attempts)`` is the fencing token: a worker whose lease was taken over cannot
overwrite the new holder's row. What differs between the two tables (the key column, where the
attempt cap comes from, what a finished row holds) is passed in by the callers,
:mod:`lpzero_queue.execution.tasks` and :mod:`lpzero_queue.execution.train_tasks`.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any, TypeAlias, TypeVar

from sqlalchemy import ColumnElement, Connection, Engine, func, or_, select, update
from sqlalchemy.exc import InterfaceError, OperationalError

from lpzero_queue.storage import TrainingJob, WorkUnitRow

log = logging.getLogger(__name__)

TRANSIENT_DB_ERRORS = (OperationalError, InterfaceError)

T = TypeVar("T")
LeasedTable: TypeAlias = type[WorkUnitRow] | type[TrainingJob]


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


def leasable(table: LeasedTable, now: dt.datetime) -> ColumnElement[bool]:
    """Rows nobody holds: pending, or running with an expired lease."""
    return or_(
        table.status == "pending", (table.status == "running") & (table.lease_expires_at < now)
    )


def held(table: LeasedTable, row_id: int, worker: str, attempt: int) -> ColumnElement[bool]:
    """The WHERE clause of a write allowed only to the lease holder (the fencing token)."""
    return (
        (table.id == row_id)
        & (table.status == "running")
        & (table.worker == worker)
        & (table.attempts == attempt)
    )


def take_lease(
    engine: Engine,
    table: LeasedTable,
    row_id: int,
    worker: str,
    lease_s: float,
    *,
    same_key: ColumnElement[bool],
    below_cap: ColumnElement[bool],
) -> int | None:
    """Take a row's lease with one conditional UPDATE.

    Args:
        same_key: the row's key must match too (a message meant for another database finds no
            row).
        below_cap: ``attempts`` is below the cap (a column or the message's number).

    Returns:
        The new attempt number, or None when the row was not leased.
    """
    with engine.begin() as conn:
        now = db_now(conn)
        leased = conn.execute(
            update(table)
            .where(table.id == row_id, same_key, leasable(table, now), below_cap)
            .values(
                status="running",
                attempts=table.attempts + 1,
                worker=worker,
                lease_expires_at=now + dt.timedelta(seconds=lease_s),
                heartbeat_at=now,
                error=None,
            )
        )
        if leased.rowcount != 1:
            return None
        attempts: int = conn.scalar(select(table.attempts).where(table.id == row_id))  # type: ignore[assignment]
        return attempts


def finish_held(
    engine: Engine,
    table: LeasedTable,
    row_id: int,
    worker: str,
    attempt: int,
    values: dict[str, Any],
) -> bool:
    """Write ``values`` and drop the lease in one transaction, only while holding it.

    Transient database errors are retried.

    Returns:
        False when another worker took the lease over (whatever it records is the one result).
    """

    def write() -> bool:
        with engine.begin() as conn:
            now = db_now(conn)
            written = conn.execute(
                update(table)
                .where(held(table, row_id, worker, attempt))
                .values(lease_expires_at=None, heartbeat_at=now, **values)
            )
        return written.rowcount == 1

    return with_db_retries(write)


class Heartbeat(threading.Thread):
    """Renews a lease every ``interval_s`` seconds (default a third of it) while computing.

    Attributes:
        values: further columns written with each renewal (replace the dict, do not mutate it).
        lost: set once a renewal found the lease no longer held.
    """

    def __init__(
        self,
        engine: Engine,
        table: LeasedTable,
        row_id: int,
        worker: str,
        attempt: int,
        lease_s: float,
        *,
        label: str,
        name: str,
        interval_s: float | None = None,
    ):
        """Prepare (not start) the heartbeat of one held lease.

        Args:
            label: what the row is called in log lines (``unit``, ``training job``).
            name: the thread's name.
            interval_s: seconds between renewals; default (or when not below ``lease_s``) a
                third of ``lease_s``.
        """
        super().__init__(name=name, daemon=True)
        self.engine, self.table, self.row_id = engine, table, row_id
        self.worker, self.attempt, self.lease_s, self.label = worker, attempt, lease_s, label
        self.interval_s = interval_s if interval_s and interval_s < lease_s else lease_s / 3
        self.values: dict[str, Any] = {}
        self.stopped = threading.Event()
        self.lost = threading.Event()

    def beat(self) -> bool:
        """One renewal; False (and :attr:`lost` set) when the lease is no longer held."""
        t = self.table
        with self.engine.begin() as conn:
            now = db_now(conn)
            renewed = conn.execute(
                update(t)
                .where(held(t, self.row_id, self.worker, self.attempt))
                .values(
                    lease_expires_at=now + dt.timedelta(seconds=self.lease_s),
                    heartbeat_at=now,
                    **self.values,
                )
            )
        if renewed.rowcount != 1:
            log.warning("%s %d: lease lost (attempt %d)", self.label, self.row_id, self.attempt)
            self.lost.set()
            return False
        return True

    def run(self) -> None:
        while not self.stopped.wait(self.interval_s) and not self.lost.is_set():
            try:
                if not self.beat():
                    return
            except TRANSIENT_DB_ERRORS:
                log.warning(
                    "%s %d: heartbeat failed; will retry", self.label, self.row_id, exc_info=True
                )

    def stop(self) -> None:
        """Stop renewing and wait (up to 10 s) for the thread to end."""
        self.stopped.set()
        self.join(timeout=10)
