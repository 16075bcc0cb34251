"""One failure policy for every executor: a bug is retried and fails the unit, never a result.

An operator with a bug (a ``TypeError``) used to be stored as a permanent ``error`` evaluation
that no later run recomputed. Now only declared outcomes (``proxies.outcomes``) are results: the
bug is an infrastructure-style failure, retried up to the attempts cap, and then the unit is
``failed`` with its reason and nothing stored for it.
"""

from __future__ import annotations

import re

import pytest
import torch
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from lpzero_queue.config import load_settings
from lpzero_queue.execution.base import UnitFailedError
from lpzero_queue.execution.celery_executor import CeleryExecutor
from lpzero_queue.execution.local import LocalExecutor
from lpzero_queue.execution.tasks import execute_unit
from lpzero_queue.proxies.scoring import ArchRef, ScoringSetup, WorkUnit
from lpzero_queue.proxies.spec import ProxySpec
from lpzero_queue.storage import Architecture, Benchmark, Evaluation, WorkUnitRow, transaction
from tests.execution._celery_support import BROKER_URL, tiny_units
from tests.workflows import test_search_run as coordinator_tests

BUG = "unsupported operand type(s) for +: 'Tensor' and 'NoneType'"


@pytest.fixture
def buggy_expression(monkeypatch: pytest.MonkeyPatch) -> str:
    """An expression whose operator has a bug: a TypeError on every input."""
    from lpzero_queue.proxies import operators

    def buggy(x: torch.Tensor) -> torch.Tensor:
        raise TypeError(BUG)

    op = operators.UnaryOp("buggy_test", buggy, "none", "same_shape")
    monkeypatch.setitem(operators._UNARY, "buggy_test", op)
    return "sum(mean(buggy_test(act)), mean(head))"


def _row(engine: Engine, unit_id: int) -> WorkUnitRow:
    with sessionmaker(engine)() as s:
        return s.execute(select(WorkUnitRow).where(WorkUnitRow.id == unit_id)).scalar_one()


def test_a_bug_in_an_operator_is_retried_then_a_failed_unit(
    migrated_engine: Engine, database_url: str, buggy_expression: str
) -> None:
    unit = tiny_units(1)[0]
    buggy = WorkUnit(unit.setup, unit.seed, unit.archs, (buggy_expression,), ())
    settings = load_settings({"LPZQ_DATABASE_URL": database_url, "LPZQ_BROKER_URL": BROKER_URL})
    ex = CeleryExecutor(settings, sessionmaker(migrated_engine), max_attempts=2)
    (unit_id,) = ex._upsert([buggy])
    # First attempt: released at once with the reason (the coordinator re-sends it), no rows.
    assert execute_unit(unit_id, database_url, worker="w1", lease_s=60) == "released"
    row = _row(migrated_engine, unit_id)
    assert (row.status, row.attempts, row.result) == ("running", 1, None)
    assert row.error == f"TypeError: {BUG}"
    assert ex._snapshot([unit_id])[unit_id].expired
    # Last attempt: a failed unit, its reason kept, still no rows.
    assert execute_unit(unit_id, database_url, worker="w2", lease_s=60) == "failed"
    row = _row(migrated_engine, unit_id)
    assert (row.status, row.attempts, row.result) == ("failed", 2, None)
    assert row.error == f"gave up after 2 attempts (last worker w2): TypeError: {BUG}"


def test_a_declared_rejection_is_still_a_result(
    migrated_engine: Engine, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same operator rejecting its input with a declared error is an ``error`` row."""
    from lpzero_queue.proxies import operators
    from lpzero_queue.proxies.outcomes import ProxyRejectedError

    def picky(x: torch.Tensor) -> torch.Tensor:
        raise ProxyRejectedError("no tensors of this shape")

    op = operators.UnaryOp("picky_test", picky, "none", "same_shape")
    monkeypatch.setitem(operators._UNARY, "picky_test", op)
    unit = tiny_units(1)[0]
    text = "sum(mean(picky_test(act)), mean(head))"
    settings = load_settings({"LPZQ_DATABASE_URL": database_url, "LPZQ_BROKER_URL": BROKER_URL})
    ex = CeleryExecutor(settings, sessionmaker(migrated_engine), max_attempts=2)
    (unit_id,) = ex._upsert([WorkUnit(unit.setup, unit.seed, unit.archs, (text,), ())])
    assert execute_unit(unit_id, database_url, worker="w1", lease_s=60) == "done"
    row = _row(migrated_engine, unit_id)
    assert (row.status, row.attempts) == ("done", 1)
    (got,) = (row.result or {})["rows"]
    assert (got["status"], got["score"]) == ("error", None)
    assert got["error"] == "ProxyRejectedError: no tensors of this shape"


def test_a_bug_in_an_operator_stops_the_local_run_and_stores_nothing(
    migrated_engine: Engine, buggy_expression: str
) -> None:
    from lpzero_queue.workflows.evaluations import Job, ensure_batch, ensure_proxies, score_missing

    sessions: sessionmaker[Session] = coordinator_tests._sessions(migrated_engine)
    good = ProxySpec("expression", "sum(mean(act), mean(head))", "higher")
    bad = ProxySpec("expression", buggy_expression, "higher")
    with transaction(sessions) as s:
        bench = s.scalars(select(Benchmark).where(Benchmark.name == "gpt2-wt103")).one()
        setup = ScoringSetup.resolve(bench.space, batch_size=2, seq_len=16)
        archs = s.scalars(
            select(Architecture).where(Architecture.benchmark_id == bench.id).limit(2)
        ).all()
        job = Job(
            setup,
            (good, bad),
            ensure_proxies(s, [good, bad]),
            tuple(ArchRef(a.id, a.key, dict(a.config)) for a in archs),
            {0: ensure_batch(s, bench, setup, 0).id},
        )
    with pytest.raises(UnitFailedError, match=re.escape(f"TypeError: {BUG}")):
        score_missing(sessions, job, LocalExecutor(cache_bytes=2**28))
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Evaluation)) == 0
