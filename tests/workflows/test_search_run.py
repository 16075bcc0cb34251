"""The search coordinator: deterministic runs, individuals written as scored, exact resume."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from lpzero_queue.execution.local import LocalExecutor
from lpzero_queue.search.config import SearchConfig
from lpzero_queue.storage import Individual, Proxy, SearchRun, make_engine, transaction, upgrade
from lpzero_queue.workflows.catalog import load_shipped_benchmark
from lpzero_queue.workflows.search_run import create_run, execute_run, run_summary

pytestmark = pytest.mark.slow

TINY = SearchConfig(
    population=6,
    children=8,
    per_generation=4,
    sample=8,
    probe_size=3,
    batch_size=2,
    seq_len=16,
    probe_min_population=4,
    validation=0,
)


def _sessions(engine: Engine) -> sessionmaker[Session]:
    factory = sessionmaker(engine, expire_on_commit=False)
    load_shipped_benchmark(factory, "gpt2-wt103")
    return factory


def _executor() -> LocalExecutor:
    return LocalExecutor(cache_bytes=2**30)


def _individuals(sessions: sessionmaker[Session], run_id: int) -> list[tuple]:
    with transaction(sessions) as s:
        rows = s.execute(
            select(
                Individual.generation,
                Individual.slot,
                Individual.genotype,
                Proxy.expression,
                Individual.parents,
                Individual.seed,
                Individual.fitness,
                Individual.status,
                Individual.pruning_rule,
            )
            .join(Proxy, Proxy.id == Individual.proxy_id)
            .where(Individual.run_id == run_id)
            .order_by(Individual.generation, Individual.slot)
        ).all()
    return [tuple(r) for r in rows]


@pytest.fixture
def sessions(migrated_engine: Engine) -> sessionmaker[Session]:
    return _sessions(migrated_engine)


@pytest.fixture
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[tuple], str]:
    """An uninterrupted run on a separate SQLite database, computed from scratch."""
    path = tmp_path_factory.mktemp("reference") / "ref.sqlite3"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    factory = _sessions(engine)
    run_id = create_run(factory, "gpt2-wt103", TINY)
    result = execute_run(factory, run_id, _executor())
    assert result.status == "completed" and result.best is not None
    rows = _individuals(factory, run_id)
    engine.dispose()
    return rows, result.best


def test_a_run_is_a_pure_function_of_config_and_seed(
    sessions: sessionmaker[Session], reference: tuple[list[tuple], str]
) -> None:
    rows, best = reference
    run_id = create_run(sessions, "gpt2-wt103", TINY)
    result = execute_run(sessions, run_id, _executor())
    assert _individuals(sessions, run_id) == rows
    assert result.best == best
    summary = run_summary(sessions, run_id)
    assert summary.status == "completed" and summary.best == best
    assert summary.candidates == len(rows)
    assert set(summary.devices) == {"cpu"}  # where the evaluations were computed
    # Every candidate is recorded; rejected ones name the rule that fired.
    assert all((status == "ok") == (rule is None) for *_, status, rule in rows)
    assert {g for g, *_ in rows} == set(range(TINY.generations + 1))
    # A different seed gives a different run.
    other = create_run(
        sessions, "gpt2-wt103", SearchConfig.from_dict({**TINY.to_dict(), "seed": 1})
    )
    execute_run(sessions, other, _executor())
    assert _individuals(sessions, other) != rows


def test_resume_after_a_kill_ends_like_an_uninterrupted_run(
    sessions: sessionmaker[Session], reference: tuple[list[tuple], str]
) -> None:
    rows, best = reference
    run_id = create_run(sessions, "gpt2-wt103", TINY)
    partial = execute_run(sessions, run_id, _executor(), stop_after_generation=1)
    assert partial.status == "running"
    stored = _individuals(sessions, run_id)
    assert stored == rows[: len(stored)] and {g for g, *_ in stored} == {0, 1}
    # Simulate a coordinator killed in the middle of generation 1: its last individuals are lost.
    with transaction(sessions) as s:
        last = s.scalars(
            select(Individual.id)
            .where(Individual.run_id == run_id, Individual.generation == 1)
            .order_by(Individual.slot.desc())
            .limit(2)
        ).all()
        s.execute(delete(Individual).where(Individual.id.in_(last)))
    with transaction(sessions) as s:
        assert s.scalar(select(SearchRun.status).where(SearchRun.id == run_id)) == "running"
    # Killed again while the held-out split is scored: the run is not completed.
    statuses: list[str] = []

    def killed_in_held_out(text: str) -> None:
        statuses.append(run_summary(sessions, run_id).status)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        execute_run(sessions, run_id, _executor(), held_out=killed_in_held_out)
    assert statuses == ["running"] and run_summary(sessions, run_id).status == "failed"
    resumed = execute_run(sessions, run_id, _executor(), held_out=statuses.append)
    assert resumed.status == "completed" and resumed.best == best and statuses[-1] == best
    assert run_summary(sessions, run_id).status == "completed"
    assert _individuals(sessions, run_id) == rows


def test_a_cancelled_run_stops_and_cannot_resume(sessions: sessionmaker[Session]) -> None:
    from sqlalchemy import update

    from lpzero_queue.errors import LpzqError

    run_id = create_run(sessions, "gpt2-wt103", TINY)
    execute_run(sessions, run_id, _executor(), stop_after_generation=0)
    with transaction(sessions) as s:
        s.execute(update(SearchRun).where(SearchRun.id == run_id).values(status="cancelled"))
        n = s.scalar(
            select(func.count()).select_from(Individual).where(Individual.run_id == run_id)
        )
    with pytest.raises(LpzqError, match="cancelled"):
        execute_run(sessions, run_id, _executor())
    with transaction(sessions) as s:
        assert (
            s.scalar(
                select(func.count()).select_from(Individual).where(Individual.run_id == run_id)
            )
            == n
        )


def test_unknown_run_names_the_existing_ones(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    from lpzero_queue.errors import NotFoundError

    with pytest.raises(NotFoundError, match="no search run 42"):
        execute_run(sessions, 42, _executor())


def test_a_run_with_the_wider_space_records_and_uses_it(sessions: sessionmaker[Session]) -> None:
    from lpzero_queue.proxies.correlation import depth_strata_gpt2
    from lpzero_queue.storage import Evaluation
    from lpzero_queue.workflows.search_run import load_context

    config = SearchConfig.from_dict(
        {
            **TINY.to_dict(),
            "reductions": ["mean", "total"],
            "linear_scope": "all",
            "within_weight": 0.5,
        }
    )
    run_id = create_run(sessions, "gpt2-wt103", config)
    ctx = load_context(sessions, run_id)
    assert ctx.setup.linear_scope == "all" and ctx.config.reductions == ("mean", "total")
    layers = [a.config["n_layer"] for a in ctx.archs]
    assert list(ctx.strata) == depth_strata_gpt2(layers)
    result = execute_run(sessions, run_id, _executor())
    assert result.status == "completed"
    with transaction(sessions) as s:
        scopes = set(s.scalars(select(Evaluation.linear_scope).distinct()))
        stored = s.scalar(select(SearchRun.config).where(SearchRun.id == run_id))
    assert scopes == {"all"}
    assert stored["linear_scope"] == "all" and stored["within_weight"] == 0.5
    genotypes = [row[2] for row in _individuals(sessions, run_id)]
    assert any(g.startswith("total(") for g in genotypes)


def test_a_run_recorded_before_new_settings_keeps_what_it_used(
    sessions: sessionmaker[Session],
) -> None:
    from sqlalchemy import update

    from lpzero_queue.workflows.search_run import load_context

    run_id = create_run(sessions, "gpt2-wt103", TINY)
    old = {k: v for k, v in TINY.to_dict().items() if k not in ("reductions", "linear_scope")}
    with transaction(sessions) as s:  # the config as stored before those settings existed
        s.execute(update(SearchRun).where(SearchRun.id == run_id).values(config=old))
    ctx = load_context(sessions, run_id)
    assert ctx.config.reductions == ("mean",) and ctx.setup.linear_scope == "mixer"
    # A new run resolves today's defaults and stores them.
    ctx_new = load_context(sessions, create_run(sessions, "gpt2-wt103", TINY))
    assert ctx_new.config.reductions == ("mean", "total") and ctx_new.setup.linear_scope == "all"


def test_validation_split_chooses_the_result_among_the_top_members(
    sessions: sessionmaker[Session],
) -> None:
    import dataclasses

    config = dataclasses.replace(TINY, validation=6, select_top=3)
    run_id = create_run(sessions, "gpt2-wt103", config)
    result = execute_run(sessions, run_id, _executor())
    with transaction(sessions) as s:
        run = s.get(SearchRun, run_id)
        assert run is not None and run.selection is not None
        selection, stored = run.selection, dict(run.config)
    assert stored["validation"] == 6 and stored["select_top"] == 3
    candidates = selection["candidates"]
    assert selection["split"] == "sample8-seed0-val6" and selection["validation_archs"] == 6
    assert 1 <= len(candidates) <= 3
    fits = [c["fitness"] for c in candidates]
    assert fits == sorted(fits, reverse=True)  # the top members by fitness, best first
    scored = [c for c in candidates if c["validation"] is not None]
    best = max(scored, key=lambda c: c["validation"])
    assert selection["chosen"] == best["expression"] == result.best
    summary = run_summary(sessions, run_id)
    assert summary.best == result.best and "validation" in (summary.selected_by or "")


def test_default_validation_follows_the_benchmark_size(sessions: sessionmaker[Session]) -> None:
    import dataclasses

    auto = dataclasses.replace(TINY, validation=None)
    run_id = create_run(sessions, "gpt2-wt103", auto)
    with transaction(sessions) as s:
        run = s.get(SearchRun, run_id)
        assert run is not None
        assert run.config["validation"] == min(50, (200 - 8) // 4)
    assert auto.validation_for(10) == 0  # too small: everything left stays in the test split


def test_a_run_is_driven_by_one_coordinator_and_a_usurped_one_writes_nothing(
    sessions: sessionmaker[Session],
) -> None:
    import datetime as dt

    from sqlalchemy import update

    from lpzero_queue.storage import (
        RunLease,
        RunLeaseHeldError,
        RunLeaseLostError,
        RunRepository,
        RunStatus,
    )

    runs = RunRepository(sessions)
    run_id = create_run(sessions, "gpt2-wt103", TINY)
    elsewhere = RunLease(run_id, "elsewhere:1:aa", 60.0)
    runs.acquire_lease(elsewhere)
    with pytest.raises(RunLeaseHeldError, match="elsewhere:1:aa"):
        execute_run(sessions, run_id, _executor())
    assert runs.get(run_id).status == RunStatus.PENDING and not runs.individuals(run_id)
    runs.release_lease(elsewhere)

    def taken_over(text: str) -> None:
        # This coordinator stalled past its lease while the held-out split was scored (say, its
        # machine was suspended), and another coordinator took the run over (as
        # RunRepository.acquire_lease does; one UPDATE, so that this coordinator's heartbeat
        # thread cannot renew in between).
        soon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=60)
        with transaction(sessions) as s:
            s.execute(
                update(SearchRun)
                .where(SearchRun.id == run_id)
                .values(lease_owner="newcomer:2:bb", lease_expires_at=soon)
            )

    with pytest.raises(RunLeaseLostError, match="lost the run's lease to newcomer:2:bb"):
        execute_run(sessions, run_id, _executor(), held_out=taken_over)
    run = runs.get(run_id)
    # Neither completed nor failed: the run is the newcomer's, as it was when taken over.
    assert (run.status, run.error, run.finished_at) == (RunStatus.RUNNING, None, None)
    assert run.lease_owner == "newcomer:2:bb"
