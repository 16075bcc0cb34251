"""Evaluation device: where each evaluation was computed (``cpu``, ``cuda:<device name>``).

Rows written before this revision get NULL (not recorded). Scores are meant not to depend on the
device (seeded CPU generators for every random draw, issue 12), and the column is how that is
checked against stored results.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 22:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("evaluations") as batch:
        batch.add_column(sa.Column("device", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("evaluations") as batch:
        batch.drop_column("device")
