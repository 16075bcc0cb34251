"""Proxies, input batches and evaluations: the stored results of scoring.

Every write here is insert-or-ignore then read back (``_upsert``): two coordinators writing the
same proxy, batch or evaluation at the same moment both succeed, and the first row stands.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from lpzero_queue.storage._models import Evaluation, InputBatch, Proxy
from lpzero_queue.storage._upsert import insert_ignore
from lpzero_queue.storage.queue import chunks
from lpzero_queue.storage.status import EvaluationStatus

__all__ = [
    "EVALUATION_RESULTS",
    "BatchKey",
    "EvaluationScope",
    "NewEvaluation",
    "NewProxy",
    "StoredEvaluation",
    "ensure_input_batch",
    "insert_evaluations",
    "insert_proxies",
    "proxy_ids",
    "stored_evaluations",
]

# Statuses that end an evaluation: its result stands and is reused.
EVALUATION_RESULTS = (
    EvaluationStatus.OK,
    EvaluationStatus.NONFINITE,
    EvaluationStatus.ERROR,
    EvaluationStatus.CONSTANT,
    EvaluationStatus.TIMEOUT,
)
_ERROR_CHARS = 2000  # an evaluation's error text is cut here


@dataclass(frozen=True)
class NewProxy:
    """A ``proxies`` row to insert."""

    expression: str
    expression_hash: str
    name: str | None
    kind: str
    origin: str
    direction: str


def proxy_ids(session: Session, texts: Sequence[str]) -> dict[str, int]:
    """Ids of the stored proxies among ``texts`` (expression text or baseline name)."""
    query = select(Proxy.expression, Proxy.id).where(Proxy.expression.in_(texts))
    return {text: proxy_id for text, proxy_id in session.execute(query)}


def insert_proxies(session: Session, proxies: Sequence[NewProxy]) -> None:
    """Insert proxies, skipping any whose expression (or name) is stored."""
    insert_ignore(session, Proxy, [asdict(p) for p in proxies])


@dataclass(frozen=True)
class BatchKey:
    """What identifies an input batch: benchmark, seed, shape and tokenizer."""

    benchmark_id: int
    seed: int
    batch_size: int
    seq_len: int
    tokenizer: str


def ensure_input_batch(session: Session, key: BatchKey, content_hash: str) -> InputBatch:
    """The ``input_batches`` row of ``key``; created with ``content_hash`` when new.

    The stored row is returned as it is: the caller compares its content hash.
    """
    query = select(InputBatch).filter_by(**asdict(key))
    row = session.scalar(query)
    if row is None:
        # Insert-or-ignore: two coordinators starting the same search at once make one row.
        insert_ignore(session, InputBatch, [{**asdict(key), "content_hash": content_hash}])
        row = session.scalars(query).one()
    return row


@dataclass(frozen=True)
class EvaluationScope:
    """What an evaluation was computed under, besides its proxy and architecture."""

    batch_id: int
    seed: int
    builder: str
    objective: str
    linear_scope: str


@dataclass(frozen=True)
class StoredEvaluation:
    """One stored evaluation's result."""

    proxy_id: int
    architecture_id: int
    seed: int
    score: float | None
    status: EvaluationStatus


def stored_evaluations(
    session: Session,
    scope: EvaluationScope,
    proxy_ids: Sequence[int],
    architecture_ids: Sequence[int],
    *,
    results_only: bool,
) -> list[StoredEvaluation]:
    """The evaluations of these proxies on these architectures under ``scope``.

    Args:
        results_only: only finished ones (:data:`EVALUATION_RESULTS`).
    """
    e = Evaluation
    query = select(e.proxy_id, e.architecture_id, e.score, e.status).where(
        e.proxy_id.in_(proxy_ids),
        e.architecture_id.in_(architecture_ids),
        e.batch_id == scope.batch_id,
        e.seed == scope.seed,
        e.builder == scope.builder,
        e.objective == scope.objective,
        e.linear_scope == scope.linear_scope,
    )
    if results_only:
        query = query.where(e.status.in_(EVALUATION_RESULTS))
    return [
        StoredEvaluation(pid, aid, scope.seed, score, EvaluationStatus(status))
        for pid, aid, score, status in session.execute(query).all()
    ]


@dataclass(frozen=True)
class NewEvaluation:
    """One result to store; its score is kept only when ``ok``."""

    proxy_id: int
    architecture_id: int
    score: float | None
    status: str
    error: str | None
    seconds: float
    device: str | None


def insert_evaluations(
    session: Session, scope: EvaluationScope, rows: Sequence[NewEvaluation], worker: str
) -> None:
    """Insert results (500 per statement); rows already present are left as they are.

    Insert-or-ignore on ``uq_evaluations_unit``: two coordinators (two resumes of one run, or two
    runs sharing evaluations) storing the same rows at once both succeed, and the first stands.
    """
    values = [
        {
            **asdict(scope),
            "proxy_id": r.proxy_id,
            "architecture_id": r.architecture_id,
            "score": r.score if r.status == EvaluationStatus.OK else None,
            "status": r.status,
            "error": (r.error or "")[:_ERROR_CHARS] or None,
            "seconds": r.seconds,
            "worker": worker,
            "device": r.device,
        }
        for r in rows
    ]
    for chunk in chunks(values):
        insert_ignore(session, Evaluation, chunk)
