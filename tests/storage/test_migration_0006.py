"""Revision 0006 on SQLite and PostgreSQL: run leases added, vestiges dropped, rows kept, and a
downgrade that restores the schema of 0005 exactly."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import IntegrityError

from lpzero_queue.storage import current_revision, downgrade, make_engine, upgrade
from tests.conftest import drop_postgres_database, new_postgres_database

TABLES = ("evaluations", "work_units", "search_runs", "individuals")
COUNTS = {"evaluations": 2, "work_units": 2, "search_runs": 1, "individuals": 3}

ROWS = [
    "INSERT INTO benchmarks (id, name, space, metric, direction, description, provenance)"
    " VALUES (1, 'b', 'gpt2', 'valid_ppl', 'lower', '', '{}')",
    "INSERT INTO architectures (id, benchmark_id, key, position, config, config_hash, n_layers,"
    " hidden_size, params_total, params_nonembedding, summary)"
    " VALUES (1, 1, 'a0', 0, '{}', 'h', 2, 64, 10, 5, '{}')",
    "INSERT INTO proxies (id, expression, expression_hash, kind, origin, direction)"
    " VALUES (1, 'mean(abs(act))', 'e', 'expression', 'searched', 'higher')",
    "INSERT INTO input_batches (id, benchmark_id, seed, batch_size, seq_len, tokenizer,"
    " content_hash) VALUES (1, 1, 0, 2, 8, 'gpt2', 'c')",
    "INSERT INTO evaluations (proxy_id, architecture_id, batch_id, seed, builder, objective,"
    " linear_scope, score, status, worker, device, attempts) VALUES"
    " (1, 1, 1, 0, 'faithful', 'lm', 'mixer', 1.25, 'ok', 'w1', 'cpu', 1),"
    " (1, 1, 1, 1, 'faithful', 'lm', 'mixer', NULL, 'nonfinite', 'w1', 'cpu', 1)",
    "INSERT INTO work_units (unit_key, kind, payload, batch_label, status, attempts,"
    " max_attempts) VALUES ('k1', 'proxy', '{}', 'proxy-1', 'done', 1, 3),"
    " ('k2', 'proxy', '{}', 'proxy-1', 'failed', 3, 3)",
    "INSERT INTO search_runs (id, benchmark_id, config, seed, status, code_version,"
    " library_versions, best_proxy_id, best_fitness, heartbeat_at)"
    " VALUES (1, 1, '{}', 0, 'running', 'v', '{}', 1, 0.75, '2026-11-29 23:00:00')",
    "INSERT INTO individuals (run_id, generation, slot, proxy_id, genotype, parents, seed,"
    " fitness, status) VALUES (1, 0, 0, 1, 'g', '[]', 0, 0.75, 'ok'),"
    " (1, 0, 1, 1, 'g', '[]', 1, NULL, 'pruned'), (1, 1, 0, 1, 'g', '[[0, 0]]', 2, 0.5, 'ok')",
]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def two_engines(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Engine, Engine]]:
    """Two empty databases of one backend: one to migrate, one to compare with."""
    if request.param == "sqlite":
        urls = [f"sqlite:///{tmp_path / 'a.sqlite3'}", f"sqlite:///{tmp_path / 'b.sqlite3'}"]
    else:
        request.getfixturevalue("pg_available")
        urls = [new_postgres_database(), new_postgres_database()]
    engines = [make_engine(u) for u in urls]
    try:
        yield engines[0], engines[1]
    finally:
        for engine, url in zip(engines, urls, strict=True):
            engine.dispose()
            if request.param == "postgresql":
                drop_postgres_database(url)


def _columns(engine: Engine, table: str) -> set[str]:
    return {c["name"] for c in inspect(engine).get_columns(table)}


def _indexes(engine: Engine, table: str) -> set[str]:
    return {str(ix["name"]) for ix in inspect(engine).get_indexes(table)}


def _counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t: conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one() for t in TABLES}


def _kept(engine: Engine) -> list[Any]:
    """Data in columns every revision has: it must come through unchanged."""
    with engine.connect() as conn:
        return [
            conn.execute(
                text("SELECT seed, score, status, worker, device FROM evaluations ORDER BY seed")
            ).all(),
            conn.execute(text("SELECT unit_key, status, attempts FROM work_units")).all(),
            conn.execute(
                text("SELECT id, status, best_fitness, best_proxy_id FROM search_runs")
            ).all(),
            conn.execute(
                text("SELECT generation, slot, fitness, status FROM individuals ORDER BY 1, 2")
            ).all(),
            conn.execute(text("SELECT generation, candidates FROM v_run_progress")).all(),
        ]


def _schema(engine: Engine) -> dict[str, Any]:
    """What a revision defines for the tables 0006 changes (column order aside)."""
    insp = inspect(engine)
    out: dict[str, Any] = {}
    for table in TABLES:
        out[table] = {
            "columns": sorted(
                (c["name"], str(c["type"]), c["nullable"], c.get("default"))
                for c in insp.get_columns(table)
            ),
            "indexes": sorted(
                (ix["name"], tuple(ix["column_names"])) for ix in insp.get_indexes(table)
            ),
            "checks": sorted(
                (ck["name"], re.sub(r"\s+", " ", ck["sqltext"]))
                for ck in insp.get_check_constraints(table)
            ),
            "unique": sorted(str(u["name"]) for u in insp.get_unique_constraints(table)),
            "fks": sorted(str(fk["name"]) for fk in insp.get_foreign_keys(table)),
        }
    out["views"] = sorted(insp.get_view_names())
    return out


def _seed(engine: Engine) -> None:
    with engine.begin() as conn:
        for statement in ROWS:
            conn.execute(text(statement))


def test_0006_drops_the_vestiges_adds_run_leases_and_keeps_every_row(
    two_engines: tuple[Engine, Engine],
) -> None:
    engine, _ = two_engines
    upgrade(engine, "0005")
    _seed(engine)
    before = _kept(engine)
    assert _counts(engine) == COUNTS

    upgrade(engine, "0006")
    assert current_revision(engine) == "0006"
    assert {"attempts", "lease_expires_at"}.isdisjoint(_columns(engine, "evaluations"))
    assert "batch_label" not in _columns(engine, "work_units")
    assert {"lease_owner", "lease_expires_at", "heartbeat_at"} <= _columns(engine, "search_runs")
    assert "ix_evaluations_status_lease_expires_at" not in _indexes(engine, "evaluations")
    assert "ix_work_units_batch_label" not in _indexes(engine, "work_units")
    assert "ix_search_runs_status_heartbeat_at" not in _indexes(engine, "search_runs")
    assert "ix_search_runs_status_lease_expires_at" in _indexes(engine, "search_runs")
    # Every row survived, the run's individuals included (no cascade from a rebuilt parent).
    assert _counts(engine) == COUNTS and _kept(engine) == before
    with engine.connect() as conn:
        lease = conn.execute(text("SELECT lease_owner, lease_expires_at FROM search_runs")).one()
    assert tuple(lease) == (None, None)  # a run of before has no lease: running, so stale
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO work_units (unit_key, kind, payload, status, attempts, max_attempts)"
                " VALUES ('k3', 'train', '{}', 'pending', 0, 3)"
            )
        )


def test_0006_downgrade_restores_the_schema_of_0005_and_keeps_every_row(
    two_engines: tuple[Engine, Engine],
) -> None:
    engine, reference = two_engines
    upgrade(reference, "0005")
    upgrade(engine, "0005")
    _seed(engine)
    before = _kept(engine)
    upgrade(engine, "0006")
    with engine.begin() as conn:  # a lease taken under 0006 goes with the columns
        conn.execute(text("UPDATE search_runs SET lease_owner = 'h-1-t'"))
    downgrade(engine, "0005")
    assert current_revision(engine) == "0005"
    assert _schema(engine) == _schema(reference)
    assert _counts(engine) == COUNTS and _kept(engine) == before
    with engine.connect() as conn:
        restored = conn.execute(text("SELECT attempts, lease_expires_at FROM evaluations")).all()
        labels = conn.execute(text("SELECT batch_label FROM work_units")).scalars().all()
    assert [tuple(r) for r in restored] == [(1, None), (1, None)]  # as every one was written
    assert labels == [None, None]
    # And up again: nothing left behind blocks it.
    upgrade(engine)
    assert _counts(engine) == COUNTS and _kept(engine) == before
