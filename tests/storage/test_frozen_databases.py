"""Databases written by earlier revisions upgrade to head (and back) with every row kept."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect, text
from sqlalchemy.orm import sessionmaker

from lpzero_queue.storage import (
    RunRepository,
    current_revision,
    downgrade,
    head_revision,
    make_engine,
    upgrade,
)
from tests.conftest import REPO_ROOT

FROZEN = sorted((REPO_ROOT / "tests" / "data" / "frozen").glob("lpzq-*.sqlite3"))


def _counts(engine: Engine) -> dict[str, int]:
    tables = set(inspect(engine).get_table_names()) - {"alembic_version"}
    with engine.connect() as conn:
        return {t: conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one() for t in tables}


def test_there_is_a_frozen_database() -> None:
    assert "lpzq-0005.sqlite3" in {p.name for p in FROZEN}


@pytest.mark.parametrize("frozen", FROZEN, ids=lambda p: p.stem)
def test_a_frozen_database_upgrades_to_head_and_back_keeping_its_rows(
    frozen: Path, tmp_path: Path
) -> None:
    revision = frozen.stem.removeprefix("lpzq-")
    copy = tmp_path / frozen.name
    shutil.copyfile(frozen, copy)
    engine = make_engine(f"sqlite:///{copy}")
    try:
        assert current_revision(engine) == revision
        before = _counts(engine)
        assert before["individuals"] > 0 and before["evaluations"] > 0
        upgrade(engine)
        assert current_revision(engine) == head_revision()
        assert _counts(engine) == before  # no cascade from a rebuilt parent table
        runs = RunRepository(sessionmaker(engine)).list_runs()
        # A run left running by a coordinator of before has no lease: stale.
        assert [r.shown_status for r in runs] == ["completed", "stale"]
        with engine.connect() as conn:
            progress = conn.execute(text("SELECT COUNT(*) FROM v_run_progress")).scalar_one()
        assert progress > 0
        downgrade(engine, revision)
        assert current_revision(engine) == revision
        assert _counts(engine) == before
    finally:
        engine.dispose()
