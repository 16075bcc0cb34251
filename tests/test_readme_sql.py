"""The example SQL of docs/usage.md runs unchanged on a migrated database of each backend."""

from __future__ import annotations

import re

from sqlalchemy import Engine, text
from sqlalchemy.orm import sessionmaker

from tests.conftest import REPO_ROOT
from tests.workflows.test_search_report import BEST, add_fake_runs

HEADING = "## SQL over historical results"


USAGE = REPO_ROOT / "docs" / "usage.md"


def documented_queries() -> list[str]:
    """The ```sql blocks of the documented section, in order."""
    usage = USAGE.read_text()
    assert HEADING in usage, f"docs/usage.md lost its {HEADING!r} section"
    section = usage.split(HEADING, 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sql\n(.*?)```", section, flags=re.DOTALL)


def test_the_usage_guide_shows_three_queries() -> None:
    assert len(documented_queries()) == 3


def test_documented_queries_run_on_historical_results(migrated_engine: Engine) -> None:
    rps_run, _ = add_fake_runs(sessionmaker(migrated_engine, expire_on_commit=False))
    with migrated_engine.begin() as conn:
        conn.execute(text("UPDATE benchmarks SET name = 'flexibert'"))
    leaderboard, pruning, beats = documented_queries()
    with migrated_engine.connect() as conn:
        board = conn.execute(text(leaderboard)).all()
        fired = conn.execute(text(pruning)).all()
        better = conn.execute(text(beats)).all()
    assert [r.proxy for r in board] == [
        BEST,
        "lpzero-flexibert",
        "layers_x_hidden",
        "n_layers",
        "params",
    ]
    assert [(r.run_id, r.pruning_rule, r.fired) for r in fired] == [
        (rps_run, "no_gradient", 2),
        (rps_run, "constant_probe", 1),
    ]
    assert [(r.proxy, r.layers_x_hidden) for r in better] == [
        (BEST, 0.6),
        ("lpzero-flexibert", 0.6),
    ]
