"""The reports repository: correlations written by reports, and what reports read back.

Reports (``lpzq proxy eval``, ``lpzq proxy transfer``, ``lpzq report``) store one correlation row
per proxy and read back runs, their individuals, held-out correlations and the evaluations behind
them. Every statement they need lives here; callers get ORM rows or the small records below.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lpzero_queue.storage._models import (
    Benchmark,
    Correlation,
    Evaluation,
    Individual,
    InputBatch,
    Proxy,
    SearchRun,
)
from lpzero_queue.storage.status import EvaluationStatus

__all__ = [
    "IndividualOutcome",
    "NewCorrelation",
    "ReportRepository",
    "RunBest",
    "RunIdSpan",
    "SeedScore",
]


@dataclass(frozen=True)
class NewCorrelation:
    """A correlation row to store: one proxy on one benchmark split, and how it was obtained."""

    proxy_id: int
    benchmark_id: int
    split: str
    metric: str
    builder: str
    objective: str
    linear_scope: str
    seeds: Sequence[int]
    batch_hashes: Sequence[str]
    n: int
    spearman: float | None
    kendall: float | None
    kendall_tiefair: float | None
    within_kendall: float | None
    within_tiefair: float | None
    within_fine_tiefair: float | None
    top10_overlap: float | None
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class IndividualOutcome:
    """How one individual of a search run came out."""

    generation: int
    status: str  # an IndividualStatus value
    fitness: float | None
    pruning_rule: str | None
    seconds: float | None


@dataclass(frozen=True)
class RunIdSpan:
    """The stored search run ids: lowest, highest and how many (None, None, 0 when none)."""

    lowest: int | None
    highest: int | None
    count: int


@dataclass(frozen=True)
class RunBest:
    """A search run's status and the expression of its best proxy (None before it has one)."""

    status: str  # a RunStatus value
    expression: str | None


@dataclass(frozen=True)
class SeedScore:
    """One ok evaluation: an architecture's score for a seed, on the batch of that hash."""

    architecture_id: int
    seed: int
    batch_hash: str
    score: float | None


class ReportRepository:
    """Correlations and the run history reports read, in the caller's session."""

    def __init__(self, session: Session) -> None:
        self.session = session

    # ---------------------------------------------------------------- correlations

    def add_correlations(self, rows: Iterable[NewCorrelation]) -> None:
        """Store correlation rows (``computed_at`` is set by the database)."""
        self.session.add_all(
            Correlation(
                **{
                    **asdict(r),  # the record's fields are the table's columns
                    "seeds": list(r.seeds),
                    "batch_hashes": list(r.batch_hashes),
                    "details": dict(r.details),
                }
            )
            for r in rows
        )

    def test_split_correlations(
        self, benchmark_id: int, proxy_ids: Iterable[int]
    ) -> list[Correlation]:
        """Correlations of ``proxy_ids`` on a ``test:...`` split of a benchmark, newest first."""
        return list(
            self.session.scalars(
                select(Correlation)
                .where(
                    Correlation.benchmark_id == benchmark_id,
                    Correlation.proxy_id.in_(list(proxy_ids)),
                    Correlation.split.like("test:%"),
                )
                .order_by(Correlation.computed_at.desc(), Correlation.id.desc())
            ).all()
        )

    def correlation_scores(
        self, c: Correlation, architecture_ids: Iterable[int]
    ) -> list[SeedScore]:
        """The ok evaluations behind correlation ``c`` on ``architecture_ids``: its proxy,
        builder, objective and linear scope, on its seeds and batches."""
        rows = self.session.execute(
            select(
                Evaluation.architecture_id,
                Evaluation.seed,
                InputBatch.content_hash,
                Evaluation.score,
            )
            .join(InputBatch, InputBatch.id == Evaluation.batch_id)
            .where(
                Evaluation.proxy_id == c.proxy_id,
                Evaluation.architecture_id.in_(list(architecture_ids)),
                Evaluation.builder == c.builder,
                Evaluation.objective == c.objective,
                Evaluation.linear_scope == c.linear_scope,
                Evaluation.seed.in_(list(c.seeds or [])),
                InputBatch.content_hash.in_(list(c.batch_hashes or [])),
                Evaluation.status == EvaluationStatus.OK,
            )
        ).all()
        return [SeedScore(*row) for row in rows]

    # ---------------------------------------------------------------- proxies

    def proxy(self, proxy_id: int) -> Proxy | None:
        """The proxy row of ``proxy_id``."""
        return self.session.get(Proxy, proxy_id)

    def proxy_labels(self, names: Sequence[str]) -> dict[int, str]:
        """Proxy id -> name (or expression) of the proxies named, or written, as ``names``."""
        rows = self.session.execute(
            select(Proxy.id, Proxy.name, Proxy.expression).where(
                Proxy.name.in_(names) | Proxy.expression.in_(names)
            )
        ).all()
        return {pid: name or expression for pid, name, expression in rows}

    # ---------------------------------------------------------------- search runs

    def run(self, run_id: int) -> SearchRun | None:
        """The search run ``run_id``."""
        return self.session.get(SearchRun, run_id)

    def run_benchmark(self, run: SearchRun) -> Benchmark:
        """The benchmark a run searched."""
        bench = self.session.get(Benchmark, run.benchmark_id)
        assert bench is not None
        return bench

    def run_ids(self) -> RunIdSpan:
        """The span of stored run ids."""
        lo, hi, count = self.session.execute(
            select(func.min(SearchRun.id), func.max(SearchRun.id), func.count(SearchRun.id))
        ).one()
        return RunIdSpan(lo, hi, count)

    def run_best(self, run_id: int) -> RunBest | None:
        """A run's status and best expression; None for an unknown run."""
        row = self.session.execute(
            select(SearchRun.status, Proxy.expression)
            .outerjoin(Proxy, Proxy.id == SearchRun.best_proxy_id)
            .where(SearchRun.id == run_id)
        ).one_or_none()
        return None if row is None else RunBest(row[0], row[1])

    def runs_like(self, run: SearchRun) -> list[SearchRun]:
        """The other runs of ``run``'s benchmark and seed, newest first."""
        return list(
            self.session.scalars(
                select(SearchRun)
                .where(
                    SearchRun.benchmark_id == run.benchmark_id,
                    SearchRun.seed == run.seed,
                    SearchRun.id != run.id,
                )
                .order_by(SearchRun.id.desc())
            ).all()
        )

    def individual_outcomes(self, run_id: int) -> list[IndividualOutcome]:
        """Every individual of a run, by generation and slot."""
        rows = self.session.execute(
            select(
                Individual.generation,
                Individual.status,
                Individual.fitness,
                Individual.pruning_rule,
                Individual.seconds,
            )
            .where(Individual.run_id == run_id)
            .order_by(Individual.generation, Individual.slot)
        ).all()
        return [IndividualOutcome(*row) for row in rows]
