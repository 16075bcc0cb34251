"""The search coordinator: runs GP generations through an executor and records every individual.

A run is a pure function of its stored configuration and seed. The coordinator replays the
deterministic plan (:mod:`lpzero_queue.search.generation`) from the start every time it runs:
individuals already in the database are taken as they are, the rest are evaluated and written as
soon as they are scored. Resuming a killed run therefore ends with exactly the result of an
uninterrupted one, and evaluations stored by earlier runs are reused, not recomputed.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from lpzero_queue.benchmarks.splits import SplitSpec, search_positions, validation_positions
from lpzero_queue.errors import LpzqError, NotFoundError
from lpzero_queue.execution.base import Executor
from lpzero_queue.proxies.correlation import strata_for
from lpzero_queue.proxies.evaluations import (
    ensure_batch,
    ensure_proxies,
)
from lpzero_queue.proxies.scoring import ArchRef, ScoringSetup
from lpzero_queue.proxies.spec import ProxySpec
from lpzero_queue.search._evaluator import Evaluator
from lpzero_queue.search.config import SearchConfig
from lpzero_queue.search.generation import (
    evaluated_texts,
    merge_generation,
    plan_generation,
    plan_initial,
)
from lpzero_queue.search.selection import Member, rank
from lpzero_queue.storage import (
    Architecture,
    Benchmark,
    GroundTruth,
    Individual,
    SearchRun,
    transaction,
)
from lpzero_queue.versions import code_version, library_versions
from lpzero_queue.workflows.catalog import max_seq_len

Progress = Callable[..., None]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class RunContext:
    """Everything a run needs that does not change while it runs."""

    run_id: int
    bench_id: int
    bench_name: str
    config: SearchConfig
    setup: ScoringSetup
    split: SplitSpec
    archs: tuple[ArchRef, ...]  # the search split, in position order
    truth: tuple[float, ...]  # ground truth oriented higher-is-better, same order
    batch_id: int
    strata: tuple[Any, ...] = ()  # depth stratum per architecture, same order
    val_archs: tuple[ArchRef, ...] = ()  # the validation split (model selection), position order
    val_truth: tuple[float, ...] = ()  # its ground truth oriented higher-is-better

    @property
    def probe(self) -> int:
        """Number of probe architectures (the first of the search split)."""
        return self.config.probe_size


def create_run(sessions: sessionmaker[Session], bench_name: str, config: SearchConfig) -> int:
    """Record a new run (status pending) with its resolved configuration; returns its id."""
    with transaction(sessions) as s:
        bench = s.scalar(select(Benchmark).where(Benchmark.name == bench_name))
        if bench is None:
            raise NotFoundError(f"no benchmark '{bench_name}'")
        try:
            setup = ScoringSetup.resolve(
                bench.space,
                builder=config.builder,
                objective=config.objective,
                batch_size=config.batch_size,
                seq_len=config.seq_len,
                linear_scope=config.linear_scope,
                max_seq_len=max_seq_len(s, bench),
            )
        except ValueError as exc:
            raise LpzqError(f"{bench_name}: {exc}") from None
        n_archs = s.scalar(
            select(func.count())
            .select_from(Architecture)
            .where(Architecture.benchmark_id == bench.id)
        )
        resolved = SearchConfig.from_dict(
            {
                **config.to_dict(),
                "validation": config.validation_for(int(n_archs or 0)),
                "builder": setup.builder,
                "objective": setup.objective,
                "batch_size": setup.batch_size,
                "seq_len": setup.seq_len,
                "linear_scope": setup.linear_scope,
            }
        )
        run = SearchRun(
            benchmark_id=bench.id,
            config=resolved.to_dict(),
            seed=resolved.seed,
            status="pending",
            code_version=code_version(),
            library_versions=library_versions(),
        )
        s.add(run)
        s.flush()
        return run.id


def load_context(sessions: sessionmaker[Session], run_id: int) -> RunContext:
    """Rebuild a run's fixed context from the database."""
    with transaction(sessions) as s:
        run = s.get(SearchRun, run_id)
        if run is None:
            ids = s.scalars(select(SearchRun.id).order_by(SearchRun.id)).all()
            known = f"{ids[0]}..{ids[-1]}" if ids else "none"
            raise NotFoundError(f"no search run {run_id} (runs: {known})")
        bench = s.get(Benchmark, run.benchmark_id)
        assert bench is not None
        # Keys added after a run was recorded take the values that run used, not today's defaults.
        config = SearchConfig.from_dict({"reductions": ["mean"], "validation": 0, **run.config})
        setup = ScoringSetup.resolve(
            bench.space,
            builder=config.builder,
            objective=config.objective,
            batch_size=config.batch_size,
            seq_len=config.seq_len,
            # Runs recorded before the setting existed used the token-mixing Linears.
            linear_scope=run.config.get("linear_scope", "mixer"),
        )
        split = SplitSpec(config.split, config.sample, config.seed, config.validation or 0)
        archs = s.scalars(select(Architecture).where(Architecture.benchmark_id == bench.id)).all()
        by_pos = {a.position: a for a in archs}
        try:
            chosen = [by_pos[p] for p in search_positions(len(by_pos), split)]
            held = [by_pos[p] for p in validation_positions(len(by_pos), split)]
        except ValueError as exc:
            raise LpzqError(str(exc)) from None
        truth = dict(
            s.execute(
                select(GroundTruth.architecture_id, GroundTruth.value).where(
                    GroundTruth.architecture_id.in_([a.id for a in chosen + held]),
                    GroundTruth.metric == bench.metric,
                )
            ).all()
        )
        sign = 1.0 if bench.direction == "higher" else -1.0
        batch = ensure_batch(s, bench, setup, config.seed)
        return RunContext(
            run_id=run.id,
            bench_id=bench.id,
            bench_name=bench.name,
            config=config,
            setup=setup,
            split=split,
            archs=tuple(ArchRef(a.id, a.key, dict(a.config)) for a in chosen),
            truth=tuple(sign * truth[a.id] for a in chosen),
            batch_id=batch.id,
            val_archs=tuple(ArchRef(a.id, a.key, dict(a.config)) for a in held),
            val_truth=tuple(sign * truth[a.id] for a in held),
            strata=(
                tuple(strata_for(bench.space, [a.n_layers for a in chosen]))
                if config.within_weight
                else ()
            ),
        )


def _stored(sessions: sessionmaker[Session], run_id: int) -> dict[tuple[int, int], Individual]:
    with transaction(sessions) as s:
        rows = s.scalars(select(Individual).where(Individual.run_id == run_id)).all()
        return {(r.generation, r.slot): r for r in rows}


def _set_status(sessions: sessionmaker[Session], run_id: int, **values: Any) -> None:
    with transaction(sessions) as s:
        s.execute(update(SearchRun).where(SearchRun.id == run_id).values(**values))


def _run_status(sessions: sessionmaker[Session], run_id: int) -> str:
    with transaction(sessions) as s:
        return s.scalars(select(SearchRun.status).where(SearchRun.id == run_id)).one()


@dataclass(frozen=True)
class RunResult:
    """The outcome of a run: its best member and where the search stood."""

    run_id: int
    status: str
    best: str | None
    best_fitness: float | None
    generations: int
    population: tuple[Member, ...]


def execute_run(
    sessions: sessionmaker[Session],
    run_id: int,
    executor: Executor,
    *,
    progress: Progress | None = None,
    stop_after_generation: int | None = None,
    held_out: Callable[[str], None] | None = None,
) -> RunResult:
    """Run (or resume) a search to its end, writing every individual as it is scored.

    Args:
        progress: called as ``progress(done, total, generation=..., best=..., pruned=...)``.
        stop_after_generation: stop (status stays running) once this generation is stored;
            used by tests to simulate a coordinator killed between generations.
        held_out: called with the best expression once it is stored, to score it on the
            held-out split; the run is marked ``completed`` only after it returns (a
            coordinator killed meanwhile leaves the run ``running``, and a resume scores it).
    """
    ctx = load_context(sessions, run_id)
    status = _run_status(sessions, run_id)
    if status == "cancelled":
        raise LpzqError(f"search run {run_id} was cancelled")
    _set_status(
        sessions, run_id, status="running", started_at=_now(), heartbeat_at=_now(), error=None
    )
    cfg = ctx.config
    evaluator = Evaluator(sessions, ctx, executor)
    total = cfg.generations + 1
    population: tuple[Member, ...] = ()
    seen: set[str] = set()
    try:
        stored = _stored(sessions, run_id)
        start = 0
        while len(population) < cfg.population:
            planned = plan_initial(
                cfg, cfg.seed, start_slot=start, needed=cfg.population - len(population), seen=seen
            )
            seen |= evaluated_texts(planned)
            population = merge_generation(
                population, evaluator.evaluate(planned, stored, population), cfg
            )
            start = planned[-1].slot + 1
        _report(progress, 1, total, population, evaluator)
        for generation in range(1, cfg.generations + 1):
            if stop_after_generation is not None and generation > stop_after_generation:
                return RunResult(run_id, "running", None, None, generation - 1, population)
            if _run_status(sessions, run_id) == "cancelled":
                return RunResult(run_id, "cancelled", None, None, generation - 1, population)
            planned = plan_generation(population, cfg, cfg.seed, generation, seen=seen)
            seen |= evaluated_texts(planned)
            population = merge_generation(
                population, evaluator.evaluate(planned, stored, population), cfg
            )
            _report(progress, generation + 1, total, population, evaluator)
        best, selection = _select_best(evaluator, ctx, population)
        best_text = _store_best(sessions, run_id, best, selection)
        if held_out is not None:
            held_out(best_text)
    except BaseException as exc:
        _set_status(sessions, run_id, status="failed", error=f"{type(exc).__name__}: {exc}"[:2000])
        raise
    _set_status(sessions, run_id, status="completed", finished_at=_now(), heartbeat_at=_now())
    return RunResult(run_id, "completed", best_text, best.fitness, cfg.generations, population)


def _store_best(
    sessions: sessionmaker[Session], run_id: int, best: Member, selection: dict[str, Any]
) -> str:
    """Record the run's result and how it was chosen (the run stays ``running``); its text."""
    best_text = _canonical_text(best)
    with transaction(sessions) as s:
        ids = ensure_proxies(s, [ProxySpec("expression", best_text, "higher")], origin="searched")
        s.execute(
            update(SearchRun)
            .where(SearchRun.id == run_id)
            .values(
                heartbeat_at=_now(),
                best_proxy_id=ids[best_text],
                best_fitness=best.fitness,
                selection=selection,
            )
        )
    return best_text


def _select_best(
    evaluator: Evaluator, ctx: RunContext, population: Sequence[Member]
) -> tuple[Member, dict[str, Any]]:
    """The run's result: the best fitness, or the best on the validation split of the top members.

    Members are ranked by fitness (ties: earlier generation and slot first); with a validation
    split the first
    ``select_top`` distinct expressions are scored there and the highest validation correlation
    wins (ties and failures: the better fitness). The record says what was compared.
    """
    cfg = ctx.config
    if not ctx.val_archs:
        return max(population, key=lambda m: m.fitness), {"by": "fitness", "split": ctx.split.label}
    top: dict[str, Member] = {}
    for m in rank(population):
        top.setdefault(_canonical_text(m), m)
        if len(top) == cfg.select_top:
            break
    validated = evaluator.validate(list(top), ctx.val_archs, ctx.val_truth)
    scored = [-math.inf if v is None else v for v in validated]
    order = sorted(range(len(top)), key=lambda i: (-scored[i], i))
    texts = list(top)
    chosen = texts[order[0]]
    return top[chosen], {
        "by": f"validation {cfg.fitness}",
        "split": ctx.split.label,
        "validation_archs": len(ctx.val_archs),
        "chosen": chosen,
        "candidates": [
            {"expression": t, "fitness": top[t].fitness, "validation": v}
            for t, v in zip(texts, validated, strict=True)
        ],
    }


def _canonical_text(member: Member) -> str:
    from lpzero_queue.proxies.expression import canonicalize, format_expression

    return format_expression(canonicalize(member.genotype.to_expression()))


def _report(
    progress: Progress | None,
    done: int,
    total: int,
    population: Sequence[Member],
    evaluator: Evaluator,
) -> None:
    if progress is None:
        return
    best = max((m.fitness for m in population), default=float("nan"))
    share = evaluator.pruned / max(1, evaluator.pruned + evaluator.evaluated)
    progress(done, total, evaluated=evaluator.evaluated, best=f"{best:+.3f}", pruned=f"{share:.0%}")


def _selection_line(selection: dict[str, Any] | None) -> str | None:
    """One line on how a run chose its result (None before it completed, or before 0004)."""
    if not selection:
        return None
    if selection.get("by") == "fitness":
        return "best fitness on the search split"
    chosen = next(
        (c for c in selection.get("candidates", []) if c["expression"] == selection.get("chosen")),
        None,
    )
    figure = (
        f" ({chosen['validation']:+.4f})" if chosen and chosen["validation"] is not None else ""
    )
    return (
        f"best {selection['by']}{figure} on {selection.get('validation_archs')} validation "
        f"architectures among the top {len(selection.get('candidates', []))} by fitness"
    )


def run_summary(sessions: sessionmaker[Session], run_id: int) -> dict[str, Any]:
    """Status, progress and best member of a run, for ``lpzq search status``."""
    ctx = load_context(sessions, run_id)
    with transaction(sessions) as s:
        run = s.get(SearchRun, run_id)
        assert run is not None
        rows = s.execute(
            select(Individual.generation, Individual.status, Individual.pruning_rule).where(
                Individual.run_id == run_id
            )
        ).all()
        best = None
        if run.best_proxy_id is not None:
            from lpzero_queue.storage import Proxy

            best = s.scalars(select(Proxy.expression).where(Proxy.id == run.best_proxy_id)).one()
        devices = _devices(s, ctx, run_id)
        rules: dict[str, int] = {}
        for _, _, rule in rows:
            if rule:
                rules[rule] = rules.get(rule, 0) + 1
        return {
            "run": run.id,
            "benchmark": ctx.bench_name,
            "status": run.status,
            "seed": run.seed,
            "generation": max((g for g, _, _ in rows), default=None),
            "generations": ctx.config.generations,
            "candidates": len(rows),
            "evaluated_ok": sum(1 for _, st, _ in rows if st == "ok"),
            "pruned_by_rule": rules,
            "best": best,
            "best_fitness": run.best_fitness,
            "fitness": ctx.config.fitness,
            "search_split": ctx.split.label,
            "selected_by": _selection_line(run.selection),
            "setup": asdict(ctx.setup),
            "devices": devices,
            "created_at": str(run.created_at),
            "finished_at": str(run.finished_at) if run.finished_at else None,
            "error": run.error,
        }


def _devices(s: Session, ctx: RunContext, run_id: int) -> dict[str, int]:
    """Evaluations of the run's candidates per device (``not recorded``: before revision 0005)."""
    from sqlalchemy import func

    from lpzero_queue.storage import Evaluation

    e = Evaluation
    candidates = select(Individual.proxy_id).where(Individual.run_id == run_id).distinct()
    rows = s.execute(
        select(e.device, func.count())
        .where(
            e.proxy_id.in_(candidates),
            e.batch_id == ctx.batch_id,
            e.seed == ctx.config.seed,
            e.builder == ctx.setup.builder,
            e.objective == ctx.setup.objective,
            e.linear_scope == ctx.setup.linear_scope,
        )
        .group_by(e.device)
    ).all()
    return {device or "not recorded": n for device, n in sorted(rows, key=lambda r: str(r[0]))}
