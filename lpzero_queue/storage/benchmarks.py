"""The benchmarks repository: benchmarks, their architectures and ground truth.

Every statement that reads or writes ``benchmarks``, ``architectures`` or ``ground_truth`` lives
here; callers get ORM rows of :class:`Benchmark` or the small records below, never SQL.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lpzero_queue.storage._models import Architecture, Benchmark, GroundTruth
from lpzero_queue.storage._upsert import insert_ignore

__all__ = [
    "ArchitectureRow",
    "BenchmarkListing",
    "BenchmarkRepository",
    "NewArchitecture",
    "NewBenchmark",
    "StoredKey",
]


@dataclass(frozen=True)
class NewBenchmark:
    """A benchmark row to create."""

    name: str
    space: str
    metric: str
    direction: str  # "higher" | "lower": the better end of the metric
    description: str = ""
    provenance: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NewArchitecture:
    """An architecture row to create, with its ground truth (metric -> value)."""

    key: str
    position: int
    config: Mapping[str, Any]
    config_hash: str
    n_layers: int
    hidden_size: int
    params_total: int
    params_nonembedding: int
    summary: Mapping[str, Any]
    ground_truth: Mapping[str, float]


@dataclass(frozen=True)
class StoredKey:
    """An architecture's key and the hash of its config, as stored."""

    key: str
    config_hash: str


@dataclass(frozen=True)
class ArchitectureRow:
    """One stored architecture: identity, position in the benchmark, config and structure."""

    id: int
    key: str
    position: int
    config: dict[str, Any]
    n_layers: int
    hidden_size: int
    params_total: int
    params_nonembedding: int


@dataclass(frozen=True)
class BenchmarkListing:
    """A line of ``lpzq bench list``: a stored benchmark and its architecture count."""

    name: str
    space: str
    metric: str
    direction: str
    architectures: int


class BenchmarkRepository:
    """Benchmarks, architectures and ground truth, read and written in the caller's session."""

    def __init__(self, session: Session) -> None:
        self.session = session

    # ---------------------------------------------------------------- benchmarks

    def find(self, name: str) -> Benchmark | None:
        """The benchmark called ``name``, or None."""
        return self.session.scalar(select(Benchmark).where(Benchmark.name == name))

    def id_of(self, name: str) -> int | None:
        """The id of the benchmark called ``name``, or None."""
        return self.session.scalar(select(Benchmark.id).where(Benchmark.name == name))

    def space_of(self, name: str) -> str | None:
        """The space of the benchmark called ``name``, or None."""
        return self.session.scalar(select(Benchmark.space).where(Benchmark.name == name))

    def names(self, space: str | None = None) -> list[str]:
        """Names of the stored benchmarks (of ``space`` when given), sorted."""
        query = select(Benchmark.name).order_by(Benchmark.name)
        if space is not None:
            query = query.where(Benchmark.space == space)
        return list(self.session.scalars(query).all())

    def listing(self) -> list[BenchmarkListing]:
        """Every stored benchmark with its architecture count, by name."""
        rows = self.session.execute(
            select(
                Benchmark.name,
                Benchmark.space,
                Benchmark.metric,
                Benchmark.direction,
                func.count(Architecture.id),
            )
            .outerjoin(Architecture, Architecture.benchmark_id == Benchmark.id)
            .group_by(Benchmark.id)
            .order_by(Benchmark.name)
        ).all()
        return [BenchmarkListing(*row) for row in rows]

    def create_if_absent(self, new: NewBenchmark) -> bool:
        """Insert the benchmark unless one of that name exists; True if this call inserted it.

        On PostgreSQL a concurrent insert of the same name waits for the other transaction.
        """
        values = {
            "name": new.name,
            "space": new.space,
            "metric": new.metric,
            "direction": new.direction,
            "description": new.description,
            "provenance": dict(new.provenance),
        }
        return insert_ignore(self.session, Benchmark, [values], index_elements=["name"]) > 0

    # ---------------------------------------------------------------- architectures

    def stored_keys(self, benchmark_id: int) -> list[StoredKey]:
        """The keys and config hashes of a benchmark's architectures, in position order."""
        rows = self.session.execute(
            select(Architecture.key, Architecture.config_hash)
            .where(Architecture.benchmark_id == benchmark_id)
            .order_by(Architecture.position)
        ).all()
        return [StoredKey(key, digest) for key, digest in rows]

    def add_architectures(self, benchmark_id: int, archs: Sequence[NewArchitecture]) -> None:
        """Insert architectures and their ground truth (one multi-row INSERT per table)."""
        rows = [
            Architecture(
                benchmark_id=benchmark_id,
                key=a.key,
                position=a.position,
                config=dict(a.config),
                config_hash=a.config_hash,
                n_layers=a.n_layers,
                hidden_size=a.hidden_size,
                params_total=a.params_total,
                params_nonembedding=a.params_nonembedding,
                summary=dict(a.summary),
            )
            for a in archs
        ]
        self.session.add_all(rows)
        self.session.flush()  # ids come back for the ground truth rows
        self.session.add_all(
            GroundTruth(architecture_id=row.id, metric=metric, value=float(value))
            for row, a in zip(rows, archs, strict=True)
            for metric, value in a.ground_truth.items()
        )
        self.session.flush()

    def architectures(self, benchmark_id: int) -> list[ArchitectureRow]:
        """Every architecture of a benchmark, in id order."""
        rows = self.session.scalars(
            select(Architecture)
            .where(Architecture.benchmark_id == benchmark_id)
            .order_by(Architecture.id)
        ).all()
        return [
            ArchitectureRow(
                a.id,
                a.key,
                a.position,
                dict(a.config),
                a.n_layers,
                a.hidden_size,
                a.params_total,
                a.params_nonembedding,
            )
            for a in rows
        ]

    def configs(self, benchmark_id: int) -> list[dict[str, Any]]:
        """The configs of a benchmark's architectures."""
        return [
            dict(c)
            for c in self.session.scalars(
                select(Architecture.config).where(Architecture.benchmark_id == benchmark_id)
            ).all()
        ]

    def architecture_ids_by_key(self, benchmark_id: int) -> dict[str, int]:
        """Architecture key -> id of a benchmark's architectures."""
        rows = self.session.execute(
            select(Architecture.key, Architecture.id).where(
                Architecture.benchmark_id == benchmark_id
            )
        ).all()
        return {key: arch_id for key, arch_id in rows}

    # ---------------------------------------------------------------- ground truth

    def ground_truth(self, architecture_ids: Iterable[int], metric: str) -> dict[int, float]:
        """Architecture id -> value of ``metric``, for the ``architecture_ids`` that have it."""
        rows = self.session.execute(
            select(GroundTruth.architecture_id, GroundTruth.value).where(
                GroundTruth.architecture_id.in_(list(architecture_ids)),
                GroundTruth.metric == metric,
            )
        ).all()
        return {arch_id: value for arch_id, value in rows}

    def truth_values(self, benchmark_id: int, metric: str) -> list[float]:
        """Every stored value of ``metric`` on a benchmark."""
        return list(
            self.session.scalars(
                select(GroundTruth.value)
                .join(Architecture, GroundTruth.architecture_id == Architecture.id)
                .where(Architecture.benchmark_id == benchmark_id, GroundTruth.metric == metric)
            ).all()
        )

    def metrics(self, benchmark_id: int) -> list[str]:
        """The ground-truth metrics stored for a benchmark, in the order they were first stored."""
        return list(
            self.session.scalars(
                select(GroundTruth.metric)
                .join(Architecture, GroundTruth.architecture_id == Architecture.id)
                .where(Architecture.benchmark_id == benchmark_id)
                .group_by(GroundTruth.metric)
                .order_by(func.min(GroundTruth.id))
            ).all()
        )
