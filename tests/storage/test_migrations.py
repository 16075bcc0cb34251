"""Alembic owns the schema: upgrade, downgrade and model/migration agreement on both backends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect

from lpzero_queue.storage import Base, current_revision, downgrade, head_revision, upgrade

TABLES = {
    "benchmarks",
    "architectures",
    "ground_truth",
    "proxies",
    "input_batches",
    "evaluations",
    "correlations",
    "search_runs",
    "individuals",
    "training_jobs",
    "work_units",
}


def test_upgrade_from_empty_to_head_and_back_to_base(engine: Engine) -> None:
    assert current_revision(engine) is None
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    assert set(inspect(engine).get_table_names()) >= TABLES
    downgrade(engine, "base")
    assert current_revision(engine) is None
    assert set(inspect(engine).get_table_names()) - {"alembic_version"} == set()
    # And up again: downgrade left nothing behind that blocks a fresh upgrade.
    upgrade(engine)
    assert current_revision(engine) == head_revision()


def test_models_and_migrations_agree(migrated_engine: Engine) -> None:
    with migrated_engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == []


def test_every_foreign_key_is_indexed(migrated_engine: Engine) -> None:
    insp = inspect(migrated_engine)
    for table in insp.get_table_names():
        indexed = {next(iter(ix["column_names"])) for ix in insp.get_indexes(table)}
        indexed |= {next(iter(uq["column_names"])) for uq in insp.get_unique_constraints(table)}
        for fk in insp.get_foreign_keys(table):
            column = fk["constrained_columns"][0]
            assert column in indexed, f"{table}.{column} is a foreign key without an index"
