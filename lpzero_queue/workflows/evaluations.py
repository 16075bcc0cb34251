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
from typing import TYPE_CHECKING, NamedTuple

from lpzero_queue.errors import LpzqError, clip
from lpzero_queue.proxies.scoring import ArchRef, ScoreRow, ScoringSetup, WorkUnit, shard
from lpzero_queue.proxies.spec import ProxySpec
from lpzero_queue.storage import EvaluationStatus, transaction
from lpzero_queue.storage.evaluations import (
    EVALUATION_RESULTS,
    BatchKey,
    EvaluationScope,
    NewEvaluation,
    NewProxy,
    ensure_input_batch,
    insert_evaluations,
    insert_proxies,
    stored_evaluations,
)
from lpzero_queue.storage.evaluations import proxy_ids as stored_proxy_ids

if TYPE_CHECKING:
    from lpzero_queue.execution.base import Executor
    from lpzero_queue.storage import Benchmark, InputBatch
    from lpzero_queue.storage.queue import Session, Sessions

# Statuses that end an evaluation: its result stands and is reused.
TERMINAL = EVALUATION_RESULTS


class StoredScore(NamedTuple):
    """A stored result: the score (None unless ``ok``) and the status."""

    score: float | None
    status: EvaluationStatus


class ScoreTable(dict[int, dict[int, dict[int, StoredScore]]]):
    """Stored results by proxy id, architecture id and seed."""

    def __missing__(self, proxy_id: int) -> dict[int, dict[int, StoredScore]]:
        return {}  # a proxy with nothing stored (nothing is added)

    def add(self, proxy_id: int, arch_id: int, seed: int, stored: StoredScore) -> None:
        """Record one result."""
        self.setdefault(proxy_id, {}).setdefault(arch_id, {})[seed] = stored

    def lookup(self, proxy_id: int, arch_id: int, seed: int) -> StoredScore | None:
        """The result of ``proxy_id`` on ``arch_id`` for ``seed``; None when not stored."""
        return self.get(proxy_id, {}).get(arch_id, {}).get(seed)


def _new_proxy(spec: ProxySpec, origin: str) -> NewProxy:
    return NewProxy(
        expression=spec.text,
        expression_hash=hashlib.sha256(spec.text.encode()).hexdigest(),
        name=spec.name,
        kind=spec.kind,
        origin="builtin" if spec.kind == "builtin" or spec.name else origin,
        direction=spec.direction,
    )


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
    found = stored_proxy_ids(session, texts)
    new = {s.text: s for s in specs if s.text not in found}
    if new:
        insert_proxies(session, [_new_proxy(s, origin) for s in new.values()])
        found = stored_proxy_ids(session, texts)
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

    key = BatchKey(bench.id, seed, setup.batch_size, setup.seq_len, TOKENIZERS[bench.space])
    digest = input_batch(bench.space, seed, setup.batch_size, setup.seq_len).content_hash
    row = ensure_input_batch(session, key, digest)
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

    def scope(self, seed: int) -> EvaluationScope:
        """What this job's evaluations for ``seed`` are computed under."""
        setup = self.setup
        return EvaluationScope(
            self.batch_ids[seed], seed, setup.builder, setup.objective, setup.linear_scope
        )

    def rows_for(self, session: Session, *, terminal_only: bool) -> ScoreTable:
        """Stored results of this job, as a table."""
        out = ScoreTable()
        ids = list(self.proxy_ids.values())
        arch_ids = [a.id for a in self.archs]
        for seed in self.batch_ids:
            for row in stored_evaluations(
                session, self.scope(seed), ids, arch_ids, results_only=terminal_only
            ):
                out.add(row.proxy_id, row.architecture_id, seed, StoredScore(row.score, row.status))
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
                if done.lookup(job.proxy_ids[p.text], ref.id, seed) is None
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
    sessions: Sessions,
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
    if not rows:
        return
    setup = unit.setup
    scope = EvaluationScope(batch_id, unit.seed, setup.builder, setup.objective, setup.linear_scope)
    new = [
        NewEvaluation(
            proxy_ids[r.proxy], r.arch_id, r.score, r.status, r.error, r.seconds, r.device
        )
        for r in rows
    ]
    with transaction(sessions) as s:
        insert_evaluations(s, scope, new, worker)


def score_missing(
    sessions: Sessions,
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
