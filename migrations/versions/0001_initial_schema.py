"""Initial schema: benchmarks, architectures, ground truth, proxies, batches, evaluations,
correlations, search runs and individuals, training jobs, work units.

Revision ID: 0001
Revises:
Create Date: 2026-11-27 19:00:19.506044
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "benchmarks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("space", sa.String(length=32), nullable=False),
        sa.Column("metric", sa.String(length=64), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column(
            "provenance", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(
            "direction IN ('higher', 'lower')", name=op.f("ck_benchmarks_direction")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_benchmarks")),
        sa.UniqueConstraint("name", name=op.f("uq_benchmarks_name")),
    )
    op.create_table(
        "proxies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("expression", sa.Text(), nullable=False),
        sa.Column("expression_hash", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("origin", sa.String(length=16), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint("direction IN ('higher', 'lower')", name=op.f("ck_proxies_direction")),
        sa.CheckConstraint("kind IN ('expression', 'builtin')", name=op.f("ck_proxies_kind")),
        sa.CheckConstraint(
            "origin IN ('builtin', 'searched', 'user')", name=op.f("ck_proxies_origin")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_proxies")),
        sa.UniqueConstraint("expression", name=op.f("uq_proxies_expression")),
        sa.UniqueConstraint("expression_hash", name=op.f("uq_proxies_expression_hash")),
        sa.UniqueConstraint("name", name=op.f("uq_proxies_name")),
    )
    op.create_table(
        "work_units",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("unit_key", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column(
            "payload", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column("batch_label", sa.String(length=128), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(length=128), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "result", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=True
        ),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint("kind IN ('proxy', 'train')", name=op.f("ck_work_units_kind")),
        sa.CheckConstraint(
            "status IN ('pending', 'running', 'done', 'failed')", name=op.f("ck_work_units_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_work_units")),
        sa.UniqueConstraint("unit_key", name=op.f("uq_work_units_unit_key")),
    )
    with op.batch_alter_table("work_units", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_work_units_batch_label"), ["batch_label"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_work_units_status_lease_expires_at"),
            ["status", "lease_expires_at"],
            unique=False,
        )

    op.create_table(
        "architectures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("benchmark_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column(
            "config", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column("config_hash", sa.String(length=64), nullable=False),
        sa.Column("n_layers", sa.Integer(), nullable=False),
        sa.Column("hidden_size", sa.Integer(), nullable=False),
        sa.Column("params_total", sa.BigInteger(), nullable=False),
        sa.Column("params_nonembedding", sa.BigInteger(), nullable=False),
        sa.Column(
            "summary", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["benchmark_id"],
            ["benchmarks.id"],
            name=op.f("fk_architectures_benchmark_id_benchmarks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_architectures")),
        sa.UniqueConstraint("benchmark_id", "key", name=op.f("uq_architectures_benchmark_id_key")),
    )
    with op.batch_alter_table("architectures", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_architectures_benchmark_id"), ["benchmark_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_architectures_config_hash"), ["config_hash"], unique=False
        )

    op.create_table(
        "correlations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("proxy_id", sa.Integer(), nullable=False),
        sa.Column("benchmark_id", sa.Integer(), nullable=False),
        sa.Column("split", sa.String(length=32), nullable=False),
        sa.Column("metric", sa.String(length=64), nullable=False),
        sa.Column("builder", sa.String(length=32), nullable=False),
        sa.Column("objective", sa.String(length=16), nullable=False),
        sa.Column(
            "seeds", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column(
            "batch_hashes", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("spearman", sa.Double(), nullable=True),
        sa.Column("kendall", sa.Double(), nullable=True),
        sa.Column("within_kendall", sa.Double(), nullable=True),
        sa.Column("top10_overlap", sa.Double(), nullable=True),
        sa.Column(
            "details", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column(
            "computed_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["benchmark_id"],
            ["benchmarks.id"],
            name=op.f("fk_correlations_benchmark_id_benchmarks"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["proxy_id"],
            ["proxies.id"],
            name=op.f("fk_correlations_proxy_id_proxies"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_correlations")),
    )
    with op.batch_alter_table("correlations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_correlations_benchmark_id"), ["benchmark_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_correlations_proxy_id"), ["proxy_id"], unique=False)

    op.create_table(
        "input_batches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("benchmark_id", sa.Integer(), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("batch_size", sa.Integer(), nullable=False),
        sa.Column("seq_len", sa.Integer(), nullable=False),
        sa.Column("tokenizer", sa.String(length=64), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["benchmark_id"],
            ["benchmarks.id"],
            name=op.f("fk_input_batches_benchmark_id_benchmarks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_input_batches")),
        sa.UniqueConstraint(
            "benchmark_id",
            "seed",
            "batch_size",
            "seq_len",
            "tokenizer",
            name=op.f("uq_input_batches_benchmark_id_seed_batch_size_seq_len_tokenizer"),
        ),
    )
    with op.batch_alter_table("input_batches", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_input_batches_benchmark_id"), ["benchmark_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_input_batches_content_hash"), ["content_hash"], unique=False
        )

    op.create_table(
        "search_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("benchmark_id", sa.Integer(), nullable=False),
        sa.Column(
            "config", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("code_version", sa.String(length=64), nullable=False),
        sa.Column(
            "library_versions",
            sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
            nullable=False,
        ),
        sa.Column("best_proxy_id", sa.Integer(), nullable=True),
        sa.Column("best_fitness", sa.Double(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'running', 'completed', 'failed', 'cancelled')",
            name=op.f("ck_search_runs_status"),
        ),
        sa.ForeignKeyConstraint(
            ["benchmark_id"],
            ["benchmarks.id"],
            name=op.f("fk_search_runs_benchmark_id_benchmarks"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["best_proxy_id"],
            ["proxies.id"],
            name=op.f("fk_search_runs_best_proxy_id_proxies"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_search_runs")),
    )
    with op.batch_alter_table("search_runs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_search_runs_benchmark_id"), ["benchmark_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_search_runs_best_proxy_id"), ["best_proxy_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_search_runs_status_heartbeat_at"),
            ["status", "heartbeat_at"],
            unique=False,
        )

    op.create_table(
        "evaluations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("proxy_id", sa.Integer(), nullable=False),
        sa.Column("architecture_id", sa.Integer(), nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("builder", sa.String(length=32), nullable=False),
        sa.Column("objective", sa.String(length=16), nullable=False),
        sa.Column("score", sa.Double(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("seconds", sa.Double(), nullable=True),
        sa.Column("worker", sa.String(length=128), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(
            "status = 'ok' OR score IS NULL", name=op.f("ck_evaluations_score_only_when_ok")
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'running', 'ok', 'nonfinite', 'constant', 'error', 'pruned', 'timeout')",
            name=op.f("ck_evaluations_status"),
        ),
        sa.ForeignKeyConstraint(
            ["architecture_id"],
            ["architectures.id"],
            name=op.f("fk_evaluations_architecture_id_architectures"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["input_batches.id"],
            name=op.f("fk_evaluations_batch_id_input_batches"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["proxy_id"],
            ["proxies.id"],
            name=op.f("fk_evaluations_proxy_id_proxies"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evaluations")),
        sa.UniqueConstraint(
            "proxy_id",
            "architecture_id",
            "batch_id",
            "seed",
            "builder",
            "objective",
            name=op.f("uq_evaluations_proxy_id_architecture_id_batch_id_seed_builder_objective"),
        ),
    )
    with op.batch_alter_table("evaluations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_evaluations_architecture_id"), ["architecture_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_evaluations_batch_id"), ["batch_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_evaluations_proxy_id"), ["proxy_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_evaluations_status_lease_expires_at"),
            ["status", "lease_expires_at"],
            unique=False,
        )

    op.create_table(
        "ground_truth",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("architecture_id", sa.Integer(), nullable=False),
        sa.Column("metric", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["architecture_id"],
            ["architectures.id"],
            name=op.f("fk_ground_truth_architecture_id_architectures"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ground_truth")),
        sa.UniqueConstraint(
            "architecture_id", "metric", name=op.f("uq_ground_truth_architecture_id_metric")
        ),
    )
    with op.batch_alter_table("ground_truth", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ground_truth_architecture_id"), ["architecture_id"], unique=False
        )

    op.create_table(
        "individuals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("proxy_id", sa.Integer(), nullable=False),
        sa.Column("genotype", sa.Text(), nullable=False),
        sa.Column(
            "parents", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("fitness", sa.Double(), nullable=True),
        sa.Column("probe_fitness", sa.Double(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("pruning_rule", sa.String(length=64), nullable=True),
        sa.Column("seconds", sa.Double(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(
            "status = 'ok' OR fitness IS NULL", name=op.f("ck_individuals_fitness_only_when_ok")
        ),
        sa.CheckConstraint(
            "status IN ('ok', 'pruned', 'nonfinite', 'constant', 'error', 'timeout')",
            name=op.f("ck_individuals_status"),
        ),
        sa.ForeignKeyConstraint(
            ["proxy_id"], ["proxies.id"], name=op.f("fk_individuals_proxy_id_proxies")
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["search_runs.id"],
            name=op.f("fk_individuals_run_id_search_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_individuals")),
        sa.UniqueConstraint(
            "run_id", "generation", "slot", name=op.f("uq_individuals_run_id_generation_slot")
        ),
    )
    with op.batch_alter_table("individuals", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_individuals_proxy_id"), ["proxy_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_individuals_run_id"), ["run_id"], unique=False)

    op.create_table(
        "training_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_key", sa.String(length=64), nullable=False),
        sa.Column("benchmark_id", sa.Integer(), nullable=True),
        sa.Column("architecture_id", sa.Integer(), nullable=True),
        sa.Column("spec", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column(
            "hyperparameters",
            sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
            nullable=False,
        ),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(length=128), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("checkpoint_path", sa.Text(), nullable=True),
        sa.Column(
            "metrics", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'running', 'completed', 'failed', 'timeout', 'cancelled')",
            name=op.f("ck_training_jobs_status"),
        ),
        sa.ForeignKeyConstraint(
            ["architecture_id"],
            ["architectures.id"],
            name=op.f("fk_training_jobs_architecture_id_architectures"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["benchmark_id"],
            ["benchmarks.id"],
            name=op.f("fk_training_jobs_benchmark_id_benchmarks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_training_jobs")),
        sa.UniqueConstraint("job_key", name=op.f("uq_training_jobs_job_key")),
    )
    with op.batch_alter_table("training_jobs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_training_jobs_architecture_id"), ["architecture_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_training_jobs_benchmark_id"), ["benchmark_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_training_jobs_status_lease_expires_at"),
            ["status", "lease_expires_at"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("training_jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_training_jobs_status_lease_expires_at"))
        batch_op.drop_index(batch_op.f("ix_training_jobs_benchmark_id"))
        batch_op.drop_index(batch_op.f("ix_training_jobs_architecture_id"))

    op.drop_table("training_jobs")
    with op.batch_alter_table("individuals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_individuals_run_id"))
        batch_op.drop_index(batch_op.f("ix_individuals_proxy_id"))

    op.drop_table("individuals")
    with op.batch_alter_table("ground_truth", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ground_truth_architecture_id"))

    op.drop_table("ground_truth")
    with op.batch_alter_table("evaluations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_evaluations_status_lease_expires_at"))
        batch_op.drop_index(batch_op.f("ix_evaluations_proxy_id"))
        batch_op.drop_index(batch_op.f("ix_evaluations_batch_id"))
        batch_op.drop_index(batch_op.f("ix_evaluations_architecture_id"))

    op.drop_table("evaluations")
    with op.batch_alter_table("search_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_search_runs_status_heartbeat_at"))
        batch_op.drop_index(batch_op.f("ix_search_runs_best_proxy_id"))
        batch_op.drop_index(batch_op.f("ix_search_runs_benchmark_id"))

    op.drop_table("search_runs")
    with op.batch_alter_table("input_batches", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_input_batches_content_hash"))
        batch_op.drop_index(batch_op.f("ix_input_batches_benchmark_id"))

    op.drop_table("input_batches")
    with op.batch_alter_table("correlations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_correlations_proxy_id"))
        batch_op.drop_index(batch_op.f("ix_correlations_benchmark_id"))

    op.drop_table("correlations")
    with op.batch_alter_table("architectures", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_architectures_config_hash"))
        batch_op.drop_index(batch_op.f("ix_architectures_benchmark_id"))

    op.drop_table("architectures")
    with op.batch_alter_table("work_units", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_work_units_status_lease_expires_at"))
        batch_op.drop_index(batch_op.f("ix_work_units_batch_label"))

    op.drop_table("work_units")
    op.drop_table("proxies")
    op.drop_table("benchmarks")
