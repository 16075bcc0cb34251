"""The in-process executor: the same rows with one or several scoring processes, the scoring
thread rule, and which failures are results."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from lpzero_queue.benchmarks.records import load_shipped
from lpzero_queue.execution.base import UnitFailedError
from lpzero_queue.execution.local import LocalExecutor
from lpzero_queue.proxies.expression import LPZERO_FLEXIBERT
from lpzero_queue.proxies.scoring import ArchRef, ScoreRow, ScoringSetup, WorkUnit
from tests.workflows import test_search_run as coordinator_tests


@pytest.mark.slow
def test_several_processes_give_the_rows_of_one() -> None:
    records = load_shipped("flexibert").records[:5]
    archs = tuple(ArchRef(i + 1, r.key, r.config) for i, r in enumerate(records))
    setup = ScoringSetup.resolve("flexibert", batch_size=2, seq_len=16)
    exprs = (LPZERO_FLEXIBERT, "sum(mean(abs(grad)), l1_norm(act))")
    units = [
        WorkUnit(setup, 0, archs[:3], exprs, ("params",)),
        WorkUnit(setup, 0, archs[3:], exprs, ()),
    ]
    one = LocalExecutor(cache_bytes=2**30, processes=1, torch_threads=1)
    two = LocalExecutor(cache_bytes=2**30, processes=2, torch_threads=1)
    try:
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            expected = [
                (u, [(r.arch_id, r.proxy, r.score, r.status) for r in rows])
                for u, rows in one.run(units)
            ]
        finally:
            torch.set_num_threads(threads)
        got = [
            (u, [(r.arch_id, r.proxy, r.score, r.status) for r in rows])
            for u, rows in two.run(units)
        ]
        again = [
            (u, [(r.arch_id, r.proxy, r.score, r.status) for r in rows])
            for u, rows in two.run(units)
        ]  # warm caches in the children
    finally:
        two.close()
    assert got == expected == again
    assert all(status == "ok" for _, rows in got for *_, status in rows)


def _tiny(expressions: tuple[str, ...], n: int = 1) -> WorkUnit:
    records = load_shipped("flexibert").records[:n]
    archs = tuple(ArchRef(i + 1, r.key, r.config) for i, r in enumerate(records))
    setup = ScoringSetup.resolve("flexibert", batch_size=2, seq_len=16)
    return WorkUnit(setup, 0, archs, expressions, ())


def test_scores_with_the_scoring_threads_and_restores_the_callers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch

    from lpzero_queue.execution import local

    seen: list[int] = []

    def fake(unit: WorkUnit, cache: object, device: str = "cpu") -> list[ScoreRow]:
        seen.append(torch.get_num_threads())
        return []

    monkeypatch.setattr(local, "score_as_result", fake)
    before = torch.get_num_threads()
    ex = LocalExecutor(cache_bytes=2**20, torch_threads=0)  # 0 means one thread, as on workers
    assert ex.name == "in-process:threads=1"  # stored with each evaluation
    list(ex.run([_tiny(("mean(act)",))]))
    assert seen == [1]
    assert torch.get_num_threads() == before
    two = LocalExecutor(cache_bytes=2**20, torch_threads=2)
    list(two.run([_tiny(("mean(act)",))]))
    assert seen == [1, 2] and two.name == "in-process:threads=2"


def test_a_deterministic_error_is_rows_an_infrastructure_error_stops(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ex = LocalExecutor(cache_bytes=2**20)
    ((_, rows),) = list(ex.run([_tiny(("not an expression",))]))
    assert [(r.status, r.score) for r in rows] == [("error", None)]
    assert (rows[0].error or "").startswith("ExpressionSyntaxError")

    def out_of_memory(*args: object, **kw: object) -> list[ScoreRow]:
        raise MemoryError("cannot allocate 12 GiB")

    monkeypatch.setattr("lpzero_queue.proxies.scoring.score_unit", out_of_memory)
    with pytest.raises(UnitFailedError) as info:
        list(ex.run([_tiny(("mean(act)",))]))
    assert str(info.value).startswith(
        "unit (1 flexibert architectures x 1 proxies, seed 0) failed: "
        "MemoryError: cannot allocate 12 GiB; nothing was stored for it"
    )


@pytest.mark.slow
def test_a_dead_scoring_process_stops_the_run_and_a_rerun_restarts_it() -> None:
    import os
    import signal

    ex = LocalExecutor(cache_bytes=2**28, processes=2)
    unit = _tiny(("mean(act)",), n=2)
    try:
        ((_, first),) = list(ex.run([unit]))
        os.kill(ex._children[1][0].pid, signal.SIGKILL)
        ex._children[1][0].join(timeout=10)
        with pytest.raises(UnitFailedError, match=r"exited \(exit code -9\)"):
            list(ex.run([unit]))
        ((_, again),) = list(ex.run([unit]))  # fresh children
    finally:
        ex.close()
    assert [(r.arch_id, r.score) for r in again] == [(r.arch_id, r.score) for r in first]


@pytest.fixture
def sessions(migrated_engine: Engine) -> sessionmaker[Session]:
    return coordinator_tests._sessions(migrated_engine)


reference = coordinator_tests.reference  # an uninterrupted run of the same search


@pytest.mark.slow
def test_a_search_stopped_by_a_failed_unit_resumes_like_an_uninterrupted_run(
    sessions: sessionmaker[Session],
    reference: tuple[list[tuple], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from lpzero_queue.proxies import scoring
    from lpzero_queue.storage import Evaluation, SearchRun, transaction
    from lpzero_queue.workflows.search_run import create_run, execute_run

    TINY, _individuals = coordinator_tests.TINY, coordinator_tests._individuals

    real = scoring.score_unit
    calls = {"n": 0}

    def dies_on_the_third_unit(*args: Any, **kw: Any) -> list[ScoreRow]:
        calls["n"] += 1
        if calls["n"] == 3:
            raise MemoryError("simulated: the scoring process ran out of memory")
        return real(*args, **kw)

    monkeypatch.setattr(scoring, "score_unit", dies_on_the_third_unit)
    run_id = create_run(sessions, "gpt2-wt103", TINY)
    with pytest.raises(UnitFailedError, match="MemoryError: simulated"):
        execute_run(sessions, run_id, LocalExecutor(cache_bytes=2**30))
    with transaction(sessions) as s:
        run = s.get(SearchRun, run_id)
        assert run is not None and run.status == "failed"
        assert (run.error or "").startswith("UnitFailedError: unit (")
        # Nothing of the failed unit became a stored result.
        assert not s.scalars(select(Evaluation).where(Evaluation.error.like("%simulated%"))).all()
        workers = set(s.scalars(select(Evaluation.worker)))
    assert workers == {"in-process:threads=1"}
    monkeypatch.setattr(scoring, "score_unit", real)
    resumed = execute_run(sessions, run_id, LocalExecutor(cache_bytes=2**30))
    rows, best = reference
    assert resumed.status == "completed" and resumed.best == best
    assert _individuals(sessions, run_id) == rows


def test_scoring_gives_free_heap_pages_back_after_each_unit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from lpzero_queue.execution import base
    from lpzero_queue.proxies.cache import InputCache

    assert base.release_free_heap() is True  # glibc (Linux, the workers' images)
    calls: list[int] = []
    monkeypatch.setattr(base, "release_free_heap", lambda: calls.append(1) or True)
    rows = base.score_as_result(_tiny(("sum(mean(act), l1_norm(head))",)), InputCache(2**26))
    assert [r.status for r in rows] == ["ok"] and calls == [1]
