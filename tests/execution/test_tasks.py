"""The task body as plain functions, on SQLite and the real PostgreSQL: leases, attempts, fencing,
idempotent upserts, deterministic failures, infrastructure failures. No worker is involved (the
coordinator loop test sends messages to a test-only key prefix that nobody consumes).
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import sessionmaker

from lpzero_queue.config import load_settings
from lpzero_queue.errors import LpzqError
from lpzero_queue.execution.base import UnitFailedError
from lpzero_queue.execution.celery_app import CeleryOptions
from lpzero_queue.execution.celery_executor import CeleryExecutor, unit_key
from lpzero_queue.execution.tasks import TEST_FAIL_ENV, execute_unit, lease_unit
from lpzero_queue.proxies.scoring import WorkUnit
from lpzero_queue.storage import WorkUnitRow
from tests.execution._celery_support import (
    BROKER_URL,
    delete_prefixed_keys,
    new_key_prefix,
    tiny_units,
)


@pytest.fixture
def prefix() -> Iterator[str]:
    value = new_key_prefix()
    yield value
    delete_prefixed_keys(value)


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
    # A fresh set of attempts; the count goes on (it is half of the fencing token).
    assert (row.status, row.attempts, row.max_attempts) == ("pending", 2, 4)


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
    assert tasks._finish(migrated_engine, unit_id, "fresh", 2, result=result) == "done"
    stale = {"rows": [{"bogus": 1}], "seconds": 0.0, "worker": "stale"}
    assert tasks._finish(migrated_engine, unit_id, "stale", 1, result=stale) == "superseded"
    assert tasks._release(migrated_engine, unit_id, "stale", 1, "MemoryError") == "superseded"
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


def test_deterministic_failure_is_a_stored_result_not_retried(
    migrated_engine: Engine, database_url: str
) -> None:
    unit = tiny_units(1)[0]
    bad = WorkUnit(unit.setup, unit.seed, unit.archs, ("not an expression",), ())
    ex = _executor(migrated_engine, database_url)
    (unit_id,) = ex._upsert([bad])
    assert execute_unit(unit_id, database_url, worker="w", lease_s=60, torch_threads=1) == "done"
    row = _row(migrated_engine, unit_id)
    assert (row.status, row.attempts, row.error) == ("done", 1, None)
    assert row.result is not None
    (got,) = row.result["rows"]  # one error row per (architecture, proxy)
    assert (got["status"], got["score"], got["proxy"]) == ("error", None, "not an expression")
    assert "ExpressionSyntaxError" in got["error"]
    # How the result was obtained is recorded with it.
    assert (row.result["torch_threads"], row.result["device"]) == (1, "cpu")


def test_infrastructure_failure_is_retried_then_a_failed_unit(
    migrated_engine: Engine, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ex = _executor(migrated_engine, database_url, max_attempts=2)
    (unit_id,) = ex._upsert(tiny_units(1))
    monkeypatch.setenv(TEST_FAIL_ENV, "CUDA out of memory")
    # First attempt: the reason is kept and the lease expires at once, so the unit is re-sent.
    assert execute_unit(unit_id, database_url, worker="w1", lease_s=60) == "released"
    row = _row(migrated_engine, unit_id)
    assert (row.status, row.attempts, row.result) == ("running", 1, None)
    assert row.error == "MemoryError: CUDA out of memory"
    assert ex._snapshot([unit_id])[unit_id].expired
    # Last attempt: a failed unit with its reason, and no rows (nothing to store as a result).
    assert execute_unit(unit_id, database_url, worker="w2", lease_s=60) == "failed"
    row = _row(migrated_engine, unit_id)
    assert (row.status, row.attempts, row.result) == ("failed", 2, None)
    assert row.error == "gave up after 2 attempts (last worker w2): MemoryError: CUDA out of memory"
    # The next request retries it with a fresh set of attempts and gets the rows.
    monkeypatch.delenv(TEST_FAIL_ENV)
    ex._upsert(tiny_units(1))
    assert execute_unit(unit_id, database_url, worker="w3", lease_s=60) == "done"
    row = _row(migrated_engine, unit_id)
    assert (row.status, row.attempts, row.max_attempts, row.error) == ("done", 3, 4, None)
    assert [r["status"] for r in (row.result or {})["rows"]] == ["ok"] * 3


@pytest.mark.integration
def test_coordinator_stops_on_a_failed_unit_and_a_rerun_retries_it(
    migrated_engine: Engine, database_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The coordinator loop against a simulated worker that always fails for infrastructure
    reasons: it re-sends after each failed attempt, then stops with one line naming the unit."""
    units = tiny_units(2)
    ex = _executor(
        migrated_engine,
        database_url,
        options=CeleryOptions(key_prefix=prefix),
        max_attempts=2,
        lease_s=30.0,
        poll_s=0.05,
    )
    results: list[object] = []
    error: list[BaseException] = []

    def coordinate() -> None:
        try:
            results.extend(ex.run(units))
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=coordinate, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while ex.dispatched < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    first, second = sorted(ex._snapshot(list(range(1, 100))))
    assert execute_unit(first, database_url, worker="ok", lease_s=30) == "done"
    monkeypatch.setenv(TEST_FAIL_ENV, "worker lost its GPU")
    assert execute_unit(second, database_url, worker="w1", lease_s=30) == "released"
    while ex.dispatched < 3:  # re-sent at once, not after the 30 s lease
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert execute_unit(second, database_url, worker="w2", lease_s=30) == "failed"
    thread.join(timeout=30)
    (exc,) = error
    assert isinstance(exc, UnitFailedError) and isinstance(exc, LpzqError)
    message = str(exc)
    assert "\n" not in message
    assert message.startswith(f"work unit {second} (1 flexibert architectures x 3 proxies, seed 0)")
    assert "gave up after 2 attempts (last worker w2): MemoryError: worker lost its GPU" in message
    assert "lpzq search resume RUN" in message
    assert [u for u, _ in results] == [units[0]]  # the unit done before it was yielded
    # A rerun reopens the failed unit (and only it) with fresh attempts.
    monkeypatch.delenv(TEST_FAIL_ENV)
    again = _executor(
        migrated_engine, database_url, options=CeleryOptions(key_prefix=prefix), poll_s=0.05
    )
    thread = threading.Thread(target=lambda: results.extend(again.run(units)), daemon=True)
    thread.start()
    while again.dispatched < 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert execute_unit(second, database_url, worker="w3", lease_s=30) == "done"
    thread.join(timeout=30)
    assert again.dispatched == 1 and len(results) == 3


def test_unit_key_is_canonical() -> None:
    a, b = tiny_units(2)
    assert unit_key(a) == unit_key(WorkUnit.from_payload(a.to_payload()))
    assert unit_key(a) != unit_key(b)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"soft_time_limit_s": 10, "hard_time_limit_s": 10}, r"celery_soft_time_limit_s \(10\)"),
        ({"soft_time_limit_s": 20, "hard_time_limit_s": 10}, "must be below"),
        (
            {"soft_time_limit_s": 50, "hard_time_limit_s": 100, "visibility_timeout": 100},
            "must exceed",
        ),
    ],
)
def test_inconsistent_limits_are_rejected(options: dict[str, int], message: str) -> None:
    from lpzero_queue.execution.celery_app import make_celery

    settings = load_settings({"LPZQ_BROKER_URL": BROKER_URL})
    with pytest.raises(LpzqError, match=message):
        make_celery(settings, CeleryOptions(**options))


def test_celery_settings_reach_the_app_and_the_executor(
    migrated_engine: Engine, database_url: str
) -> None:
    from lpzero_queue.execution.celery_app import make_celery

    env = {
        "LPZQ_DATABASE_URL": database_url,
        "LPZQ_BROKER_URL": BROKER_URL,
        "LPZQ_CELERY_SOFT_TIME_LIMIT_S": "50",
        "LPZQ_CELERY_HARD_TIME_LIMIT_S": "60",
        "LPZQ_CELERY_VISIBILITY_TIMEOUT_S": "70",
        "LPZQ_CELERY_LEASE_S": "9",
        "LPZQ_CELERY_HEARTBEAT_S": "2",
        "LPZQ_CELERY_MAX_ATTEMPTS": "5",
        "LPZQ_CELERY_KEY_PREFIX": "deploy-a:",
        "LPZQ_TORCH_THREADS": "2",
    }
    settings = load_settings(env)
    conf = make_celery(settings).conf
    assert (conf.task_soft_time_limit, conf.task_time_limit, conf.visibility_timeout) == (
        50,
        60,
        70,
    )
    assert conf.broker_transport_options == {
        "visibility_timeout": 70,
        "global_keyprefix": "deploy-a:",
    }
    assert conf.result_backend_transport_options == conf.broker_transport_options
    ex = CeleryExecutor(settings, sessionmaker(migrated_engine))
    assert (ex.lease_s, ex.heartbeat_s, ex.max_attempts) == (9.0, 2.0, 5)
    assert (ex.torch_threads, ex.name) == (2, "celery:threads=2")
    # Derived: the visibility timeout is the hard limit plus 900 s; the heartbeat a third.
    derived = load_settings({"LPZQ_BROKER_URL": BROKER_URL, "LPZQ_CELERY_LEASE_S": "9"})
    assert make_celery(derived).conf.visibility_timeout == 2100 + 900
    assert derived.effective_heartbeat_s == 3.0 and derived.scoring_threads == 1


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
