"""The leased queue: rows of work that workers lease, renew, finish once, or give up on.

Proxy-scoring units (``work_units``) and training jobs (``training_jobs``) are both queues of this
kind, with the database (not the broker) as the record:

* a worker *leases* a row with one conditional UPDATE (compare-and-set: pending, or running with
  an expired lease, and ``attempts`` below the cap), which counts the attempt;
* a :class:`Heartbeat` thread renews the lease while the worker computes;
* the outcome is written in one transaction only while the lease is still held:
  ``(worker, attempts)`` is the fencing token, so a worker whose lease was taken over cannot
  overwrite the new holder's row;
* an infrastructure failure *releases* the lease at once (the coordinator re-sends the row), or
  fails the row when its attempts are used up; a coordinator *gives up* on rows whose last lease
  expired with no attempts left (their workers died).

The attempt cap is a column (``work_units.max_attempts``) or, where the table has none
(``training_jobs``), the number the coordinator sends with each message.

One engine cache (:func:`queue_engine`) serves every worker-side task; a forked worker child
drops what it inherited with :func:`forget_engines`.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Engine, or_, select, update

from lpzero_queue.storage._heartbeat import Heartbeat
from lpzero_queue.storage._leasing import (
    CHUNK,
    TRANSIENT_DB_ERRORS,
    Session,
    Sessions,
    adopt_engine,
    attempts_text,
    chunks,
    db_now,
    engine_of,
    forget_engines,
    queue_engine,
    with_db_retries,
)
from lpzero_queue.storage._models import TrainingJob, WorkUnitRow
from lpzero_queue.storage.status import JobStatus, UnitStatus

# The lease states every leased table shares (the same stored strings in UnitStatus and JobStatus).
PENDING, RUNNING, FAILED = UnitStatus.PENDING, UnitStatus.RUNNING, UnitStatus.FAILED
assert (PENDING, RUNNING, FAILED) == (JobStatus.PENDING, JobStatus.RUNNING, JobStatus.FAILED)

__all__ = [
    "CHUNK",
    "LEASE_LAPSED",
    "TRANSIENT_DB_ERRORS",
    "Engine",
    "Heartbeat",
    "LeaseOutcome",
    "LeaseState",
    "LeasedQueue",
    "Session",
    "Sessions",
    "adopt_engine",
    "attempts_text",
    "chunks",
    "db_now",
    "engine_of",
    "forget_engines",
    "gave_up_text",
    "queue_engine",
    "with_db_retries",
]


# Why a row whose lease lapsed is given up on, when no worker left a reason.
LEASE_LAPSED = "its lease expired (killed, out of memory or disconnected)"

Row = TypeVar("Row", WorkUnitRow, TrainingJob)


class LeaseOutcome(enum.StrEnum):
    """What a worker's call on a leased row came to (besides the row's own terminal status)."""

    RELEASED = "released"  # an infrastructure failure: the lease was given back for a retry
    FAILED = "failed"  # the same (or a row found unleasable) with no attempts left
    SUPERSEDED = "superseded"  # another worker took the lease over; nothing was written
    BUSY = "busy"  # another worker holds a live lease
    MISSING = "missing"  # no such row (or another database's)


def gave_up_text(attempts: int, worker: str | None, reason: str | None) -> str:
    """The recorded reason of a row that used up its attempts."""
    return (
        f"gave up after {attempts_text(attempts)} (last worker {worker}): {reason or LEASE_LAPSED}"
    )


@dataclass(frozen=True)
class LeaseState:
    """One row as a coordinator's poll sees it.

    Attributes:
        max_attempts: the row's cap (None where the table keeps none: the coordinator's).
        expired: a lease was taken and has lapsed (or was released).
        step: the last checkpointed step (training jobs; None for units).
    """

    id: int
    key: str
    status: str
    attempts: int
    max_attempts: int | None
    expired: bool
    worker: str | None
    step: int | None = None

    @property
    def live(self) -> bool:
        """Running under a lease that has not lapsed."""
        return self.status == RUNNING and not self.expired


class LeasedQueue(Generic[Row]):
    """Lease, heartbeat, fenced finish, release and give-up on one table of leased rows.

    Args:
        engine: the database.
        model: the mapped class (``WorkUnitRow`` or ``TrainingJob``).
        key_column: its unique key column (``unit_key``, ``job_key``).
        label: what a row is called in log lines (``unit``, ``training job``).
        terminal: the statuses a row ends in.
    """

    def __init__(
        self,
        engine: Engine,
        model: type[Row],
        *,
        key_column: str,
        label: str,
        terminal: Sequence[str],
    ) -> None:
        self.engine, self.label = engine, label
        self.model: type[Row] = model
        self.key_column = key_column
        self.terminal = tuple(terminal)

    # -- clauses --------------------------------------------------------------------------------

    def _key(self) -> Any:
        return getattr(self.model, self.key_column)

    def _leasable(self, now: dt.datetime) -> ColumnElement[bool]:
        """Rows nobody holds: pending, or running with an expired lease."""
        t = self.model
        return or_(t.status == PENDING, (t.status == RUNNING) & (t.lease_expires_at < now))

    def _below_cap(self, max_attempts: int | None) -> ColumnElement[bool]:
        t = self.model
        if max_attempts is None:
            assert t is WorkUnitRow, "a table without max_attempts needs the coordinator's cap"
            return t.attempts < WorkUnitRow.max_attempts
        return t.attempts < max_attempts

    def _at_cap(self, max_attempts: int | None) -> ColumnElement[bool]:
        return ~self._below_cap(max_attempts)

    def _held(self, row_id: int, worker: str, attempt: int) -> ColumnElement[bool]:
        """The WHERE clause of a write allowed only to the lease holder (the fencing token)."""
        t = self.model
        return (
            (t.id == row_id)
            & (t.status == RUNNING)
            & (t.worker == worker)
            & (t.attempts == attempt)
        )

    def _same_key(self, row_id: int, key: str | None) -> ColumnElement[bool]:
        return self._key() == key if key else self.model.id == row_id

    # -- worker side ------------------------------------------------------------------------------

    def lease(
        self, row_id: int, worker: str, lease_s: float, *, key: str | None, max_attempts: int | None
    ) -> int | None:
        """Take a row's lease with one conditional UPDATE.

        Args:
            key: the row's key must match too (a message meant for another database finds no
                row); None: not checked.
            max_attempts: the cap; None: the row's ``max_attempts`` column.

        Returns:
            The new attempt number, or None when the row was not leased.
        """
        t = self.model
        with self.engine.begin() as conn:
            now = db_now(conn)
            leased = conn.execute(
                update(t)
                .where(
                    t.id == row_id,
                    self._same_key(row_id, key),
                    self._leasable(now),
                    self._below_cap(max_attempts),
                )
                .values(
                    status=RUNNING,
                    attempts=t.attempts + 1,
                    worker=worker,
                    lease_expires_at=now + dt.timedelta(seconds=lease_s),
                    heartbeat_at=now,
                    error=None,
                )
            )
            if leased.rowcount != 1:
                return None
            attempts: int = conn.scalar(select(t.attempts).where(t.id == row_id))  # type: ignore[assignment]
            return attempts

    def not_leased(self, row_id: int, *, key: str | None, max_attempts: int | None) -> str:
        """Why a row could not be leased; fails it when its attempts are used up.

        Returns:
            ``missing``, the row's terminal status, ``failed`` (given up on now) or ``busy``
            (another worker holds a live lease).
        """
        t = self.model
        with self.engine.begin() as conn:
            now = db_now(conn)
            row = conn.execute(
                select(t.status, t.attempts, t.worker, t.error).where(
                    t.id == row_id, self._same_key(row_id, key)
                )
            ).one_or_none()
            if row is None:
                return LeaseOutcome.MISSING
            if row.status in self.terminal:
                return str(row.status)
            gave_up = conn.execute(
                update(t)
                .where(t.id == row_id, self._leasable(now), self._at_cap(max_attempts))
                .values(
                    status=FAILED,
                    lease_expires_at=None,
                    error=gave_up_text(row.attempts, row.worker, row.error),
                )
            )
            return LeaseOutcome.FAILED if gave_up.rowcount == 1 else LeaseOutcome.BUSY

    def beat(self, row_id: int, worker: str, attempt: int, lease_s: float, **values: Any) -> bool:
        """Renew a held lease (writing ``values`` too); False when it is no longer held."""
        with self.engine.begin() as conn:
            now = db_now(conn)
            renewed = conn.execute(
                update(self.model)
                .where(self._held(row_id, worker, attempt))
                .values(
                    lease_expires_at=now + dt.timedelta(seconds=lease_s), heartbeat_at=now, **values
                )
            )
        return renewed.rowcount == 1

    def finish(self, row_id: int, worker: str, attempt: int, **values: Any) -> bool:
        """Write ``values`` and drop the lease in one transaction, only while holding it.

        Transient database errors are retried.

        Returns:
            False when another worker took the lease over (whatever it records is the one
            result).
        """

        def write() -> bool:
            with self.engine.begin() as conn:
                now = db_now(conn)
                written = conn.execute(
                    update(self.model)
                    .where(self._held(row_id, worker, attempt))
                    .values(lease_expires_at=None, heartbeat_at=now, **values)
                )
            return written.rowcount == 1

        return with_db_retries(write)

    def release(
        self, row_id: int, worker: str, attempt: int, reason: str, *, max_attempts: int | None
    ) -> str:
        """After an infrastructure failure: ``failed`` when no attempts are left, else expire
        the lease now (the coordinator re-sends the row), keeping the reason for the record.

        Returns:
            ``failed``, ``released`` or ``superseded`` (the lease was no longer ours).
        """
        held = self._held(row_id, worker, attempt)

        def write() -> str:
            with self.engine.begin() as conn:
                now = db_now(conn)
                failed = conn.execute(
                    update(self.model)
                    .where(held, self._at_cap(max_attempts))
                    .values(
                        status=FAILED,
                        lease_expires_at=None,
                        heartbeat_at=now,
                        error=gave_up_text(attempt, worker, reason),
                    )
                )
                if failed.rowcount == 1:
                    return LeaseOutcome.FAILED
                released = conn.execute(
                    update(self.model)
                    .where(held)
                    .values(lease_expires_at=now, heartbeat_at=now, error=reason[:2000])
                )
                if released.rowcount == 1:
                    return LeaseOutcome.RELEASED
                return LeaseOutcome.SUPERSEDED

        return with_db_retries(write)

    def heartbeat(
        self,
        row_id: int,
        worker: str,
        attempt: int,
        lease_s: float,
        *,
        interval_s: float | None = None,
    ) -> Heartbeat:
        """A (not yet started) thread renewing this held lease."""
        return Heartbeat(self, row_id, worker, attempt, lease_s, interval_s=interval_s)

    # -- coordinator side -------------------------------------------------------------------

    def snapshot(self, ids: Sequence[int]) -> dict[int, LeaseState]:
        """The lease state of ``ids`` (one query per 500 ids), read on the database's clock."""
        t = self.model
        cap = WorkUnitRow.max_attempts if t is WorkUnitRow else None
        step = TrainingJob.step if t is TrainingJob else None
        out: dict[int, LeaseState] = {}
        with self.engine.connect() as conn:
            now = db_now(conn)
            for chunk in chunks(list(ids)):
                query = select(
                    t.id,
                    self._key(),
                    t.status,
                    t.attempts,
                    t.lease_expires_at < now,
                    t.worker,
                    *(c for c in (cap, step) if c is not None),
                ).where(t.id.in_(chunk))
                for row in conn.execute(query):
                    out[row[0]] = LeaseState(
                        id=row[0],
                        key=row[1],
                        status=row[2],
                        attempts=row[3],
                        expired=bool(row[4]),
                        worker=row[5],
                        max_attempts=row[6] if cap is not None else None,
                        step=row[6] if step is not None else None,
                    )
        return out

    def give_up(self, ids: Sequence[int], caps: Mapping[int, int] | None = None) -> None:
        """Fail rows nobody holds whose attempts are used up (their workers died).

        Args:
            caps: each id's cap where the table keeps none (training jobs).
        """
        if not ids:
            return
        t = self.model
        with self.engine.begin() as conn:
            now = db_now(conn)
            rows = conn.execute(
                select(t.id, t.attempts, t.worker, t.error).where(t.id.in_(ids))
            ).all()
            for row_id, attempts, worker, error in rows:
                conn.execute(
                    update(t)
                    .where(
                        t.id == row_id,
                        self._leasable(now),
                        self._at_cap(None if caps is None else caps[row_id]),
                    )
                    .values(
                        status=FAILED,
                        lease_expires_at=None,
                        error=gave_up_text(attempts, worker, error),
                    )
                )
