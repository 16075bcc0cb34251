"""Views over historical results: v_proxy_leaderboard and v_run_progress.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 10:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

from lpzero_queue.storage._views import VIEWS_0002

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for _name, create in VIEWS_0002:
        op.execute(create)


def downgrade() -> None:
    for name, _create in reversed(VIEWS_0002):
        op.execute(f"DROP VIEW IF EXISTS {name}")
