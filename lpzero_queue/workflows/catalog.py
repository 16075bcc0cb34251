"""The benchmarks in the database: loading shipped and imported ones, looking them up, summaries.

Loading is transactional and idempotent: a benchmark is written whole or not at all, and loading
the same content again changes nothing. The SQL lives in
:class:`~lpzero_queue.storage.BenchmarkRepository`; this module decides what to store.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

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
from lpzero_queue.storage import (
    Benchmark,
    BenchmarkRepository,
    NewArchitecture,
    NewBenchmark,
    Session,
    Sessions,
    transaction,
)

__all__ = [
    "BenchmarkOverview",
    "LoadResult",
    "ValueRange",
    "benchmark_overview",
    "benchmark_space",
    "ensure_benchmark",
    "get_benchmark",
    "is_stored",
    "load_shipped_benchmark",
    "max_seq_len",
    "space_benchmarks",
    "store_benchmark",
]


@dataclass(frozen=True)
class LoadResult:
    """What a load did: whether the benchmark was new and how many architectures it holds."""

    name: str
    created: bool
    architectures: int


@dataclass(frozen=True)
class ValueRange:
    """Minimum, median and maximum of some values."""

    min: float
    median: float
    max: float


@dataclass(frozen=True)
class BenchmarkOverview:
    """What ``lpzq bench show`` prints (its ``--json`` is this record's fields, in order)."""

    name: str
    space: str
    architectures: int
    metric: str
    direction: str  # e.g. "higher is better"
    ground_truth: ValueRange | None  # of the benchmark's metric
    metrics: list[str]  # every stored metric, in the order first stored
    layers: dict[int, int]  # depth -> architectures
    hidden_size: dict[int, int]  # width -> architectures
    params_total: ValueRange | None
    params_nonembedding: ValueRange | None
    default_builder: str
    provenance: dict[str, Any]


def _summaries(space: str, record: ArchitectureRecord) -> dict[str, Any]:
    per_builder = {b: structural_summary(space, record.config, b) for b in BUILDERS[space]}
    return {"builders": per_builder, "extra": record.extra}


def _same_content(
    repo: BenchmarkRepository, existing: Benchmark, spec: BenchmarkSpec, hashes: list[str]
) -> int:
    """The stored architecture count when ``existing`` holds ``spec``'s content.

    Raises:
        LpzqError: the stored benchmark differs.
    """
    stored = repo.stored_keys(existing.id)
    same = (
        existing.space == spec.space
        and existing.metric == spec.metric
        and [(k.key, k.config_hash) for k in stored]
        == [(r.key, h) for r, h in zip(spec.records, hashes, strict=True)]
    )
    if not same:
        raise LpzqError(
            f"benchmark '{spec.name}' already exists with different content; choose another --name"
        )
    return len(stored)


def _new_architectures(
    spec: BenchmarkSpec, hashes: list[str], progress: Callable[[int, int], None] | None
) -> list[NewArchitecture]:
    """The rows of ``spec``'s records, their sizes worked out by the space's default builder."""
    default = resolve_builder(spec.space)
    archs = []
    for i, (record, digest) in enumerate(zip(spec.records, hashes, strict=True), start=1):
        summary = _summaries(spec.space, record)
        if progress is not None:
            progress(i, len(spec.records))
        main = summary["builders"][default]
        archs.append(
            NewArchitecture(
                key=record.key,
                position=record.position,
                config=record.config,
                config_hash=digest,
                n_layers=main["n_layers"],
                hidden_size=main["hidden_size"],
                params_total=main["params_total"],
                params_nonembedding=main["params_nonembedding"],
                summary=summary,
                ground_truth=record.ground_truth,
            )
        )
    return archs


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
    repo = BenchmarkRepository(session)
    existing = repo.find(spec.name)
    hashes = [config_hash(spec.space, r.config) for r in spec.records]
    if existing is not None:
        count = _same_content(repo, existing, spec, hashes)
        return LoadResult(spec.name, created=False, architectures=count)
    new = NewBenchmark(
        name=spec.name,
        space=spec.space,
        metric=spec.metric,
        direction="higher" if spec.higher_is_better else "lower",
        description=spec.description,
        provenance=dict(spec.provenance),
    )
    # Insert-or-ignore: a coordinator loading the same benchmark at the same moment wins, and
    # this call then compares against what it stored (PostgreSQL waits for its commit).
    if not repo.create_if_absent(new):
        return store_benchmark(session, spec)
    bench_id = repo.id_of(spec.name)
    assert bench_id is not None
    repo.add_architectures(bench_id, _new_architectures(spec, hashes, progress))
    return LoadResult(spec.name, created=True, architectures=len(spec.records))


def load_shipped_benchmark(
    sessions: Sessions,
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
    repo = BenchmarkRepository(session)
    bench = repo.find(name)
    if bench is None:
        stored = repo.names()
        known = ", ".join(stored) if stored else "none"
        hint = f"; shipped ones load with: lpzq bench load {'|'.join(SHIPPED)}"
        raise NotFoundError(f"no benchmark '{name}' in the database (stored: {known}){hint}")
    return bench


def ensure_benchmark(
    sessions: Sessions,
    name: str,
    say: Callable[[str], None] = print,
    progress: Callable[[int, int], None] | None = None,
) -> Benchmark:
    """The benchmark ``name``, loading a shipped one first when it is missing (saying so).

    Args:
        progress: as for :func:`store_benchmark`, when a shipped benchmark is loaded.
    """
    with transaction(sessions) as session:
        bench = BenchmarkRepository(session).find(name)
        if bench is not None:
            return bench
    if name not in SHIPPED:
        with transaction(sessions) as session:
            return get_benchmark(session, name)
    result = load_shipped_benchmark(sessions, name, progress)
    say(f"lpzq: loaded the shipped benchmark '{name}' ({result.architectures} architectures)")
    with transaction(sessions) as session:
        return get_benchmark(session, name)


def is_stored(sessions: Sessions, name: str) -> bool:
    """Whether a benchmark called ``name`` is in the database."""
    with transaction(sessions) as session:
        return BenchmarkRepository(session).id_of(name) is not None


def benchmark_space(sessions: Sessions, name: str) -> str | None:
    """The space of a stored or shipped benchmark, without loading anything; None if unknown."""
    from lpzero_queue.benchmarks.records import shipped_space

    with transaction(sessions) as session:
        stored = BenchmarkRepository(session).space_of(name)
    return stored or shipped_space(name)


def space_benchmarks(sessions: Sessions, space: str) -> list[str]:
    """Every benchmark of ``space``, stored or shipped, by name."""
    from lpzero_queue.benchmarks.records import shipped_space

    with transaction(sessions) as session:
        stored = BenchmarkRepository(session).names(space)
    return sorted({*stored, *(n for n in SHIPPED if shipped_space(n) == space)})


def max_seq_len(session: Session, bench: Benchmark) -> int:
    """The longest proxy sequence every architecture of ``bench`` accepts (its shortest table of
    learned positions: ``tgt_len`` for GPT-2)."""
    configs = BenchmarkRepository(session).configs(bench.id)
    return min(longest_sequence(bench.space, c) for c in configs)


def _range(values: Sequence[float]) -> ValueRange:
    return ValueRange(min(values), statistics.median(values), max(values))


def benchmark_overview(session: Session, bench: Benchmark) -> BenchmarkOverview:
    """Count, metric, direction, ground-truth range and structural summary of a benchmark."""
    repo = BenchmarkRepository(session)
    archs = repo.architectures(bench.id)
    truth = repo.truth_values(bench.id, bench.metric)
    return BenchmarkOverview(
        name=bench.name,
        space=bench.space,
        architectures=len(archs),
        metric=bench.metric,
        direction=f"{bench.direction} is better",
        ground_truth=_range(truth) if truth else None,
        metrics=repo.metrics(bench.id),
        layers=dict(sorted(Counter(a.n_layers for a in archs).items())),
        hidden_size=dict(sorted(Counter(a.hidden_size for a in archs).items())),
        params_total=_range([a.params_total for a in archs]) if archs else None,
        params_nonembedding=_range([a.params_nonembedding for a in archs]) if archs else None,
        default_builder=resolve_builder(bench.space),
        provenance=dict(bench.provenance),
    )
