"""The task body as plain functions, on SQLite and the real PostgreSQL: leases, attempts, fencing,
idempotent upserts, deterministic failures. No broker and no worker are involved.
"""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import sessionmaker

from lpzero_queue.config import load_settings
from lpzero_queue.execution.celery_executor import CeleryExecutor, failed_rows, unit_key
from lpzero_queue.execution.tasks import execute_unit, lease_unit
from lpzero_queue.proxies.scoring import WorkUnit
from lpzero_queue.storage import WorkUnitRow
from tests.execution._celery_support import BROKER_URL, tiny_units


def _executor(engine: Engine, database_url: str, **kw: object) -> CeleryExecutor:
    settings = load_settings({"LPZQ_DATABASE_URL": database_url, "LPZQ_BROKER_URL": BROKER_URL})
    return CeleryExecutor(settings, sessionmaker(engine), **kw)  # type: ignore[arg-type]


def _row(engine: Engine, unit_id: int) -> WorkUnitRow:
    with sessionmaker(engine)() as s:
        return s.execute(select(WorkUnitRow).where(WorkUnitRow.id == unit_id)).scalar_one()


def _expire(engine: Engine, unit_id: int) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    with engine.begin() as conn:
        conn.execute(
            update(WorkUnitRow).where(WorkUnitRow.id == unit_id).values(lease_expires_at=past)
        )


def test_upsert_is_idempotent_and_reopens_failed_rows(
    migrated_engine: Engine, database_url: str
) -> None:
    units = tiny_units(2)
    ex = _executor(migrated_engine, database_url, max_attempts=2)
    first = ex._upsert([*units, units[0]])  # a duplicate unit is one row
    assert len(first) == 2
    assert sorted(first) == sorted(ex._upsert(units))
    unit_id = next(iter(first))
    assert _row(migrated_engine, unit_id).unit_key == first[unit_id].key
    with migrated_engine.begin() as conn:
        conn.execute(
            update(WorkUnitRow)
            .where(WorkUnitRow.id == unit_id)
            .values(status="failed", attempts=2, error="boom")
        )
    ex._upsert(units)
    row = _row(migrated_engine, unit_id)
    assert (row.status, row.attempts, row.error) == ("pending", 0, None)


def test_lease_is_exclusive_expires_and_is_capped(
    migrated_engine: Engine, database_url: str
) -> None:
    ex = _executor(migrated_engine, database_url, max_attempts=2)
    (unit_id,) = ex._upsert(tiny_units(1))
    assert lease_unit(migrated_engine, unit_id, "w1", 60) == 1
    assert lease_unit(migrated_engine, unit_id, "w2", 60) is None  # live lease: not taken
    _expire(migrated_engine, unit_id)
    assert lease_unit(migrated_engine, unit_id, "w2", 60) == 2  # expired: taken over
    row = _row(migrated_engine, unit_id)
    assert (row.status, row.worker, row.attempts) == ("running", "w2", 2)
    _expire(migrated_engine, unit_id)
    # Attempts exhausted: the task refuses to run it and records the failure.
    assert execute_unit(unit_id, database_url, worker="w3", lease_s=60) == "failed"
    row = _row(migrated_engine, unit_id)
    assert row.status == "failed"
    assert row.attempts == 2
    assert "gave up after 2 attempts" in (row.error or "")


def test_done_row_returns_at_once_and_a_stale_holder_cannot_overwrite(
    migrated_engine: Engine, database_url: str
) -> None:
    ex = _executor(migrated_engine, database_url)
    (unit_id,) = ex._upsert(tiny_units(1))
    assert lease_unit(migrated_engine, unit_id, "stale", 60) == 1
    _expire(migrated_engine, unit_id)
    from lpzero_queue.execution import tasks

    # The new holder records a result; the stale holder's write is refused (fencing token).
    assert lease_unit(migrated_engine, unit_id, "fresh", 60) == 2
    result = {"rows": [], "seconds": 0.0, "worker": "fresh"}
    assert tasks._finish(migrated_engine, unit_id, "fresh", 2, result=result, error=None) == "done"
    stale = {"rows": [{"bogus": 1}], "seconds": 0.0, "worker": "stale"}
    assert (
        tasks._finish(migrated_engine, unit_id, "stale", 1, result=stale, error=None)
        == "superseded"
    )
    # A redelivered message finds the row done and returns without computing.
    assert execute_unit(unit_id, database_url, worker="late", lease_s=60) == "done"
    row = _row(migrated_engine, unit_id)
    assert (row.status, row.attempts, row.worker, row.result) == ("done", 2, "fresh", result)


def test_wrong_unit_key_finds_no_row(migrated_engine: Engine, database_url: str) -> None:
    ex = _executor(migrated_engine, database_url)
    (unit_id,) = ex._upsert(tiny_units(1))
    outcome = execute_unit(unit_id, database_url, worker="w", lease_s=60, unit_key="0" * 64)
    assert outcome == "missing"
    assert _row(migrated_engine, unit_id).status == "pending"


def test_deterministic_failure_is_stored_not_retried(
    migrated_engine: Engine, database_url: str
) -> None:
    unit = tiny_units(1)[0]
    bad = WorkUnit(unit.setup, unit.seed, unit.archs, ("not an expression",), ())
    ex = _executor(migrated_engine, database_url)
    (unit_id,) = ex._upsert([bad])
    assert execute_unit(unit_id, database_url, worker="w", lease_s=60) == "failed"
    row = _row(migrated_engine, unit_id)
    assert (row.status, row.attempts, row.result) == ("failed", 1, None)
    assert "ExpressionSyntaxError" in (row.error or "")
    # The coordinator turns it into one error row per (architecture, proxy).
    (got,) = failed_rows(bad, row.error or "")
    assert (got.status, got.score, got.proxy) == ("error", None, "not an expression")
    assert failed_rows(bad, "timeout after 30 s")[0].status == "timeout"


def test_unit_key_is_canonical() -> None:
    a, b = tiny_units(2)
    assert unit_key(a) == unit_key(WorkUnit.from_payload(a.to_payload()))
    assert unit_key(a) != unit_key(b)


@pytest.mark.parametrize("soft, hard", [(10, 10), (20, 10)])
def test_soft_limit_must_be_below_hard_limit(soft: int, hard: int) -> None:
    from lpzero_queue.execution.celery_app import CeleryOptions, make_celery

    settings = load_settings({"LPZQ_BROKER_URL": BROKER_URL})
    with pytest.raises(ValueError, match="soft time limit"):
        make_celery(settings, CeleryOptions(soft_time_limit_s=soft, hard_time_limit_s=hard))


def test_celery_configuration_follows_the_operations_guide() -> None:
    from lpzero_queue.execution.celery_app import make_celery

    conf = make_celery(load_settings({"LPZQ_BROKER_URL": BROKER_URL})).conf
    assert conf.accept_content == ["json"]
    assert (conf.task_serializer, conf.result_serializer) == ("json", "json")
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_ignore_result
    assert conf.task_soft_time_limit < conf.task_time_limit
    for vt in (
        conf.broker_transport_options["visibility_timeout"],
        conf.result_backend_transport_options["visibility_timeout"],
        conf.visibility_timeout,
    ):
        assert vt > conf.task_time_limit
    assert {q.name for q in conf.task_queues} == {"proxy", "train"}
    assert conf.worker_max_tasks_per_child and conf.worker_max_memory_per_child
    route = conf.task_routes[0]
    assert route("lpzq.score_unit", (), {}, {}) == {"queue": "proxy"}
    assert route("lpzq.train_subnet", (), {}, {}) == {"queue": "train"}
