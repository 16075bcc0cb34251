"""SQLAlchemy 2 models: the schema that Alembic creates (``migrations/``).

Conventions: status columns are short strings checked by a CHECK constraint (identical on SQLite
and PostgreSQL); scores are float64 and NULL unless the status is ``ok``; configuration is JSON
(JSONB on PostgreSQL); every foreign key and every column a coordinator polls is indexed.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import DateTime

from lpzero_queue.storage.status import (
    EvaluationStatus,
    IndividualStatus,
    JobStatus,
    RunStatus,
    UnitKind,
    UnitStatus,
    values,
)

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JsonType = JSON().with_variant(JSONB(), "postgresql")
Timestamp = DateTime(timezone=True)

DIRECTIONS = ("higher", "lower")
PROXY_ORIGINS = ("builtin", "searched", "user")
PROXY_KINDS = ("expression", "builtin")
EVALUATION_STATUSES = values(EvaluationStatus)
RUN_STATUSES = values(RunStatus)
INDIVIDUAL_STATUSES = values(IndividualStatus)
JOB_STATUSES = values(JobStatus)
UNIT_STATUSES = values(UnitStatus)
UNIT_KINDS = values(UnitKind)
# Which Linears feed the weight/grad proxy inputs (proxies.inputs.LINEAR_SCOPES).
LINEAR_SCOPES = ("mixer", "all")


def _one_of(column: str, values: tuple[str, ...], name: str) -> CheckConstraint:
    quoted = ", ".join(f"'{v}'" for v in values)
    return CheckConstraint(f"{column} IN ({quoted})", name=name)


def _now() -> Any:
    return func.now()


class Base(DeclarativeBase):
    """Declarative base with a naming convention so Alembic names constraints predictably."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Benchmark(Base):
    """Trained architectures with ground truth: shipped, imported or created by training."""

    __tablename__ = "benchmarks"
    __table_args__ = (_one_of("direction", DIRECTIONS, "direction"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    # The architecture space decides the builder: "flexibert" or "gpt2".
    space: Mapped[str] = mapped_column(String(32))
    # The default ground-truth metric (e.g. "glue", "valid_ppl") and whether higher is better.
    metric: Mapped[str] = mapped_column(String(64))
    direction: Mapped[str] = mapped_column(String(8))
    description: Mapped[str] = mapped_column(Text, default="")
    # Source, citation, license, attribution line.
    provenance: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, server_default=_now())


class Architecture(Base):
    """One architecture of a benchmark, with its structural summary for trivial baselines."""

    __tablename__ = "architectures"
    __table_args__ = (UniqueConstraint("benchmark_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    benchmark_id: Mapped[int] = mapped_column(
        ForeignKey("benchmarks.id", ondelete="CASCADE"), index=True
    )
    # The record's id in its source file, as text.
    key: Mapped[str] = mapped_column(String(128))
    # 0-based order in the source file (the paper's "first 50" split uses it).
    position: Mapped[int] = mapped_column(Integer)
    config: Mapped[dict[str, Any]] = mapped_column(JsonType)
    # sha256 of the canonical JSON of the builder-relevant config keys.
    config_hash: Mapped[str] = mapped_column(String(64), index=True)
    n_layers: Mapped[int] = mapped_column(Integer)
    hidden_size: Mapped[int] = mapped_column(Integer)
    # Parameter counts of the benchmark's default builder.
    params_total: Mapped[int] = mapped_column(BigInteger)
    params_nonembedding: Mapped[int] = mapped_column(BigInteger)
    # Per-builder summaries and source extras (training time, published parameter split).
    summary: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)


class GroundTruth(Base):
    """A trained quality figure of an architecture (one row per metric)."""

    __tablename__ = "ground_truth"
    __table_args__ = (UniqueConstraint("architecture_id", "metric"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    architecture_id: Mapped[int] = mapped_column(
        ForeignKey("architectures.id", ondelete="CASCADE"), index=True
    )
    metric: Mapped[str] = mapped_column(String(64))
    value: Mapped[float] = mapped_column(Double)


class Proxy(Base):
    """A zero-cost proxy: a canonical expression, or a named built-in baseline."""

    __tablename__ = "proxies"
    __table_args__ = (
        _one_of("origin", PROXY_ORIGINS, "origin"),
        _one_of("kind", PROXY_KINDS, "kind"),
        _one_of("direction", DIRECTIONS, "direction"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Canonical expression text; for built-in baselines, the baseline's name.
    expression: Mapped[str] = mapped_column(Text, unique=True)
    # sha256 of `expression`.
    expression_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # Optional human name ("synflow", "lpzero-gpt2").
    name: Mapped[str | None] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    origin: Mapped[str] = mapped_column(String(16))
    direction: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, server_default=_now())


class InputBatch(Base):
    """A fixed mini-batch of real text on which proxies are computed, identified by content hash."""

    __tablename__ = "input_batches"
    __table_args__ = (
        UniqueConstraint("benchmark_id", "seed", "batch_size", "seq_len", "tokenizer"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    benchmark_id: Mapped[int] = mapped_column(
        ForeignKey("benchmarks.id", ondelete="CASCADE"), index=True
    )
    seed: Mapped[int] = mapped_column(BigInteger)
    batch_size: Mapped[int] = mapped_column(Integer)
    seq_len: Mapped[int] = mapped_column(Integer)
    tokenizer: Mapped[str] = mapped_column(String(64))
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, server_default=_now())


class Evaluation(Base):
    """One unit of scoring work: a proxy on an architecture for a batch, seed and builder."""

    __tablename__ = "evaluations"
    __table_args__ = (
        UniqueConstraint(
            "proxy_id",
            "architecture_id",
            "batch_id",
            "seed",
            "builder",
            "objective",
            "linear_scope",
            name="uq_evaluations_unit",
        ),
        _one_of("status", EVALUATION_STATUSES, "status"),
        _one_of("linear_scope", LINEAR_SCOPES, "linear_scope"),
        CheckConstraint("status = 'ok' OR score IS NULL", name="score_only_when_ok"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    proxy_id: Mapped[int] = mapped_column(ForeignKey("proxies.id", ondelete="CASCADE"), index=True)
    architecture_id: Mapped[int] = mapped_column(
        ForeignKey("architectures.id", ondelete="CASCADE"), index=True
    )
    batch_id: Mapped[int] = mapped_column(
        ForeignKey("input_batches.id", ondelete="CASCADE"), index=True
    )
    # Seed of the random initialisation of the network.
    seed: Mapped[int] = mapped_column(BigInteger)
    builder: Mapped[str] = mapped_column(String(32))
    # The loss whose backward gave the gradients ("ones", "mlm", "lm").
    objective: Mapped[str] = mapped_column(String(16))
    # Which Linears fed the weight/grad inputs: "mixer" (token-mixing) or "all".
    linear_scope: Mapped[str] = mapped_column(String(16), server_default="mixer")
    score: Mapped[float | None] = mapped_column(Double)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    error: Mapped[str | None] = mapped_column(Text)
    seconds: Mapped[float | None] = mapped_column(Double)
    worker: Mapped[str | None] = mapped_column(String(128))
    # Where it was computed: "cpu" or "cuda:<device name>"; NULL before revision 0005.
    device: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, server_default=_now())
    updated_at: Mapped[dt.datetime] = mapped_column(
        Timestamp, server_default=_now(), onupdate=func.now()
    )


class Correlation(Base):
    """A rank correlation of a proxy with a benchmark's ground truth, and how it was obtained."""

    __tablename__ = "correlations"
    __table_args__ = (_one_of("linear_scope", LINEAR_SCOPES, "linear_scope"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    proxy_id: Mapped[int] = mapped_column(ForeignKey("proxies.id", ondelete="CASCADE"), index=True)
    benchmark_id: Mapped[int] = mapped_column(
        ForeignKey("benchmarks.id", ondelete="CASCADE"), index=True
    )
    # "all", "test", "search", "first50" ...
    split: Mapped[str] = mapped_column(String(32))
    metric: Mapped[str] = mapped_column(String(64))
    builder: Mapped[str] = mapped_column(String(32))
    objective: Mapped[str] = mapped_column(String(16))
    linear_scope: Mapped[str] = mapped_column(String(16), server_default="mixer")
    seeds: Mapped[list[int]] = mapped_column(JsonType, default=list)
    batch_hashes: Mapped[list[str]] = mapped_column(JsonType, default=list)
    n: Mapped[int] = mapped_column(Integer)
    spearman: Mapped[float | None] = mapped_column(Double)
    kendall: Mapped[float | None] = mapped_column(Double)
    # Mean Kendall tau inside strata (FlexiBERT: depth; GPT-2: depth groups).
    within_kendall: Mapped[float | None] = mapped_column(Double)
    # Tie-fair Kendall (tau-b * sqrt of the share of pairs the proxy does not tie): overall, mean
    # within depth strata, mean within (depth, width) strata. NULL on rows computed before 0004.
    kendall_tiefair: Mapped[float | None] = mapped_column(Double)
    within_tiefair: Mapped[float | None] = mapped_column(Double)
    within_fine_tiefair: Mapped[float | None] = mapped_column(Double)
    top10_overlap: Mapped[float | None] = mapped_column(Double)
    details: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
    computed_at: Mapped[dt.datetime] = mapped_column(Timestamp, server_default=_now())


class SearchRun(Base):
    """A genetic-programming search: a pure function of its resolved configuration and seed."""

    __tablename__ = "search_runs"
    __table_args__ = (
        _one_of("status", RUN_STATUSES, "status"),
        # Stale runs: running, with a lease that lapsed (revision 0006).
        Index(None, "status", "lease_expires_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    benchmark_id: Mapped[int] = mapped_column(
        ForeignKey("benchmarks.id", ondelete="CASCADE"), index=True
    )
    config: Mapped[dict[str, Any]] = mapped_column(JsonType)
    seed: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    code_version: Mapped[str] = mapped_column(String(64))
    library_versions: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
    best_proxy_id: Mapped[int | None] = mapped_column(
        ForeignKey("proxies.id", ondelete="SET NULL"), index=True
    )
    best_fitness: Mapped[float | None] = mapped_column(Double)
    # How the result was chosen among the final population (fitness, or validation figures of
    # the top members); NULL for runs completed before revision 0004.
    selection: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, server_default=_now())
    started_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    finished_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    # The last renewal of the run's lease by its coordinator.
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    # The coordinator driving the run ("host:pid:token") and when its lease lapses unless
    # renewed; NULL when no coordinator holds it (revision 0006).
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)


class Individual(Base):
    """A member of a search run's population, written as soon as it is scored."""

    __tablename__ = "individuals"
    __table_args__ = (
        UniqueConstraint("run_id", "generation", "slot"),
        _one_of("status", INDIVIDUAL_STATUSES, "status"),
        CheckConstraint("status = 'ok' OR fitness IS NULL", name="fitness_only_when_ok"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(
        ForeignKey("search_runs.id", ondelete="CASCADE"), index=True
    )
    generation: Mapped[int] = mapped_column(Integer)
    slot: Mapped[int] = mapped_column(Integer)
    proxy_id: Mapped[int] = mapped_column(ForeignKey("proxies.id"), index=True)
    # The genotype as sampled, before canonicalisation.
    genotype: Mapped[str] = mapped_column(Text)
    # [[generation, slot], ...] of the parents; empty for the initial population.
    parents: Mapped[list[list[int]]] = mapped_column(JsonType, default=list)
    seed: Mapped[int] = mapped_column(BigInteger)
    fitness: Mapped[float | None] = mapped_column(Double)
    probe_fitness: Mapped[float | None] = mapped_column(Double)
    status: Mapped[str] = mapped_column(String(16))
    # The rule-based-pruning rule that rejected this candidate, when one did.
    pruning_rule: Mapped[str | None] = mapped_column(String(64))
    seconds: Mapped[float | None] = mapped_column(Double)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, server_default=_now())


class TrainingJob(Base):
    """A subnet-training task: an architecture or sub-network trained for N steps."""

    __tablename__ = "training_jobs"
    __table_args__ = (
        _one_of("status", JOB_STATUSES, "status"),
        Index(None, "status", "lease_expires_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Idempotency key: sha256 of (spec, hyper-parameters, seed).
    job_key: Mapped[str] = mapped_column(String(64), unique=True)
    benchmark_id: Mapped[int | None] = mapped_column(
        ForeignKey("benchmarks.id", ondelete="CASCADE"), index=True
    )
    architecture_id: Mapped[int | None] = mapped_column(
        ForeignKey("architectures.id", ondelete="CASCADE"), index=True
    )
    # The architecture config or sub-network choice being trained.
    spec: Mapped[dict[str, Any]] = mapped_column(JsonType)
    hyperparameters: Mapped[dict[str, Any]] = mapped_column(JsonType)
    seed: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    step: Mapped[int] = mapped_column(Integer, default=0)
    checkpoint_path: Mapped[str | None] = mapped_column(Text)
    metrics: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, server_default=_now())
    updated_at: Mapped[dt.datetime] = mapped_column(
        Timestamp, server_default=_now(), onupdate=func.now()
    )


class WorkUnitRow(Base):
    """A unit of distributed work; PostgreSQL, not the broker, is its record and the barrier.

    A worker leases a row (status running, lease expiry renewed by a heartbeat), writes its result
    and marks it done in one transaction; the coordinator re-dispatches rows whose lease expired,
    up to ``max_attempts``.
    """

    __tablename__ = "work_units"
    __table_args__ = (
        _one_of("status", UNIT_STATUSES, "status"),
        _one_of("kind", UNIT_KINDS, "kind"),
        Index(None, "status", "lease_expires_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # sha256 of the canonical JSON payload: the same work is one row.
    unit_key: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    payload: Mapped[dict[str, Any]] = mapped_column(JsonType)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    worker: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    result: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, server_default=_now())
    updated_at: Mapped[dt.datetime] = mapped_column(
        Timestamp, server_default=_now(), onupdate=func.now()
    )
