"""Linear scope: which Linears fed the weight/grad inputs, part of every evaluation's key.

Existing rows were computed from the token-mixing Linears and get ``mixer``. The evaluations'
unique key gains the column (renamed ``uq_evaluations_unit``: the conventional name would exceed
PostgreSQL's 63-character limit); correlations record it; ``v_proxy_leaderboard`` partitions by it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 21:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from lpzero_queue.storage._views import VIEWS_0002, VIEWS_0003

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD_UNIQUE = "uq_evaluations_proxy_id_architecture_id_batch_id_seed_builder_objective"
_OLD_COLUMNS = ["proxy_id", "architecture_id", "batch_id", "seed", "builder", "objective"]
_CHECK = "linear_scope IN ('mixer', 'all')"


def _replace_views(views: tuple[tuple[str, str], ...]) -> None:
    for name, create in views:
        op.execute(f"DROP VIEW IF EXISTS {name}")
        op.execute(create)


def upgrade() -> None:
    op.execute("DROP VIEW IF EXISTS v_proxy_leaderboard")  # it reads correlations
    with op.batch_alter_table("evaluations") as batch:
        batch.add_column(
            sa.Column("linear_scope", sa.String(length=16), server_default="mixer", nullable=False)
        )
        batch.drop_constraint(op.f(_OLD_UNIQUE), type_="unique")
        batch.create_unique_constraint(op.f("uq_evaluations_unit"), [*_OLD_COLUMNS, "linear_scope"])
        batch.create_check_constraint(op.f("ck_evaluations_linear_scope"), _CHECK)
    with op.batch_alter_table("correlations") as batch:
        batch.add_column(
            sa.Column("linear_scope", sa.String(length=16), server_default="mixer", nullable=False)
        )
        batch.create_check_constraint(op.f("ck_correlations_linear_scope"), _CHECK)
    _replace_views(VIEWS_0003)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS v_proxy_leaderboard")
    # Rows of other scopes would collide under the old key: keep the token-mixing ones.
    op.execute("DELETE FROM evaluations WHERE linear_scope <> 'mixer'")
    op.execute("DELETE FROM correlations WHERE linear_scope <> 'mixer'")
    with op.batch_alter_table("correlations") as batch:
        batch.drop_constraint(op.f("ck_correlations_linear_scope"), type_="check")
        batch.drop_column("linear_scope")
    with op.batch_alter_table("evaluations") as batch:
        batch.drop_constraint(op.f("ck_evaluations_linear_scope"), type_="check")
        batch.drop_constraint(op.f("uq_evaluations_unit"), type_="unique")
        batch.create_unique_constraint(op.f(_OLD_UNIQUE), _OLD_COLUMNS)
        batch.drop_column("linear_scope")
    _replace_views(tuple((n, c) for n, c in VIEWS_0002 if n == "v_proxy_leaderboard"))
