"""Tie-fair Kendall in correlations; search runs record how their result was selected.

Correlations record the tie-fair Kendall overall, within depth and within (depth, width).

Kendall tau-b drops the pairs a proxy ties, so a key with a few values looks better than it
ranks; the tie-fair figure (tau-b * sqrt((n0 - n1) / n0), n1 = pairs tied in the proxy) is what
goals and comparisons use. Rows computed before this revision keep NULL there (their scores are
in ``evaluations``: recomputing the correlation fills it). ``v_proxy_leaderboard`` shows them.
``search_runs.selection`` (JSON) says how a run chose its result among its final population (by
fitness, or by the validation split); NULL for runs completed before.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 21:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from lpzero_queue.storage._views import VIEWS_0002, VIEWS_0003, VIEWS_0004

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = ("kendall_tiefair", "within_tiefair", "within_fine_tiefair")


def _json() -> sa.types.TypeEngine[object]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _replace_views(views: tuple[tuple[str, str], ...]) -> None:
    for name, create in views:
        op.execute(f"DROP VIEW IF EXISTS {name}")
        op.execute(create)


# v_run_progress (revision 0002) reads search_runs: SQLite's batch mode rebuilds that table, which
# a view referencing it forbids, so the view is dropped and created again around the change.
_RUN_PROGRESS = tuple((n, c) for n, c in VIEWS_0002 if n == "v_run_progress")


def upgrade() -> None:
    op.execute("DROP VIEW IF EXISTS v_proxy_leaderboard")  # it reads correlations
    op.execute("DROP VIEW IF EXISTS v_run_progress")
    with op.batch_alter_table("correlations") as batch:
        for name in _COLUMNS:
            batch.add_column(sa.Column(name, sa.Double(), nullable=True))
    op.add_column("search_runs", sa.Column("selection", _json(), nullable=True))
    _replace_views(_RUN_PROGRESS + VIEWS_0004)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS v_proxy_leaderboard")
    op.execute("DROP VIEW IF EXISTS v_run_progress")
    # Not batch: rebuilding search_runs on SQLite would drop it first, and with foreign keys on
    # that cascades to every individual. SQLite (>= 3.35) and PostgreSQL drop a column in place.
    op.drop_column("search_runs", "selection")
    with op.batch_alter_table("correlations") as batch:
        for name in reversed(_COLUMNS):
            batch.drop_column(name)
    _replace_views(_RUN_PROGRESS + VIEWS_0003)
