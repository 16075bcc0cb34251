"""The proxy-scoring queue: ``work_units`` rows, one per distinct unit of work.

A unit is keyed by the sha256 of its canonical JSON (``unit_key``), so the same work is one row;
its attempt cap is the row's ``max_attempts``, which each new request extends.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select, update

from lpzero_queue.storage._models import WorkUnitRow
from lpzero_queue.storage._upsert import insert_ignore
from lpzero_queue.storage.queue import LeasedQueue, chunks
from lpzero_queue.storage.status import UnitKind, UnitStatus

UNIT_TERMINAL = (UnitStatus.DONE, UnitStatus.FAILED)


@dataclass(frozen=True)
class UnitOutcome:
    """A finished unit as recorded: ``done`` with its result, or ``failed`` with its reason."""

    id: int
    status: UnitStatus
    worker: str | None
    result: dict[str, Any] | None
    error: str | None


class WorkUnitQueue(LeasedQueue[WorkUnitRow]):
    """The ``work_units`` queue (see :class:`~lpzero_queue.storage.queue.LeasedQueue`)."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(
            engine, WorkUnitRow, key_column="unit_key", label="unit", terminal=UNIT_TERMINAL
        )

    def upsert(self, payloads: Mapping[str, dict[str, Any]], max_attempts: int) -> dict[int, str]:
        """One row per key (INSERT ... ON CONFLICT DO NOTHING); ids with their keys.

        A new request gives units that failed (or used up their attempts under a coordinator
        that died) a fresh set of ``max_attempts``; attempts keep counting, as
        ``(worker, attempts)`` fences a stale lease holder.
        """
        t = WorkUnitRow
        ids: dict[int, str] = {}
        with self.engine.begin() as conn:
            for keys in chunks(list(payloads)):
                values = [
                    {
                        "unit_key": k,
                        "kind": UnitKind.PROXY,
                        "payload": payloads[k],
                        "status": UnitStatus.PENDING,
                        "attempts": 0,
                        "max_attempts": max_attempts,
                    }
                    for k in keys
                ]
                insert_ignore(conn, t, values, index_elements=["unit_key"])
                conn.execute(
                    update(t)
                    .where(t.unit_key.in_(keys), t.status == UnitStatus.FAILED)
                    .values(status=UnitStatus.PENDING, max_attempts=t.attempts + max_attempts)
                )
                conn.execute(
                    update(t)
                    .where(
                        t.unit_key.in_(keys),
                        t.status.in_((UnitStatus.PENDING, UnitStatus.RUNNING)),
                        t.attempts >= t.max_attempts,
                    )
                    .values(max_attempts=t.attempts + max_attempts)
                )
                query = select(t.id, t.unit_key).where(t.unit_key.in_(keys))
                ids.update((unit_id, key) for unit_id, key in conn.execute(query))
        return ids

    def payload(self, unit_id: int) -> dict[str, Any]:
        """The unit's canonical JSON."""
        with self.engine.connect() as conn:
            payload: dict[str, Any] = conn.execute(
                select(WorkUnitRow.payload).where(WorkUnitRow.id == unit_id)
            ).scalar_one()
        return payload

    def outcomes(self, ids: Sequence[int]) -> list[UnitOutcome]:
        """What the finished units ``ids`` recorded, in id order."""
        t = WorkUnitRow
        with self.engine.connect() as conn:
            return [
                UnitOutcome(row.id, UnitStatus(row.status), row.worker, row.result, row.error)
                for chunk in chunks(sorted(ids))
                for row in conn.execute(
                    select(t.id, t.status, t.worker, t.result, t.error).where(t.id.in_(chunk))
                )
            ]

    def error(self, unit_id: int) -> str | None:
        """The recorded reason of a unit (why it failed)."""
        with self.engine.connect() as conn:
            return conn.scalar(select(WorkUnitRow.error).where(WorkUnitRow.id == unit_id))

    def record_done(self, unit_id: int, worker: str, attempt: int, result: dict[str, Any]) -> bool:
        """Record the unit's rows and ``done``, only while holding the lease."""
        return self.finish(
            unit_id, worker, attempt, status=UnitStatus.DONE, result=result, error=None
        )
