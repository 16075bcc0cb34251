"""Benchmarks in the database: idempotent loads, all-or-nothing imports, overviews."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from lpzero_queue.benchmarks import BenchmarkSpec, load_shipped, parse_import_file
from lpzero_queue.errors import LpzqError, NotFoundError
from lpzero_queue.storage import Architecture, Benchmark, GroundTruth, transaction
from lpzero_queue.workflows import (
    benchmark_overview,
    ensure_benchmark,
    get_benchmark,
    load_shipped_benchmark,
    store_benchmark,
)
from tests.execution._celery_support import migrated_postgres
from tests.races import in_session, race


@pytest.fixture
def sessions(migrated_engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(migrated_engine, expire_on_commit=False)


def _counts(sessions: sessionmaker[Session]) -> tuple[int, int, int]:
    with transaction(sessions) as s:
        return (
            s.scalar(select(func.count()).select_from(Benchmark)) or 0,
            s.scalar(select(func.count()).select_from(Architecture)) or 0,
            s.scalar(select(func.count()).select_from(GroundTruth)) or 0,
        )


@pytest.mark.slow
def test_loading_shipped_benchmarks_is_idempotent(sessions: sessionmaker[Session]) -> None:
    first = load_shipped_benchmark(sessions, "gpt2-wt103")
    assert first.created and first.architectures == 200
    after_first = _counts(sessions)
    assert after_first == (1, 200, 400)  # valid_ppl and test_ppl per architecture
    again = load_shipped_benchmark(sessions, "gpt2-wt103")
    assert not again.created
    assert _counts(sessions) == after_first

    load_shipped_benchmark(sessions, "flexibert")
    with transaction(sessions) as s:
        bench = get_benchmark(s, "flexibert")
        ov = benchmark_overview(s, bench)
    assert ov.architectures == 500 and ov.metric == "glue"
    assert ov.direction == "higher is better"
    assert ov.layers == {2: 239, 4: 261}
    assert ov.hidden_size == {128: 251, 256: 249}
    assert ov.provenance["license"] == "CC BY 4.0"


def test_stored_structure_matches_the_published_gpt2_parameter_counts(
    sessions: sessionmaker[Session],
) -> None:
    load_shipped_benchmark(sessions, "gpt2-wt103")
    spec = load_shipped("gpt2-wt103")
    published = {r.key: r.extra["params"] for r in spec.records}
    with transaction(sessions) as s:
        rows = s.execute(
            select(
                Architecture.key,
                Architecture.params_total,
                Architecture.params_nonembedding,
                Architecture.n_layers,
                Architecture.config,
            )
        ).all()
    assert len(rows) == 200
    for key, total, nonemb, layers, config in rows:
        assert total == published[key]["total"]
        assert nonemb == published[key]["nonembedding"]
        assert layers == config["n_layer"]


def _write_records(tmp_path: Path, records: list[dict]) -> Path:
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(records))
    return path


def _spec(name: str, records: list) -> BenchmarkSpec:
    return BenchmarkSpec(
        name=name,
        space="flexibert",
        metric="glue",
        higher_is_better=True,
        description="",
        provenance={},
        records=tuple(records),
    )


def test_import_stores_everything_or_nothing(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    shipped = json.loads(
        (
            Path(__file__).parents[2] / "lpzero_queue/benchmarks/data/flexibert/benchmark.json"
        ).read_text()
    )[:5]
    good = parse_import_file(
        _write_records(tmp_path, shipped), space="flexibert", metric="glue", higher_is_better=True
    )
    with transaction(sessions) as s:
        assert store_benchmark(s, _spec("mine", good)).created
    assert _counts(sessions)[1] == 5
    # Same content again: unchanged. Different content under the same name: refused, nothing added.
    with transaction(sessions) as s:
        assert not store_benchmark(s, _spec("mine", good)).created
    with (
        pytest.raises(LpzqError, match="already exists with different content"),
        transaction(sessions) as s,
    ):
        store_benchmark(s, _spec("mine", good[:3]))
    assert _counts(sessions)[1] == 5


def test_unknown_benchmark_names_what_exists(sessions: sessionmaker[Session]) -> None:
    with (
        pytest.raises(NotFoundError, match=r"no benchmark 'nope'.*lpzq bench load"),
        transaction(sessions) as s,
    ):
        get_benchmark(s, "nope")


def test_ensure_benchmark_loads_a_missing_shipped_one_and_says_so(
    sessions: sessionmaker[Session],
) -> None:
    said: list[str] = []
    bench = ensure_benchmark(sessions, "gpt2-wt103", said.append)
    assert bench.name == "gpt2-wt103" and len(said) == 1 and "200 architectures" in said[0]
    ensure_benchmark(sessions, "gpt2-wt103", said.append)
    assert len(said) == 1


@pytest.mark.integration
def test_two_coordinators_loading_one_benchmark_at_once_both_succeed(pg_available: bool) -> None:
    """Two ``lpzq search start`` on a fresh PostgreSQL load the same shipped benchmark at once."""
    records = load_shipped("flexibert").records[:3]
    with migrated_postgres() as (_, engine):
        first, second = race(
            engine,
            lambda s: store_benchmark(s, _spec("mine", records)),
            in_session(engine, lambda s: store_benchmark(s, _spec("mine", records))),
        )
        assert (first.created, second.created) == (True, False)
        assert _counts(sessionmaker(engine))[:2] == (1, 3)
