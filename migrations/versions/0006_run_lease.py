"""Run leases; the vestiges of evaluation leases, unit batch labels and ``train`` units dropped.

A search run is driven by one coordinator at a time: ``search_runs.lease_owner`` names it
(``host:pid:token``) and ``lease_expires_at`` says when its lease lapses unless renewed
(``heartbeat_at`` is the last renewal). Runs recorded before start with no lease: a ``running``
one shows as stale and ``lpzq search resume`` takes it over. The index on
``(status, heartbeat_at)``, which nothing read, becomes ``(status, lease_expires_at)``.

Leases moved from ``evaluations`` to ``work_units`` long ago: ``evaluations.attempts`` (always
1), ``evaluations.lease_expires_at`` and their index go. ``work_units.batch_label`` (written,
never read) and its index go, and ``work_units.kind`` no longer admits the unused ``train``.

On SQLite ``search_runs`` is changed in place, never rebuilt: a batch rebuild drops the table
first, which with foreign keys on cascades to every individual. ``evaluations`` and
``work_units`` have no children, so their batch rebuilds are safe. The downgrade restores the
old columns (``attempts`` 1, as it was always written) with data in the kept columns unchanged.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 00:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from lpzero_queue.storage._views import VIEWS_0002

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# v_run_progress reads search_runs: dropped and created again around the change to that table.
_RUN_PROGRESS = tuple((n, c) for n, c in VIEWS_0002 if n == "v_run_progress")


def _replace_views(views: tuple[tuple[str, str], ...]) -> None:
    for name, create in views:
        op.execute(f"DROP VIEW IF EXISTS {name}")
        op.execute(create)


def upgrade() -> None:
    op.execute("DROP VIEW IF EXISTS v_run_progress")
    # In place (see the module docstring): SQLite adds columns and (re)creates indexes directly.
    op.add_column("search_runs", sa.Column("lease_owner", sa.String(length=128), nullable=True))
    op.add_column(
        "search_runs", sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.drop_index(op.f("ix_search_runs_status_heartbeat_at"), table_name="search_runs")
    op.create_index(
        op.f("ix_search_runs_status_lease_expires_at"),
        "search_runs",
        ["status", "lease_expires_at"],
        unique=False,
    )
    _replace_views(_RUN_PROGRESS)
    with op.batch_alter_table("evaluations") as batch:
        batch.drop_index(batch.f("ix_evaluations_status_lease_expires_at"))
        batch.drop_column("lease_expires_at")
        batch.drop_column("attempts")
    # Nothing ever wrote a train unit; one would break the narrower CHECK.
    op.execute("DELETE FROM work_units WHERE kind = 'train'")
    with op.batch_alter_table("work_units") as batch:
        batch.drop_index(batch.f("ix_work_units_batch_label"))
        batch.drop_column("batch_label")
        batch.drop_constraint(batch.f("ck_work_units_kind"), type_="check")
        batch.create_check_constraint(batch.f("ck_work_units_kind"), "kind IN ('proxy')")


def downgrade() -> None:
    with op.batch_alter_table("work_units") as batch:
        batch.drop_constraint(batch.f("ck_work_units_kind"), type_="check")
        batch.create_check_constraint(batch.f("ck_work_units_kind"), "kind IN ('proxy', 'train')")
        batch.add_column(sa.Column("batch_label", sa.String(length=128), nullable=True))
        batch.create_index(batch.f("ix_work_units_batch_label"), ["batch_label"], unique=False)
    with op.batch_alter_table("evaluations") as batch:
        # Every evaluation was written with attempts = 1; the default only fills existing rows.
        batch.add_column(sa.Column("attempts", sa.Integer(), server_default="1", nullable=False))
        batch.add_column(sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_index(
            batch.f("ix_evaluations_status_lease_expires_at"),
            ["status", "lease_expires_at"],
            unique=False,
        )
    with op.batch_alter_table("evaluations") as batch:
        batch.alter_column("attempts", existing_type=sa.Integer(), server_default=None)
    op.execute("DROP VIEW IF EXISTS v_run_progress")
    op.drop_index(op.f("ix_search_runs_status_lease_expires_at"), table_name="search_runs")
    op.create_index(
        op.f("ix_search_runs_status_heartbeat_at"),
        "search_runs",
        ["status", "heartbeat_at"],
        unique=False,
    )
    # Not batch: SQLite (>= 3.35) and PostgreSQL drop a column in place.
    op.drop_column("search_runs", "lease_expires_at")
    op.drop_column("search_runs", "lease_owner")
    _replace_views(_RUN_PROGRESS)
