"""BenchmarkRepository: the same answers on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from lpzero_queue.storage import (
    BenchmarkListing,
    BenchmarkRepository,
    NewArchitecture,
    NewBenchmark,
    StoredKey,
    transaction,
)


@pytest.fixture
def sessions(migrated_engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(migrated_engine, expire_on_commit=False)


def _arch(key: str, position: int, layers: int, truth: dict[str, float]) -> NewArchitecture:
    return NewArchitecture(
        key=key,
        position=position,
        config={"key": key},
        config_hash=key * 64,
        n_layers=layers,
        hidden_size=64 * layers,
        params_total=100 * position,
        params_nonembedding=10 * position,
        summary={"builders": {}},
        ground_truth=truth,
    )


def _store_two(sessions: sessionmaker[Session]) -> int:
    """Benchmark ``b`` (gpt2) with three architectures stored out of position order."""
    with transaction(sessions) as s:
        repo = BenchmarkRepository(s)
        assert repo.create_if_absent(NewBenchmark("b", "gpt2", "ppl", "lower", "d", {"x": 1}))
        assert repo.create_if_absent(NewBenchmark("a", "flexibert", "glue", "higher"))
        bench_id = repo.id_of("b")
        assert bench_id is not None
        repo.add_architectures(
            bench_id,
            [
                _arch("c", 2, 2, {"ppl": 30.0, "test_ppl": 31.0}),
                _arch("a", 0, 1, {"test_ppl": 41.0, "ppl": 40.0}),
                _arch("b", 1, 2, {"ppl": 20.0}),
            ],
        )
    return bench_id


def test_a_second_create_of_one_name_inserts_nothing(sessions: sessionmaker[Session]) -> None:
    _store_two(sessions)
    with transaction(sessions) as s:
        repo = BenchmarkRepository(s)
        assert not repo.create_if_absent(NewBenchmark("b", "flexibert", "glue", "higher"))
        bench = repo.find("b")
        assert bench is not None
        assert (bench.space, bench.metric, bench.direction) == ("gpt2", "ppl", "lower")
        assert bench.provenance == {"x": 1}


def test_lookups_and_listing(sessions: sessionmaker[Session]) -> None:
    bench_id = _store_two(sessions)
    with transaction(sessions) as s:
        repo = BenchmarkRepository(s)
        assert repo.find("nope") is None and repo.id_of("nope") is None
        assert repo.space_of("nope") is None and repo.space_of("a") == "flexibert"
        assert repo.names() == ["a", "b"] and repo.names("gpt2") == ["b"]
        assert repo.listing() == [
            BenchmarkListing("a", "flexibert", "glue", "higher", 0),
            BenchmarkListing("b", "gpt2", "ppl", "lower", 3),
        ]
        assert repo.stored_keys(bench_id) == [
            StoredKey("a", "a" * 64),
            StoredKey("b", "b" * 64),
            StoredKey("c", "c" * 64),
        ]


def test_architectures_and_ground_truth(sessions: sessionmaker[Session]) -> None:
    bench_id = _store_two(sessions)
    with transaction(sessions) as s:
        repo = BenchmarkRepository(s)
        archs = repo.architectures(bench_id)
        assert [a.key for a in archs] == ["c", "a", "b"]  # in insertion (id) order
        assert [(a.position, a.n_layers, a.hidden_size) for a in archs] == [
            (2, 2, 128),
            (0, 1, 64),
            (1, 2, 128),
        ]
        assert archs[0].config == {"key": "c"} and archs[0].params_total == 200
        ids = repo.architecture_ids_by_key(bench_id)
        assert ids == {a.key: a.id for a in archs}
        assert repo.ground_truth([ids["a"], ids["b"]], "ppl") == {ids["a"]: 40.0, ids["b"]: 20.0}
        assert repo.ground_truth([ids["b"]], "test_ppl") == {}
        assert sorted(repo.truth_values(bench_id, "test_ppl")) == [31.0, 41.0]
        assert repo.metrics(bench_id) == ["ppl", "test_ppl"]  # the order first stored
        assert sorted(c["key"] for c in repo.configs(bench_id)) == ["a", "b", "c"]
