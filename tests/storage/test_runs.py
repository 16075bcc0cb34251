"""The runs repository on SQLite and PostgreSQL: typed records, the run lease and fenced writes."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from lpzero_queue.errors import NotFoundError
from lpzero_queue.storage import (
    Benchmark,
    Individual,
    IndividualRecord,
    IndividualStatus,
    Proxy,
    RunLease,
    RunLeaseHeldError,
    RunLeaseLostError,
    RunRepository,
    RunStatus,
    SearchRun,
    new_lease_owner,
    transaction,
)
from tests.races import race


@pytest.fixture
def sessions(migrated_engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(migrated_engine, expire_on_commit=False)


@pytest.fixture
def runs(sessions: sessionmaker[Session]) -> RunRepository:
    return RunRepository(sessions)


def _run(sessions: sessionmaker[Session], runs: RunRepository, **lease: object) -> tuple[int, int]:
    """A benchmark, one proxy and a new run; (run id, proxy id)."""
    with transaction(sessions) as s:
        bench = s.scalar(select(Benchmark).where(Benchmark.name == "b"))
        if bench is None:
            bench = Benchmark(name="b", space="gpt2", metric="valid_ppl", direction="lower")
            s.add(bench)
            s.flush()
        proxy = s.scalar(select(Proxy))
        if proxy is None:
            proxy = Proxy(
                expression="mean(abs(act))",
                expression_hash="a" * 64,
                kind="expression",
                origin="searched",
                direction="higher",
            )
            s.add(proxy)
            s.flush()
        bench_id, proxy_id = bench.id, proxy.id
    run_id = runs.create(
        benchmark_id=bench_id,
        config={"population": 4},
        seed=3,
        code_version="v",
        library_versions={},
        **lease,  # type: ignore[arg-type]
    )
    return run_id, proxy_id


def _individual(proxy_id: int, slot: int, fitness: float | None = 0.5) -> IndividualRecord:
    return IndividualRecord(
        generation=0,
        slot=slot,
        proxy_id=proxy_id,
        genotype="mean(abs(act))",
        parents=(),
        seed=slot,
        fitness=fitness,
        probe_fitness=None,
        status=IndividualStatus.OK if fitness is not None else IndividualStatus.PRUNED,
        pruning_rule=None if fitness is not None else "duplicate",
        seconds=0.1,
    )


def _lapse(sessions: sessionmaker[Session], run_id: int) -> None:
    """The holder stopped renewing: its lease lapsed a minute ago."""
    past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    with transaction(sessions) as s:
        s.execute(update(SearchRun).where(SearchRun.id == run_id).values(lease_expires_at=past))


def _individuals(sessions: sessionmaker[Session], run_id: int) -> int:
    with transaction(sessions) as s:
        n = s.scalar(
            select(func.count()).select_from(Individual).where(Individual.run_id == run_id)
        )
    return int(n or 0)


def test_a_run_reads_back_as_a_typed_record(
    sessions: sessionmaker[Session], runs: RunRepository
) -> None:
    run_id, proxy_id = _run(sessions, runs)
    run = runs.get(run_id)
    assert (run.id, run.benchmark, run.seed, run.config) == (run_id, "b", 3, {"population": 4})
    assert run.status is RunStatus.PENDING and run.lease_owner is None
    assert not run.stale and run.shown_status == "pending"
    with pytest.raises(NotFoundError, match=rf"no search run 99 \(runs: {run_id}..{run_id}\)"):
        runs.get(99)
    lease = RunLease(run_id, "a", 60.0)
    runs.acquire_lease(lease)
    runs.mark_running(lease)
    runs.add_individuals(lease, [_individual(proxy_id, 1), _individual(proxy_id, 0, None)])
    stored = runs.individuals(run_id)
    assert [(r.slot, r.status, r.fitness, r.pruning_rule) for r in stored] == [
        (0, IndividualStatus.PRUNED, None, "duplicate"),
        (1, IndividualStatus.OK, 0.5, None),
    ]
    runs.record_result(lease, best_proxy_id=proxy_id, best_fitness=0.5, selection={"by": "f"})
    runs.finish(lease, RunStatus.COMPLETED)
    done = runs.get(run_id)
    assert done.status is RunStatus.COMPLETED and done.best_expression == "mean(abs(act))"
    assert done.selection == {"by": "f"} and done.finished_at is not None
    assert (done.lease_owner, done.lease_expires_at) == (None, None)  # finishing releases it
    assert [r.id for r in runs.list_runs()] == [run_id]


def test_the_lease_is_taken_by_compare_and_set(
    sessions: sessionmaker[Session], runs: RunRepository
) -> None:
    run_id, _ = _run(sessions, runs)
    first, second = RunLease(run_id, "host-a:1:aa", 60.0), RunLease(run_id, "host-b:2:bb", 60.0)
    runs.acquire_lease(first)
    runs.acquire_lease(first)  # the holder may take it again (start, then drive)
    with pytest.raises(RunLeaseHeldError) as refused:
        runs.acquire_lease(second)
    message = str(refused.value)
    assert "search run" in message and "host-a:1:aa" in message and "lapses at" in message
    assert "\n" not in message
    assert runs.get(run_id).lease_owner == "host-a:1:aa"
    # Released (the coordinator returned): free for the next one.
    assert runs.release_lease(first)
    runs.acquire_lease(second)
    assert runs.get(run_id).lease_owner == "host-b:2:bb"
    with pytest.raises(NotFoundError):
        runs.acquire_lease(RunLease(99, "c", 60.0))


def test_a_run_created_held_is_its_creators(
    sessions: sessionmaker[Session], runs: RunRepository
) -> None:
    owner = new_lease_owner()
    assert owner.count(":") == 2 and owner != new_lease_owner()
    run_id, _ = _run(sessions, runs, lease=(owner, 60.0))
    run = runs.get(run_id)
    assert run.lease_owner == owner and run.lease_live and run.heartbeat_at is not None
    with pytest.raises(RunLeaseHeldError, match=owner):
        runs.acquire_lease(RunLease(run_id, "other", 60.0))
    runs.acquire_lease(RunLease(run_id, owner, 60.0))


def test_a_running_run_whose_lease_lapsed_is_stale_and_taken_over(
    sessions: sessionmaker[Session], runs: RunRepository
) -> None:
    run_id, proxy_id = _run(sessions, runs)
    old, new = RunLease(run_id, "old", 60.0), RunLease(run_id, "new", 60.0)
    runs.acquire_lease(old)
    runs.mark_running(old)
    runs.add_individuals(old, [_individual(proxy_id, 0)])
    assert runs.get(run_id).shown_status == "running"
    _lapse(sessions, run_id)
    lapsed = runs.get(run_id)
    assert lapsed.status is RunStatus.RUNNING and lapsed.stale
    assert lapsed.shown_status == "stale" and runs.list_runs()[0].shown_status == "stale"
    runs.acquire_lease(new)  # the takeover
    assert runs.get(run_id).shown_status == "running"
    # The old coordinator wakes up: every write of run state is refused, nothing is written.
    assert not runs.renew_lease(old)
    with pytest.raises(RunLeaseLostError, match="lost the run's lease to new"):
        runs.add_individuals(old, [_individual(proxy_id, 1)])
    with pytest.raises(RunLeaseLostError):
        runs.record_result(old, best_proxy_id=proxy_id, best_fitness=0.9, selection={})
    with pytest.raises(RunLeaseLostError):
        runs.mark_running(old)
    with pytest.raises(RunLeaseLostError):
        runs.finish(old, RunStatus.FAILED, "late")
    assert not runs.release_lease(old)
    run = runs.get(run_id)
    assert (run.status, run.error, run.best_fitness) == (RunStatus.RUNNING, None, None)
    assert run.lease_owner == "new" and _individuals(sessions, run_id) == 1
    # The new holder writes.
    runs.add_individuals(new, [_individual(proxy_id, 1)])
    assert _individuals(sessions, run_id) == 2


def test_a_running_run_without_a_lease_is_stale(
    sessions: sessionmaker[Session], runs: RunRepository
) -> None:
    run_id, _ = _run(sessions, runs)
    lease = RunLease(run_id, "a", 60.0)
    runs.acquire_lease(lease)
    runs.mark_running(lease)
    runs.release_lease(lease)  # a coordinator stopped between generations (or a pre-0006 run)
    assert runs.get(run_id).shown_status == "stale"
    runs.cancel(run_id)
    assert runs.get(run_id).shown_status == "cancelled"


@pytest.mark.integration
def test_two_coordinators_taking_a_stale_run_at_once_one_wins(
    pg_available: bool, tmp_path: object
) -> None:
    """A takes the stale run and keeps its transaction open; B's CAS waits on A's row lock and,
    once A commits, finds A's fresh lease: refused."""
    from lpzero_queue.storage import make_engine, upgrade
    from tests.conftest import drop_postgres_database, new_postgres_database

    url = new_postgres_database()
    engine = make_engine(url)
    try:
        upgrade(engine)
        sessions = sessionmaker(engine, expire_on_commit=False)
        runs = RunRepository(sessions)
        run_id, _ = _run(sessions, runs)
        runs.acquire_lease(RunLease(run_id, "dead", 60.0))
        _lapse(sessions, run_id)

        def take_as_a(s: Session) -> int:
            soon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=60)
            free = SearchRun.lease_expires_at < func.now()
            taken = s.execute(
                update(SearchRun)
                .where(SearchRun.id == run_id, free)
                .values(lease_owner="a", lease_expires_at=soon)
            )
            return int(taken.rowcount)  # type: ignore[attr-defined]

        def take_as_b() -> str:
            try:
                runs.acquire_lease(RunLease(run_id, "b", 60.0))
            except RunLeaseHeldError as exc:
                return str(exc)
            return "taken"

        a, b = race(engine, take_as_a, take_as_b)
        assert a == 1 and "(a)" in b
        assert runs.get(run_id).lease_owner == "a"
    finally:
        engine.dispose()
        drop_postgres_database(url)
