"""The leased queue, on both tables and both backends: one protocol for units and training jobs.

Lease (compare-and-set, counting attempts), heartbeat, fenced finish, release after a failure,
give-up past the cap, and the snapshot a coordinator polls.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import Engine, select, update

from lpzero_queue.storage import JobRequest, TrainingJob, TrainingJobQueue, WorkUnitQueue
from lpzero_queue.storage.queue import (
    LEASE_LAPSED,
    LeasedQueue,
    adopt_engine,
    forget_engines,
    queue_engine,
)


def _unit(engine: Engine) -> tuple[LeasedQueue[Any], int, str, int | None]:
    queue = WorkUnitQueue(engine)
    ((unit_id, key),) = queue.upsert({"k" * 64: {"unit": 1}}, max_attempts=2).items()
    return queue, unit_id, key, None  # the cap is the row's max_attempts


def _job(engine: Engine) -> tuple[LeasedQueue[Any], int, str, int | None]:
    queue = TrainingJobQueue(engine)
    request = JobRequest({"kind": "arch"}, {"steps": 1}, 0)
    row = queue.submit([request])[request.key]
    return queue, row.id, request.key, 2  # the cap comes with the message


def _expire(queue: LeasedQueue[Any], row_id: int) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    with queue.engine.begin() as conn:
        conn.execute(
            update(queue.model).where(queue.model.id == row_id).values(lease_expires_at=past)
        )


@pytest.mark.parametrize("make", [_unit, _job], ids=["work_units", "training_jobs"])
def test_one_lease_protocol_for_units_and_jobs(migrated_engine: Engine, make: Any) -> None:
    queue, row_id, key, cap = make(migrated_engine)
    assert queue.lease(row_id, "w1", 60, key="0" * 64, max_attempts=cap) is None  # wrong key
    assert queue.lease(row_id, "w1", 60, key=key, max_attempts=cap) == 1
    assert queue.lease(row_id, "w2", 60, key=key, max_attempts=cap) is None  # live lease
    assert queue.not_leased(row_id, key=key, max_attempts=cap) == "busy"
    assert queue.beat(row_id, "w1", 1, 60)
    state = queue.snapshot([row_id])[row_id]
    assert (state.status, state.attempts, state.worker, state.key) == ("running", 1, "w1", key)
    assert state.live and not state.expired
    # An infrastructure failure releases the lease at once, keeping the reason.
    assert queue.release(row_id, "w1", 1, "MemoryError: x", max_attempts=cap) == "released"
    state = queue.snapshot([row_id])[row_id]
    assert state.expired and not state.live and state.attempts == 1
    # The next worker takes it over; the old holder is fenced out.
    assert queue.lease(row_id, "w2", 60, key=key, max_attempts=cap) == 2
    assert not queue.beat(row_id, "w1", 1, 60)
    assert not queue.finish(row_id, "w1", 1, error="stale")
    assert queue.release(row_id, "w1", 1, "late", max_attempts=cap) == "superseded"
    # Its worker dies with no attempts left: the coordinator gives up on it.
    _expire(queue, row_id)
    queue.give_up([row_id], None if cap is None else {row_id: cap})
    state = queue.snapshot([row_id])[row_id]
    assert (state.status, state.attempts) == ("failed", 2)
    assert queue.not_leased(row_id, key=key, max_attempts=cap) == "failed"
    assert queue.lease(row_id, "w3", 60, key=key, max_attempts=cap) is None


@pytest.mark.parametrize("make", [_unit, _job], ids=["work_units", "training_jobs"])
def test_give_up_records_why_and_a_held_lease_finishes_once(
    migrated_engine: Engine, make: Any
) -> None:
    queue, row_id, key, cap = make(migrated_engine)
    assert queue.lease(row_id, "w1", 60, key=key, max_attempts=cap) == 1
    queue.give_up([row_id], None if cap is None else {row_id: cap})  # live and below the cap
    assert queue.snapshot([row_id])[row_id].status == "running"
    assert queue.release(row_id, "w1", 1, "RuntimeError: CUDA error", max_attempts=cap)
    assert queue.lease(row_id, "w2", 60, key=key, max_attempts=cap) == 2
    _expire(queue, row_id)
    assert queue.not_leased(row_id, key=key, max_attempts=cap) == "failed"
    with queue.engine.connect() as conn:
        error = conn.scalar(select(queue.model.error).where(queue.model.id == row_id))
    assert error == f"gave up after 2 attempts (last worker w2): {LEASE_LAPSED}"


def test_a_released_job_at_its_cap_is_failed_with_the_reason(migrated_engine: Engine) -> None:
    queue, job_id, key, _ = _job(migrated_engine)
    assert queue.lease(job_id, "w1", 60, key=key, max_attempts=1) == 1
    assert queue.release(job_id, "w1", 1, "MemoryError: x", max_attempts=1) == "failed"
    with migrated_engine.connect() as conn:
        row = conn.execute(select(TrainingJob).where(TrainingJob.id == job_id)).one()
    assert (row.status, row.lease_expires_at) == ("failed", None)
    assert row.error == "gave up after 1 attempt (last worker w1): MemoryError: x"


def test_one_engine_cache_dropped_after_fork(migrated_engine: Engine) -> None:
    url = "sqlite:///:memory:"
    forget_engines()
    first = queue_engine(url)
    assert queue_engine(url) is first
    forget_engines()  # what a forked worker child does first
    assert queue_engine(url) is not first
    forget_engines()
    adopt_engine(url, migrated_engine)  # an in-process runner lends its own engine
    assert queue_engine(url) is migrated_engine
    forget_engines()
