"""ReportRepository: correlations written and the run history read back, on both backends."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from lpzero_queue.storage import (
    BenchmarkRepository,
    Correlation,
    IndividualOutcome,
    NewCorrelation,
    ReportRepository,
    RunBest,
    RunIdSpan,
    SeedScore,
    transaction,
)
from tests.workflows.test_search_report import BEST, SPLIT, add_fake_runs


@pytest.fixture
def sessions(migrated_engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(migrated_engine, expire_on_commit=False)


def _correlation(proxy_id: int, benchmark_id: int, split: str, n: int) -> NewCorrelation:
    return NewCorrelation(
        proxy_id=proxy_id,
        benchmark_id=benchmark_id,
        split=split,
        metric="glue",
        builder="faithful",
        objective="ones",
        linear_scope="all",
        seeds=[0, 1],
        batch_hashes=["a" * 64, "b" * 64],
        n=n,
        spearman=0.5,
        kendall=None,
        kendall_tiefair=0.25,
        within_kendall=None,
        within_tiefair=None,
        within_fine_tiefair=0.125,
        top10_overlap=1.0,
        details={"run_id": 7},
    )


def test_no_runs(sessions: sessionmaker[Session]) -> None:
    with transaction(sessions) as s:
        reports = ReportRepository(s)
        assert reports.run_ids() == RunIdSpan(None, None, 0)
        assert reports.run(1) is None and reports.run_best(1) is None


def test_runs_and_their_individuals(sessions: sessionmaker[Session]) -> None:
    rps_run, ablation = add_fake_runs(sessions)
    with transaction(sessions) as s:
        reports = ReportRepository(s)
        assert reports.run_ids() == RunIdSpan(rps_run, ablation, 2)
        assert reports.run_best(rps_run) == RunBest("completed", BEST)
        run = reports.run(rps_run)
        assert run is not None and reports.run_benchmark(run).name == "fakebert"
        assert [r.id for r in reports.runs_like(run)] == [ablation]
        outcomes = reports.individual_outcomes(rps_run)
        assert len(outcomes) == 12
        assert outcomes[3] == IndividualOutcome(0, "pruned", None, "constant_probe", 0.5)
        assert [o.generation for o in outcomes] == sorted(o.generation for o in outcomes)
        # By name or by expression; labelled by name, or by expression when it has none.
        labels = reports.proxy_labels(["params", "published(expr)", "mean(abs(act))", "nope"])
        assert sorted(labels.values()) == ["lpzero-flexibert", "mean(abs(act))", "params"]
        for proxy_id, label in labels.items():
            proxy = reports.proxy(proxy_id)
            assert proxy is not None and label == (proxy.name or proxy.expression)


def test_a_run_without_a_best_proxy(sessions: sessionmaker[Session]) -> None:
    rps_run, _ = add_fake_runs(sessions)
    with transaction(sessions) as s:
        run = ReportRepository(s).run(rps_run)
        assert run is not None
        run.best_proxy_id = None
        run.status = "running"
    with transaction(sessions) as s:
        assert ReportRepository(s).run_best(rps_run) == RunBest("running", None)


def test_correlations_round_trip_newest_first(sessions: sessionmaker[Session]) -> None:
    rps_run, _ = add_fake_runs(sessions)
    with transaction(sessions) as s:
        reports = ReportRepository(s)
        run = reports.run(rps_run)
        assert run is not None and run.best_proxy_id is not None
        bench_id, best = run.benchmark_id, run.best_proxy_id
        before = reports.test_split_correlations(bench_id, [best])
        assert [c.split for c in before] == [SPLIT]
        reports.add_correlations(
            [
                _correlation(best, bench_id, "test:first5", 5),
                _correlation(best, bench_id, "all", 30),
            ]
        )
    with transaction(sessions) as s:
        rows = ReportRepository(s).test_split_correlations(bench_id, [best])
        newest: Correlation = rows[0]
        assert [c.split for c in rows] == ["test:first5", SPLIT]  # "all" is no test split
        assert (newest.n, newest.linear_scope, newest.seeds) == (5, "all", [0, 1])
        assert newest.batch_hashes == ["a" * 64, "b" * 64]
        assert (newest.kendall, newest.kendall_tiefair, newest.within_fine_tiefair) == (
            None,
            0.25,
            0.125,
        )
        assert newest.details == {"run_id": 7}
        assert isinstance(newest.computed_at, dt.datetime)


def test_scores_behind_a_correlation(sessions: sessionmaker[Session]) -> None:
    rps_run, _ = add_fake_runs(sessions)
    with transaction(sessions) as s:
        reports = ReportRepository(s)
        run = reports.run(rps_run)
        assert run is not None
        (c,) = reports.test_split_correlations(run.benchmark_id, [run.best_proxy_id or 0])
        all_ids = list(BenchmarkRepository(s).architecture_ids_by_key(run.benchmark_id).values())
        scores = reports.correlation_scores(c, all_ids)
        assert len(scores) == 30 and all(isinstance(e, SeedScore) for e in scores)
        assert {(e.seed, e.batch_hash) for e in scores} == {(0, "ab" * 32)}
        assert reports.correlation_scores(c, []) == []
        assert {e.architecture_id for e in reports.correlation_scores(c, all_ids[:3])} == set(
            all_ids[:3]
        )
        s.expunge(c)
        c.builder = "lpzero"  # another builder's evaluations are not behind it
        assert reports.correlation_scores(c, all_ids) == []
