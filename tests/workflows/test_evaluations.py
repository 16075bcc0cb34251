"""Race-free writes of shared rows: two coordinators inserting the same row at the same moment.

Each race is made deterministic on the real PostgreSQL (``tests/races.py``). Check-then-insert
code fails the second writer with an IntegrityError; insert-or-ignore lets it read the first's row.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from lpzero_queue.proxies.scoring import ArchRef, ScoreRow, ScoringSetup, WorkUnit
from lpzero_queue.proxies.spec import ProxySpec
from lpzero_queue.storage import Architecture, Benchmark, Evaluation, InputBatch, Proxy
from lpzero_queue.workflows.evaluations import ensure_batch, ensure_proxies, store_rows
from tests.execution._celery_support import migrated_postgres
from tests.races import in_session, race

pytestmark = pytest.mark.integration

SPEC = ProxySpec("expression", "sum(mean(grad), l1_norm(act))", "higher")
SETUP = ScoringSetup.resolve("flexibert", batch_size=2, seq_len=16)


@pytest.fixture
def pg(pg_available: bool) -> Iterator[Engine]:
    with migrated_postgres() as (_, engine):
        with sessionmaker(engine).begin() as s:  # one architecture is all these rows need
            bench = Benchmark(name="race", space="flexibert", metric="glue", direction="higher")
            s.add(bench)
            s.flush()
            s.add(
                Architecture(
                    benchmark_id=bench.id, key="a", position=0, config={}, config_hash="0" * 64,
                    n_layers=2, hidden_size=128, params_total=1, params_nonembedding=1,
                )
            )  # fmt: skip
        yield engine


def test_two_coordinators_make_one_input_batch(pg: Engine) -> None:
    def write(s: Session) -> int:
        bench = s.scalars(select(Benchmark)).one()
        return ensure_batch(s, bench, SETUP, seed=7).id

    first, second = race(pg, write, in_session(pg, write))
    assert first == second
    with pg.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(InputBatch)) == 1


def test_two_coordinators_make_one_proxy(pg: Engine) -> None:
    def write(s: Session) -> dict[str, int]:
        return ensure_proxies(s, [SPEC])

    first, second = race(pg, write, in_session(pg, write))
    assert first == second
    with pg.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Proxy)) == 1


def test_two_coordinators_store_the_same_evaluations(pg: Engine) -> None:
    factory = sessionmaker(pg)
    with factory.begin() as s:
        bench = s.scalars(select(Benchmark)).one()
        batch_id = ensure_batch(s, bench, SETUP, seed=0).id
        proxy_id = ensure_proxies(s, [SPEC])[SPEC.text]
        arch = s.scalars(select(Architecture).order_by(Architecture.id)).first()
        assert arch is not None
        ref = ArchRef(arch.id, arch.key, dict(arch.config))
    unit = WorkUnit(SETUP, 0, (ref,), (SPEC.text,), ())
    ids = {SPEC.text: proxy_id}

    def rows(score: float) -> list[ScoreRow]:
        return [ScoreRow(ref.id, SPEC.text, score, "ok", None, 0.1)]

    def hold(s: Session) -> None:  # another coordinator, mid-way through storing the same row
        s.add(
            Evaluation(
                proxy_id=proxy_id, architecture_id=ref.id, batch_id=batch_id, seed=0,
                builder=SETUP.builder, objective=SETUP.objective, linear_scope=SETUP.linear_scope,
                score=1.5, status="ok", worker="first",
            )
        )  # fmt: skip
        s.flush()

    race(pg, hold, lambda: store_rows(factory, unit, rows(2.5), ids, batch_id, "second"))
    with pg.connect() as conn:
        stored = conn.execute(select(Evaluation.score, Evaluation.worker)).all()
    assert stored == [(1.5, "first")]
