"""Storage contract: the same constraints hold on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from lpzero_queue.storage import (
    Architecture,
    Benchmark,
    Evaluation,
    Individual,
    InputBatch,
    Proxy,
    SearchRun,
    transaction,
)


def _bench(name: str = "b") -> Benchmark:
    return Benchmark(name=name, space="flexibert", metric="glue", direction="higher", provenance={})


def _arch(bench: Benchmark, key: str = "0") -> Architecture:
    return Architecture(
        benchmark_id=bench.id,
        key=key,
        position=0,
        config={"hidden_size": 128, "encoder_layers": [{"operation_type": "SA"}]},
        config_hash="h" * 64,
        n_layers=1,
        hidden_size=128,
        params_total=10,
        params_nonembedding=5,
    )


def _evaluation(proxy_id: int, arch_id: int, batch_id: int, **fields: object) -> Evaluation:
    """An evaluation row of the seeded parents; ``fields`` override the defaults."""
    values: dict[str, object] = {"seed": 0, "builder": "faithful", "objective": "ones", **fields}
    return Evaluation(proxy_id=proxy_id, architecture_id=arch_id, batch_id=batch_id, **values)


@pytest.fixture
def sessions(migrated_engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(migrated_engine, expire_on_commit=False)


def _seed_eval_parents(sessions: sessionmaker[Session]) -> tuple[int, int, int]:
    with transaction(sessions) as s:
        bench = _bench()
        s.add(bench)
        s.flush()
        arch = _arch(bench)
        proxy = Proxy(
            expression="sum(abs(act), abs(head))",
            expression_hash="a" * 64,
            kind="expression",
            origin="user",
            direction="higher",
        )
        batch = InputBatch(
            benchmark_id=bench.id,
            seed=0,
            batch_size=2,
            seq_len=8,
            tokenizer="t",
            content_hash="c" * 64,
        )
        s.add_all([arch, proxy, batch])
        s.flush()
        return proxy.id, arch.id, batch.id


def test_benchmark_name_is_unique(sessions: sessionmaker[Session]) -> None:
    with transaction(sessions) as s:
        s.add(_bench("dup"))
    with pytest.raises(IntegrityError), transaction(sessions) as s:
        s.add(_bench("dup"))


def test_direction_is_checked(sessions: sessionmaker[Session]) -> None:
    with pytest.raises(IntegrityError), transaction(sessions) as s:
        s.add(Benchmark(name="x", space="gpt2", metric="m", direction="sideways", provenance={}))


def test_foreign_keys_are_enforced(sessions: sessionmaker[Session]) -> None:
    with pytest.raises(IntegrityError), transaction(sessions) as s:
        s.add(
            Architecture(
                benchmark_id=999,
                key="k",
                position=0,
                config={},
                config_hash="x",
                n_layers=1,
                hidden_size=1,
                params_total=1,
                params_nonembedding=1,
            )
        )


def test_deleting_a_benchmark_cascades(sessions: sessionmaker[Session]) -> None:
    _seed_eval_parents(sessions)
    with transaction(sessions) as s:
        s.delete(s.scalars(select(Benchmark)).one())
    with transaction(sessions) as s:
        assert s.scalar(select(func.count()).select_from(Architecture)) == 0
        assert s.scalar(select(func.count()).select_from(InputBatch)) == 0


def test_evaluation_unit_of_work_is_unique(sessions: sessionmaker[Session]) -> None:
    p, a, b = _seed_eval_parents(sessions)
    with transaction(sessions) as s:
        s.add(_evaluation(p, a, b, seed=0, builder="faithful"))
    with pytest.raises(IntegrityError), transaction(sessions) as s:
        s.add(_evaluation(p, a, b, seed=0, builder="faithful"))
    with transaction(sessions) as s:  # another seed is another unit
        s.add(_evaluation(p, a, b, seed=1, builder="faithful"))
    with transaction(sessions) as s:  # so is another linear scope (default: mixer)
        s.add(_evaluation(p, a, b, seed=0, builder="faithful", linear_scope="all"))
    with pytest.raises(IntegrityError), transaction(sessions) as s:
        s.add(_evaluation(p, a, b, seed=0, builder="faithful", linear_scope="every"))


def test_score_is_null_unless_ok(sessions: sessionmaker[Session]) -> None:
    p, a, b = _seed_eval_parents(sessions)
    with pytest.raises(IntegrityError), transaction(sessions) as s:
        s.add(_evaluation(p, a, b, seed=0, builder="f", status="nonfinite", score=-1.0))
    with pytest.raises(IntegrityError), transaction(sessions) as s:
        s.add(_evaluation(p, a, b, seed=0, builder="f", status="finished"))


@pytest.mark.parametrize("value", [0.1 + 0.2, 1e-300, -1.2345678901234567e300, 2.0**-1074])
def test_scores_are_float64(sessions: sessionmaker[Session], value: float) -> None:
    p, a, b = _seed_eval_parents(sessions)
    with transaction(sessions) as s:
        s.add(_evaluation(p, a, b, seed=0, builder="f", status="ok", score=value))
    with transaction(sessions) as s:
        assert s.scalars(select(Evaluation.score)).one() == value


def test_json_round_trips(sessions: sessionmaker[Session]) -> None:
    config = {"population": 80, "nested": {"list": [1, 2.5, None, "x"], "flag": True}}
    with transaction(sessions) as s:
        bench = _bench()
        s.add(bench)
        s.flush()
        s.add(SearchRun(benchmark_id=bench.id, config=config, seed=7, code_version="v"))
    with transaction(sessions) as s:
        assert s.scalars(select(SearchRun.config)).one() == config


def test_individual_slots_are_unique_and_fitness_needs_ok(sessions: sessionmaker[Session]) -> None:
    p, _, _ = _seed_eval_parents(sessions)
    with transaction(sessions) as s:
        bench_id = s.scalars(select(Benchmark.id)).one()
        run = SearchRun(benchmark_id=bench_id, config={}, seed=0, code_version="v")
        s.add(run)
        s.flush()
        run_id = run.id
        s.add(
            Individual(
                run_id=run_id,
                generation=0,
                slot=0,
                proxy_id=p,
                genotype="g",
                seed=1,
                status="pruned",
                pruning_rule="scalar_then_normalizer",
            )
        )
    with pytest.raises(IntegrityError), transaction(sessions) as s:
        s.add(
            Individual(
                run_id=run_id,
                generation=0,
                slot=0,
                proxy_id=p,
                genotype="g",
                seed=1,
                status="ok",
                fitness=0.5,
            )
        )
    with pytest.raises(IntegrityError), transaction(sessions) as s:
        s.add(
            Individual(
                run_id=run_id,
                generation=0,
                slot=1,
                proxy_id=p,
                genotype="g",
                seed=1,
                status="pruned",
                fitness=0.5,
            )
        )


def test_a_failed_transaction_writes_nothing(sessions: sessionmaker[Session]) -> None:
    with pytest.raises(IntegrityError), transaction(sessions) as s:
        s.add(_bench("first"))
        s.flush()
        s.add(_bench("first"))
        s.flush()
    with transaction(sessions) as s:
        assert s.scalar(select(func.count()).select_from(Benchmark)) == 0
