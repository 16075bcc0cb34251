"""The benchmarks in the database: loading shipped and imported ones, looking them up, summaries.

Loading is transactional and idempotent: a benchmark is written whole or not at all, and loading
the same content again changes nothing.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from lpzero_queue.benchmarks.builders import (
    BUILDERS,
    longest_sequence,
    resolve_builder,
    structural_summary,
)
from lpzero_queue.benchmarks.records import (
    SHIPPED,
    ArchitectureRecord,
    BenchmarkSpec,
    config_hash,
    load_shipped,
)
from lpzero_queue.errors import LpzqError, NotFoundError
from lpzero_queue.storage import Architecture, Benchmark, GroundTruth, insert_ignore, transaction


@dataclass(frozen=True)
class LoadResult:
    """What a load did: whether the benchmark was new and how many architectures it holds."""

    name: str
    created: bool
    architectures: int


def _summaries(space: str, record: ArchitectureRecord) -> dict[str, Any]:
    per_builder = {b: structural_summary(space, record.config, b) for b in BUILDERS[space]}
    return {"builders": per_builder, "extra": record.extra}


def store_benchmark(
    session: Session, spec: BenchmarkSpec, progress: Callable[[int, int], None] | None = None
) -> LoadResult:
    """Write a benchmark, its architectures and ground truth, unless identical content is stored.

    Args:
        progress: called with (architectures done, total) while their sizes are worked out
            (the slow part: one meta-device model per record and builder).

    Raises:
        LpzqError: a benchmark of that name exists with different content.
    """
    existing = session.scalar(select(Benchmark).where(Benchmark.name == spec.name))
    hashes = [config_hash(spec.space, r.config) for r in spec.records]
    if existing is not None:
        stored = session.execute(
            select(Architecture.key, Architecture.config_hash)
            .where(Architecture.benchmark_id == existing.id)
            .order_by(Architecture.position)
        ).all()
        same = (
            existing.space == spec.space
            and existing.metric == spec.metric
            and [tuple(row) for row in stored]
            == [(r.key, h) for r, h in zip(spec.records, hashes, strict=True)]
        )
        if not same:
            raise LpzqError(
                f"benchmark '{spec.name}' already exists with different content; "
                "choose another --name"
            )
        return LoadResult(spec.name, created=False, architectures=len(stored))

    values = {
        "name": spec.name,
        "space": spec.space,
        "metric": spec.metric,
        "direction": "higher" if spec.higher_is_better else "lower",
        "description": spec.description,
        "provenance": dict(spec.provenance),
    }
    # Insert-or-ignore: a coordinator loading the same benchmark at the same moment wins, and
    # this call then compares against what it stored (PostgreSQL waits for its commit).
    if not insert_ignore(session, Benchmark, [values], index_elements=["name"]):
        return store_benchmark(session, spec)
    bench = session.scalars(select(Benchmark).where(Benchmark.name == spec.name)).one()
    default = resolve_builder(spec.space)
    archs: list[Architecture] = []
    for i, (record, digest) in enumerate(zip(spec.records, hashes, strict=True), start=1):
        summary = _summaries(spec.space, record)
        if progress is not None:
            progress(i, len(spec.records))
        main = summary["builders"][default]
        archs.append(
            Architecture(
                benchmark_id=bench.id,
                key=record.key,
                position=record.position,
                config=record.config,
                config_hash=digest,
                n_layers=main["n_layers"],
                hidden_size=main["hidden_size"],
                params_total=main["params_total"],
                params_nonembedding=main["params_nonembedding"],
                summary=summary,
            )
        )
    session.add_all(archs)
    session.flush()  # one multi-row INSERT; ids come back for the ground truth rows
    session.add_all(
        GroundTruth(architecture_id=arch.id, metric=metric, value=float(value))
        for arch, record in zip(archs, spec.records, strict=True)
        for metric, value in record.ground_truth.items()
    )
    session.flush()
    return LoadResult(spec.name, created=True, architectures=len(spec.records))


def load_shipped_benchmark(
    sessions: sessionmaker[Session],
    name: str,
    progress: Callable[[int, int], None] | None = None,
) -> LoadResult:
    """Load a shipped benchmark (``flexibert`` or ``gpt2-wt103``) in one transaction."""
    spec = load_shipped(name)
    with transaction(sessions) as session:
        return store_benchmark(session, spec, progress)


def get_benchmark(session: Session, name: str) -> Benchmark:
    """The stored benchmark called ``name``.

    Raises:
        NotFoundError: naming the stored and the shipped benchmarks.
    """
    bench = session.scalar(select(Benchmark).where(Benchmark.name == name))
    if bench is None:
        stored = session.scalars(select(Benchmark.name).order_by(Benchmark.name)).all()
        known = ", ".join(stored) if stored else "none"
        hint = f"; shipped ones load with: lpzq bench load {'|'.join(SHIPPED)}"
        raise NotFoundError(f"no benchmark '{name}' in the database (stored: {known}){hint}")
    return bench


def ensure_benchmark(
    sessions: sessionmaker[Session],
    name: str,
    say: Callable[[str], None] = print,
    progress: Callable[[int, int], None] | None = None,
) -> Benchmark:
    """The benchmark ``name``, loading a shipped one first when it is missing (saying so).

    Args:
        progress: as for :func:`store_benchmark`, when a shipped benchmark is loaded.
    """
    with transaction(sessions) as session:
        bench = session.scalar(select(Benchmark).where(Benchmark.name == name))
        if bench is not None:
            return bench
    if name not in SHIPPED:
        with transaction(sessions) as session:
            return get_benchmark(session, name)
    result = load_shipped_benchmark(sessions, name, progress)
    say(f"lpzq: loaded the shipped benchmark '{name}' ({result.architectures} architectures)")
    with transaction(sessions) as session:
        return get_benchmark(session, name)


def is_stored(sessions: sessionmaker[Session], name: str) -> bool:
    """Whether a benchmark called ``name`` is in the database."""
    with transaction(sessions) as session:
        return session.scalar(select(Benchmark.id).where(Benchmark.name == name)) is not None


def benchmark_space(sessions: sessionmaker[Session], name: str) -> str | None:
    """The space of a stored or shipped benchmark, without loading anything; None if unknown."""
    from lpzero_queue.benchmarks.records import shipped_space

    with transaction(sessions) as session:
        stored = session.scalar(select(Benchmark.space).where(Benchmark.name == name))
    return stored or shipped_space(name)


def max_seq_len(session: Session, bench: Benchmark) -> int:
    """The longest proxy sequence every architecture of ``bench`` accepts (its shortest table of
    learned positions: ``tgt_len`` for GPT-2)."""
    configs = session.scalars(
        select(Architecture.config).where(Architecture.benchmark_id == bench.id)
    ).all()
    return min(longest_sequence(bench.space, c) for c in configs)


def _range(values: Sequence[float]) -> dict[str, float]:
    return {
        "min": min(values),
        "median": statistics.median(values),
        "max": max(values),
    }


def benchmark_overview(session: Session, bench: Benchmark) -> dict[str, Any]:
    """Count, metric, direction, ground-truth range and structural summary of a benchmark."""
    archs = session.scalars(select(Architecture).where(Architecture.benchmark_id == bench.id)).all()
    truth = session.scalars(
        select(GroundTruth.value)
        .join(Architecture, GroundTruth.architecture_id == Architecture.id)
        .where(Architecture.benchmark_id == bench.id, GroundTruth.metric == bench.metric)
    ).all()
    metrics = session.scalars(
        select(GroundTruth.metric)
        .join(Architecture, GroundTruth.architecture_id == Architecture.id)
        .where(Architecture.benchmark_id == bench.id)
        .group_by(GroundTruth.metric)
        .order_by(func.min(GroundTruth.id))
    ).all()
    return {
        "name": bench.name,
        "space": bench.space,
        "architectures": len(archs),
        "metric": bench.metric,
        "direction": f"{bench.direction} is better",
        "ground_truth": _range(truth) if truth else None,
        "metrics": list(metrics),
        "layers": dict(sorted(Counter(a.n_layers for a in archs).items())),
        "hidden_size": dict(sorted(Counter(a.hidden_size for a in archs).items())),
        "params_total": _range([a.params_total for a in archs]) if archs else None,
        "params_nonembedding": _range([a.params_nonembedding for a in archs]) if archs else None,
        "default_builder": resolve_builder(bench.space),
        "provenance": bench.provenance,
    }
