"""Scoring one generation of a search: probe set first, then the rest of the search split.

Candidates are scored through the run's executor (evaluations stored and reused), the dynamic
pruning rules are applied on the probe set, and every new individual is written with its
outcome in one transaction per generation.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lpzero_queue.execution.base import Executor
from lpzero_queue.proxies.scoring import ArchRef
from lpzero_queue.proxies.spec import ProxySpec
from lpzero_queue.search.generation import Candidate
from lpzero_queue.search.pruning import (
    correlation_fitness,
    dynamic_prune,
    hard_failure,
    rule_status,
    search_fitness,
)
from lpzero_queue.search.selection import Member
from lpzero_queue.storage import (
    IndividualRecord,
    IndividualStatus,
    RunLease,
    RunRepository,
    Sessions,
    transaction,
)
from lpzero_queue.workflows.evaluations import Job, ScoreTable, ensure_proxies, score_missing

if TYPE_CHECKING:
    from lpzero_queue.workflows.search_run import RunContext


@dataclass(frozen=True)
class Outcome:
    """How one candidate came out."""

    fitness: float | None  # None unless status is ok
    status: IndividualStatus
    rule: str | None  # the pruning rule that rejected it
    probe: float | None = None  # its fitness on the probe set, when it was scored there


def _rejected(rule: str, probe: float | None = None) -> Outcome:
    return Outcome(None, IndividualStatus(rule_status(rule)), rule, probe)


class Evaluator:
    """Scores one generation's candidates: probe set first, then the rest of the search split.

    New individuals are written through ``runs`` as the holder of ``lease`` (fenced writes).
    """

    def __init__(
        self,
        sessions: Sessions,
        ctx: RunContext,
        executor: Executor,
        runs: RunRepository,
        lease: RunLease,
    ) -> None:
        self.sessions, self.ctx, self.executor = sessions, ctx, executor
        self.runs, self.lease = runs, lease
        self.evaluated = 0
        self.pruned = 0

    def _score(
        self, texts: Sequence[str], archs: Sequence[ArchRef]
    ) -> tuple[dict[str, int], ScoreTable]:
        specs = [ProxySpec("expression", t, "higher") for t in dict.fromkeys(texts)]
        with transaction(self.sessions) as s:
            ids = ensure_proxies(s, specs, origin="searched")
        job = Job(
            self.ctx.setup,
            tuple(specs),
            ids,
            tuple(archs),
            {self.ctx.config.seed: self.ctx.batch_id},
        )
        shard_size = max(1, math.ceil(len(archs) / 4))
        return ids, score_missing(self.sessions, job, self.executor, shard_size=shard_size)

    def _results(
        self, table: ScoreTable, pid: int, archs: Sequence[ArchRef]
    ) -> tuple[list[float | None], list[str]]:
        seed = self.ctx.config.seed
        pairs = [table.get(pid, {}).get(a.id, {}).get(seed, (None, "error")) for a in archs]
        return [p[0] for p in pairs], [p[1] for p in pairs]

    def validate(
        self, texts: Sequence[str], archs: Sequence[ArchRef], truth: Sequence[float]
    ) -> list[float | None]:
        """Correlation (the run's fitness metric) of each expression on held-back architectures.

        None for an expression that fails or is constant on any of them.
        """
        ids, table = self._score(texts, archs)
        out: list[float | None] = []
        for text in texts:
            scores, statuses = self._results(table, ids[text], archs)
            if hard_failure(scores, statuses) is not None:
                out.append(None)
                continue
            out.append(
                correlation_fitness([float(v) for v in scores], truth, self.ctx.config.fitness)  # type: ignore[arg-type]
            )
        return out

    def evaluate(
        self,
        planned: Sequence[Candidate],
        stored: dict[tuple[int, int], IndividualRecord],
        population: Sequence[Member],
    ) -> list[tuple[Candidate, float | None]]:
        """Outcome of every planned candidate; new ones are scored and written."""
        ctx, cfg = self.ctx, self.ctx.config
        outcomes: dict[tuple[int, int], Outcome] = {}
        todo = [c for c in planned if (c.generation, c.slot) not in stored]
        live = [c for c in todo if c.rule is None]
        for c in todo:
            if c.rule is not None:
                outcomes[(c.generation, c.slot)] = _rejected(c.rule)
        pop_fitness = [m.fitness for m in population]
        probe_archs = ctx.archs[: ctx.probe] if ctx.probe else ()
        survivors = live
        probe_fit: dict[tuple[int, int], float | None] = {}
        started = time.perf_counter()
        if probe_archs and live:
            ids, table = self._score([c.canonical for c in live], probe_archs)
            survivors = []
            for c in live:
                scores, statuses = self._results(table, ids[c.canonical], probe_archs)
                rule = dynamic_prune(scores, statuses, ctx.truth[: ctx.probe], pop_fitness, cfg)
                ok = [v for v in scores if v is not None]
                probe_fit[(c.generation, c.slot)] = (
                    correlation_fitness(ok, ctx.truth[: ctx.probe], cfg.fitness)
                    if len(ok) == len(scores) and rule is None
                    else None
                )
                if rule is None:
                    survivors.append(c)
                else:
                    outcomes[(c.generation, c.slot)] = _rejected(rule)
        if survivors:
            ids, table = self._score([c.canonical for c in survivors], ctx.archs)
            for c in survivors:
                scores, statuses = self._results(table, ids[c.canonical], ctx.archs)
                rule = hard_failure(scores, statuses)
                fitness = None
                if rule is None:
                    finite = [float(v) for v in scores if v is not None]
                    fitness = search_fitness(
                        finite,
                        ctx.truth,
                        cfg.fitness,
                        strata=ctx.strata,
                        within_weight=cfg.within_weight,
                    )
                    if fitness is None:
                        rule = "all_identical"
                key = (c.generation, c.slot)
                if rule is None:
                    outcomes[key] = Outcome(fitness, IndividualStatus.OK, None, probe_fit.get(key))
                else:
                    outcomes[key] = _rejected(rule, probe_fit.get(key))
        seconds = (time.perf_counter() - started) / max(1, len(live))
        self._write(todo, outcomes, seconds)
        result = []
        for c in planned:
            key = (c.generation, c.slot)
            if key in stored:
                result.append((c, stored[key].fitness))
            else:
                result.append((c, outcomes[key].fitness))
        return result

    def _write(
        self,
        todo: Sequence[Candidate],
        outcomes: dict[tuple[int, int], Outcome],
        seconds: float,
    ) -> None:
        if not todo:
            return
        texts = [c.canonical for c in todo]
        specs = [ProxySpec("expression", t, "higher") for t in dict.fromkeys(texts)]
        with transaction(self.sessions) as s:
            ids = ensure_proxies(s, specs, origin="searched")
        rows = []
        for c in todo:
            out = outcomes[(c.generation, c.slot)]
            rows.append(
                IndividualRecord(
                    generation=c.generation,
                    slot=c.slot,
                    proxy_id=ids[c.canonical],
                    genotype=str(c.genotype),
                    parents=tuple((int(g), int(slot)) for g, slot in c.parents),
                    seed=c.seed,
                    fitness=out.fitness,
                    probe_fitness=out.probe,
                    status=out.status,
                    pruning_rule=out.rule,
                    seconds=seconds if c.rule is None else 0.0,
                )
            )
        self.runs.add_individuals(self.lease, rows)  # with a heartbeat; refused once taken over
        ok = sum(r.status == IndividualStatus.OK for r in rows)
        self.evaluated += ok
        self.pruned += len(rows) - ok
