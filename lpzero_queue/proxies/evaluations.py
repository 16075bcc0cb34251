"""Stored evaluations: score what is missing through an executor, reuse what is in the database.

The unit of stored work is one row of ``evaluations``: (proxy, architecture, input batch, seed,
builder, objective, linear scope). Reports and searches both go through :func:`score_missing`, so
a proxy scored once on an architecture under the same setup is never computed again.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from lpzero_queue.errors import LpzqError, clip
from lpzero_queue.execution.base import Executor
from lpzero_queue.proxies.scoring import ArchRef, ScoreRow, ScoringSetup, WorkUnit, shard
from lpzero_queue.proxies.spec import ProxySpec
from lpzero_queue.storage import (
    Benchmark,
    Evaluation,
    InputBatch,
    Proxy,
    insert_ignore,
    transaction,
)

_CHUNK = 500  # rows per INSERT statement

# Statuses that end an evaluation: its result stands and is reused.
TERMINAL = ("ok", "nonfinite", "error", "constant", "timeout")

# proxy_id -> arch_id -> seed -> (score or None, status)
ScoreTable = dict[int, dict[int, dict[int, tuple[float | None, str]]]]


def _proxy_values(spec: ProxySpec, origin: str) -> dict[str, Any]:
    return {
        "expression": spec.text,
        "expression_hash": hashlib.sha256(spec.text.encode()).hexdigest(),
        "name": spec.name,
        "kind": spec.kind,
        "origin": "builtin" if spec.kind == "builtin" or spec.name else origin,
        "direction": spec.direction,
    }


def ensure_proxy(session: Session, spec: ProxySpec, origin: str = "user") -> int:
    """The id of the proxy row for ``spec``, inserting it when new (race-free)."""
    return ensure_proxies(session, [spec], origin)[spec.text]


def ensure_proxies(
    session: Session, specs: Sequence[ProxySpec], origin: str = "user"
) -> dict[str, int]:
    """Ids of many proxies, inserting the new ones.

    Insert-or-ignore, then read back: a coordinator that inserts the same proxy at the same
    moment makes one row, and both get its id.
    """
    texts = list(dict.fromkeys(s.text for s in specs))

    def stored() -> dict[str, int]:
        query = select(Proxy.expression, Proxy.id).where(Proxy.expression.in_(texts))
        return dict(session.execute(query).tuples().all())

    found = stored()
    new = {s.text: s for s in specs if s.text not in found}
    if new:
        insert_ignore(session, Proxy, [_proxy_values(s, origin) for s in new.values()])
        found = stored()
    missing = [t for t in texts if t not in found]
    if missing:  # only a clash on another unique column (a name taken by another expression)
        raise LpzqError(f"proxy {clip(missing[0])} clashes with a stored proxy of the same name")
    return found


def ensure_batch(session: Session, bench: Benchmark, setup: ScoringSetup, seed: int) -> InputBatch:
    """The input_batches row for (benchmark, seed, shape), created with its content hash.

    Raises:
        RuntimeError: a stored batch's content hash differs from the batch made now (the
            tokenizer or text changed): its stored scores would no longer be comparable.
    """
    from lpzero_queue.benchmarks.batches import TOKENIZERS
    from lpzero_queue.proxies.scoring import input_batch

    tokenizer = TOKENIZERS[bench.space]
    key = {
        "benchmark_id": bench.id,
        "seed": seed,
        "batch_size": setup.batch_size,
        "seq_len": setup.seq_len,
        "tokenizer": tokenizer,
    }
    query = select(InputBatch).filter_by(**key)
    row = session.scalar(query)
    digest = input_batch(bench.space, seed, setup.batch_size, setup.seq_len).content_hash
    if row is None:
        # Insert-or-ignore: two coordinators starting the same search at once make one row.
        insert_ignore(session, InputBatch, [{**key, "content_hash": digest}])
        row = session.scalars(query).one()
    if row.content_hash != digest:
        raise RuntimeError(
            f"input batch {row.id} changed content ({row.content_hash[:12]} -> {digest[:12]}); "
            "the tokenizer or text differs from when it was stored"
        )
    return row


@dataclass(frozen=True)
class Job:
    """What to score: proxies (with their ids) on architectures, for seeds, under a setup."""

    setup: ScoringSetup
    proxies: tuple[ProxySpec, ...]
    proxy_ids: dict[str, int]
    archs: tuple[ArchRef, ...]
    batch_ids: dict[int, int]  # seed -> input_batches.id

    def rows_for(self, session: Session, *, terminal_only: bool) -> ScoreTable:
        """Stored results of this job, as a table."""
        out: ScoreTable = defaultdict(lambda: defaultdict(dict))
        ids = list(self.proxy_ids.values())
        arch_ids = [a.id for a in self.archs]
        for seed, batch_id in self.batch_ids.items():
            query = select(
                Evaluation.proxy_id,
                Evaluation.architecture_id,
                Evaluation.score,
                Evaluation.status,
            ).where(
                Evaluation.proxy_id.in_(ids),
                Evaluation.architecture_id.in_(arch_ids),
                Evaluation.batch_id == batch_id,
                Evaluation.seed == seed,
                Evaluation.builder == self.setup.builder,
                Evaluation.objective == self.setup.objective,
                Evaluation.linear_scope == self.setup.linear_scope,
            )
            if terminal_only:
                query = query.where(Evaluation.status.in_(TERMINAL))
            for pid, aid, score, status in session.execute(query).all():
                out[pid][aid][seed] = (score, status)
        return out


def plan_units(job: Job, done: ScoreTable, shard_size: int) -> list[WorkUnit]:
    """Units for the missing evaluations: per seed, shards of architectures with their proxies."""
    kinds = {p.text: p.kind for p in job.proxies}
    units: list[WorkUnit] = []
    for seed in job.batch_ids:
        missing: dict[tuple[str, ...], list[ArchRef]] = defaultdict(list)
        for ref in job.archs:
            todo = tuple(
                p.text
                for p in job.proxies
                if seed not in done.get(job.proxy_ids[p.text], {}).get(ref.id, {})
            )
            if todo:
                missing[todo].append(ref)
        for todo, refs in missing.items():
            exprs = tuple(t for t in todo if kinds[t] == "expression")
            names = tuple(t for t in todo if kinds[t] == "builtin")
            units.extend(
                WorkUnit(job.setup, seed, chunk, exprs, names) for chunk in shard(refs, shard_size)
            )
    return units


def store_rows(
    sessions: sessionmaker[Session],
    unit: WorkUnit,
    rows: Sequence[ScoreRow],
    proxy_ids: dict[str, int],
    batch_id: int,
    worker: str,
) -> None:
    """Write one unit's rows in one transaction; rows already present are left as they are.

    Insert-or-ignore on ``uq_evaluations_unit``: two coordinators (two resumes of one run, or two
    runs sharing evaluations) storing the same rows at once both succeed, and the first stands.
    """
    values = [
        {
            "proxy_id": proxy_ids[r.proxy],
            "architecture_id": r.arch_id,
            "batch_id": batch_id,
            "seed": unit.seed,
            "builder": unit.setup.builder,
            "objective": unit.setup.objective,
            "linear_scope": unit.setup.linear_scope,
            "score": r.score if r.status == "ok" else None,
            "status": r.status,
            "error": (r.error or "")[:2000] or None,
            "seconds": r.seconds,
            "worker": worker,
            "device": r.device,
        }
        for r in rows
    ]
    if not values:
        return
    with transaction(sessions) as s:
        for i in range(0, len(values), _CHUNK):
            insert_ignore(s, Evaluation, values[i : i + _CHUNK])


def score_missing(
    sessions: sessionmaker[Session],
    job: Job,
    executor: Executor,
    *,
    shard_size: int = 25,
    progress: Callable[[int, int], None] | None = None,
) -> ScoreTable:
    """Compute the evaluations of ``job`` that are not stored yet, then return all of them."""
    with transaction(sessions) as s:
        done = job.rows_for(s, terminal_only=True)
    units = plan_units(job, done, shard_size)
    for i, (unit, rows) in enumerate(executor.run(units), start=1):
        store_rows(sessions, unit, rows, job.proxy_ids, job.batch_ids[unit.seed], executor.name)
        if progress:
            progress(i, len(units))
    with transaction(sessions) as s:
        return job.rows_for(s, terminal_only=True)
