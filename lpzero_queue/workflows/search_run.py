"""The search coordinator: runs GP generations through an executor and records every individual.

A run is a pure function of its stored configuration and seed. The coordinator replays the
deterministic plan (:mod:`lpzero_queue.search.generation`) from the start every time it runs:
individuals already in the database are taken as they are, the rest are evaluated and written as
soon as they are scored. Resuming a killed run therefore ends with exactly the result of an
uninterrupted one, and evaluations stored by earlier runs are reused, not recomputed.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from lpzero_queue.benchmarks.splits import SplitSpec, search_positions, validation_positions
from lpzero_queue.errors import LpzqError
from lpzero_queue.execution.base import Executor
from lpzero_queue.proxies.correlation import strata_for
from lpzero_queue.proxies.scoring import ArchRef, ScoringSetup
from lpzero_queue.proxies.spec import ProxySpec
from lpzero_queue.search.config import SearchConfig
from lpzero_queue.search.generation import (
    evaluated_texts,
    merge_generation,
    plan_generation,
    plan_initial,
)
from lpzero_queue.search.selection import Member, rank
from lpzero_queue.storage import (
    IndividualRecord,
    IndividualStatus,
    RunArchitecture,
    RunLease,
    RunLeaseLostError,
    RunRecord,
    RunRepository,
    RunStatus,
    Sessions,
    new_lease_owner,
    transaction,
)
from lpzero_queue.versions import code_version, library_versions
from lpzero_queue.workflows._run_lease import RunHeartbeat, holding_run
from lpzero_queue.workflows._search_evaluator import Evaluator
from lpzero_queue.workflows.catalog import get_benchmark, max_seq_len
from lpzero_queue.workflows.evaluations import (
    ensure_batch,
    ensure_proxies,
)

Progress = Callable[..., None]

# How long a coordinator's lease on its run lasts unless renewed (the CLI passes the
# ``run_lease_s`` setting, whose default this is).
DEFAULT_LEASE_S = 60.0


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


def create_run(
    sessions: Sessions,
    bench_name: str,
    config: SearchConfig,
    *,
    owner: str | None = None,
    lease_s: float = DEFAULT_LEASE_S,
) -> int:
    """Record a new run (status pending) with its resolved configuration; returns its id.

    Args:
        owner: a coordinator's lease token: the run is created already held by it (taken in the
            same INSERT), so no other coordinator can drive it before that one starts.
    """
    with transaction(sessions) as s:
        bench = get_benchmark(s, bench_name)
        bench_id, space, longest = bench.id, bench.space, max_seq_len(s, bench)
    try:
        setup = ScoringSetup.resolve(
            space,
            builder=config.builder,
            objective=config.objective,
            batch_size=config.batch_size,
            seq_len=config.seq_len,
            linear_scope=config.linear_scope,
            max_seq_len=longest,
        )
    except ValueError as exc:
        raise LpzqError(f"{bench_name}: {exc}") from None
    runs = RunRepository(sessions)
    resolved = SearchConfig.from_dict(
        {
            **config.to_dict(),
            "validation": config.validation_for(runs.architecture_count(bench_id)),
            "builder": setup.builder,
            "objective": setup.objective,
            "batch_size": setup.batch_size,
            "seq_len": setup.seq_len,
            "linear_scope": setup.linear_scope,
        }
    )
    return runs.create(
        benchmark_id=bench_id,
        config=resolved.to_dict(),
        seed=resolved.seed,
        code_version=code_version(),
        library_versions=library_versions(),
        lease=None if owner is None else (owner, lease_s),
    )


def _stored_config(run: RunRecord) -> SearchConfig:
    # Keys added after a run was recorded take the values that run used, not today's defaults.
    return SearchConfig.from_dict({"reductions": ["mean"], "validation": 0, **run.config})


def _oriented(archs: Sequence[RunArchitecture], sign: float) -> tuple[float, ...]:
    """Ground truth oriented higher-is-better, in the order of ``archs``."""
    missing = [a.key for a in archs if a.truth is None]
    if missing:
        raise LpzqError(f"architectures without ground truth: {', '.join(missing[:5])}")
    return tuple(sign * float(a.truth) for a in archs)  # type: ignore[arg-type]


def _refs(archs: Sequence[RunArchitecture]) -> tuple[ArchRef, ...]:
    return tuple(ArchRef(a.id, a.key, dict(a.config)) for a in archs)


def load_context(sessions: Sessions, run_id: int) -> RunContext:
    """Rebuild a run's fixed context from the database."""
    runs = RunRepository(sessions)
    run = runs.get(run_id)
    config = _stored_config(run)
    with transaction(sessions) as s:
        bench = get_benchmark(s, run.benchmark)
        setup = ScoringSetup.resolve(
            bench.space,
            builder=config.builder,
            objective=config.objective,
            batch_size=config.batch_size,
            seq_len=config.seq_len,
            # Runs recorded before the setting existed used the token-mixing Linears.
            linear_scope=run.config.get("linear_scope", "mixer"),
        )
        batch_id = ensure_batch(s, bench, setup, config.seed).id
        space, metric, direction = bench.space, bench.metric, bench.direction
    split = SplitSpec(config.split, config.sample, config.seed, config.validation or 0)
    by_pos = {a.position: a for a in runs.architectures(run.benchmark_id, metric)}
    try:
        chosen = [by_pos[p] for p in search_positions(len(by_pos), split)]
        held = [by_pos[p] for p in validation_positions(len(by_pos), split)]
    except ValueError as exc:
        raise LpzqError(str(exc)) from None
    sign = 1.0 if direction == "higher" else -1.0
    return RunContext(
        run_id=run.id,
        bench_id=run.benchmark_id,
        bench_name=run.benchmark,
        config=config,
        setup=setup,
        split=split,
        archs=_refs(chosen),
        truth=_oriented(chosen, sign),
        batch_id=batch_id,
        val_archs=_refs(held),
        val_truth=_oriented(held, sign),
        strata=(
            tuple(strata_for(space, [a.n_layers for a in chosen])) if config.within_weight else ()
        ),
    )


@dataclass(frozen=True)
class RunResult:
    """The outcome of a run: its best member and where the search stood."""

    run_id: int
    status: RunStatus
    best: str | None
    best_fitness: float | None
    generations: int
    population: tuple[Member, ...]


def execute_run(
    sessions: Sessions,
    run_id: int,
    executor: Executor,
    *,
    progress: Progress | None = None,
    stop_after_generation: int | None = None,
    held_out: Callable[[str], None] | None = None,
    owner: str | None = None,
    lease_s: float = DEFAULT_LEASE_S,
) -> RunResult:
    """Run (or resume) a search to its end, writing every individual as it is scored.

    The run's lease is taken first (refused while another coordinator's is live), renewed while
    the run goes on and given up when this call returns; every write of run state is fenced by
    it, so a coordinator whose run was taken over stops without writing.

    Args:
        progress: called as ``progress(done, total, generation=..., best=..., pruned=...)``.
        stop_after_generation: stop (status stays running) once this generation is stored;
            used by tests to simulate a coordinator killed between generations.
        held_out: called with the best expression once it is stored, to score it on the
            held-out split; the run is marked ``completed`` only after it returns (a
            coordinator killed meanwhile leaves the run ``running``, and a resume scores it).
        owner: this coordinator's lease token (default: a new one); the one a run was created
            with by :func:`create_run` continues that lease.
        lease_s: how long the lease lasts unless renewed (renewed every third of it).

    Raises:
        RunLeaseHeldError: another coordinator drives the run.
        RunLeaseLostError: another coordinator took the run over meanwhile (nothing more written).
    """
    runs = RunRepository(sessions)
    if runs.get(run_id).status == RunStatus.CANCELLED:
        raise LpzqError(f"search run {run_id} was cancelled")
    lease = RunLease(run_id, owner or new_lease_owner(), lease_s)
    with holding_run(runs, lease) as beat:
        ctx = load_context(sessions, run_id)
        runs.mark_running(lease)
        evaluator = Evaluator(sessions, ctx, executor, runs, lease)
        try:
            return _drive(evaluator, beat, progress, stop_after_generation, held_out)
        except RunLeaseLostError:
            raise  # the run is another coordinator's now: write nothing
        except BaseException as exc:
            with contextlib.suppress(RunLeaseLostError):  # taken over meanwhile: not ours
                runs.finish(lease, RunStatus.FAILED, f"{type(exc).__name__}: {exc}")
            raise


def _drive(
    evaluator: Evaluator,
    beat: RunHeartbeat,
    progress: Progress | None,
    stop_after_generation: int | None,
    held_out: Callable[[str], None] | None,
) -> RunResult:
    """Replay the run's plan (stored individuals taken as they are), then choose its result."""
    ctx, runs, lease = evaluator.ctx, evaluator.runs, evaluator.lease
    cfg, run_id = ctx.config, ctx.run_id
    stored = {(r.generation, r.slot): r for r in runs.individuals(run_id)}
    population, seen = _initial_population(evaluator, stored)
    total = cfg.generations + 1
    _report(progress, 1, total, population, evaluator)
    for generation in range(1, cfg.generations + 1):
        beat.check()
        if stop_after_generation is not None and generation > stop_after_generation:
            return RunResult(run_id, RunStatus.RUNNING, None, None, generation - 1, population)
        if runs.status(run_id) == RunStatus.CANCELLED:
            return RunResult(run_id, RunStatus.CANCELLED, None, None, generation - 1, population)
        planned = plan_generation(population, cfg, cfg.seed, generation, seen=seen)
        seen |= evaluated_texts(planned)
        population = merge_generation(
            population, evaluator.evaluate(planned, stored, population), cfg
        )
        _report(progress, generation + 1, total, population, evaluator)
    beat.check()
    best, selection = _select_best(evaluator, ctx, population)
    best_text = _store_best(evaluator, best, selection)
    if held_out is not None:
        held_out(best_text)
    runs.finish(lease, RunStatus.COMPLETED)
    return RunResult(
        run_id, RunStatus.COMPLETED, best_text, best.fitness, cfg.generations, population
    )


def _initial_population(
    evaluator: Evaluator, stored: dict[tuple[int, int], IndividualRecord]
) -> tuple[tuple[Member, ...], set[str]]:
    """Generation 0, sampled (and scored) until it holds ``population`` members."""
    cfg = evaluator.ctx.config
    population: tuple[Member, ...] = ()
    seen: set[str] = set()
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
    return population, seen


def _store_best(evaluator: Evaluator, best: Member, selection: dict[str, Any]) -> str:
    """Record the run's result and how it was chosen (the run stays ``running``); its text."""
    best_text = _canonical_text(best)
    with transaction(evaluator.sessions) as s:
        ids = ensure_proxies(s, [ProxySpec("expression", best_text, "higher")], origin="searched")
    evaluator.runs.record_result(
        evaluator.lease,
        best_proxy_id=ids[best_text],
        best_fitness=best.fitness,
        selection=selection,
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


def _lease_line(run: RunRecord) -> str | None:
    """Who holds the run and until when (None when no coordinator has held it since it ended)."""
    if run.lease_owner is None or run.lease_expires_at is None:
        return None
    when = f"{run.lease_expires_at:%Y-%m-%d %H:%M:%S} UTC"
    if run.lease_live:
        return f"{run.lease_owner}, lapses at {when} unless renewed"
    return f"{run.lease_owner}, lapsed at {when}"


@dataclass(frozen=True)
class RunSummary:
    """What ``lpzq search status`` shows of a run (``status`` may be the derived ``stale``)."""

    run: int
    benchmark: str
    status: str
    lease: str | None
    seed: int
    generation: int | None
    generations: int
    candidates: int
    evaluated_ok: int
    pruned_by_rule: dict[str, int]
    best: str | None
    best_fitness: float | None
    fitness: str
    search_split: str
    selected_by: str | None
    setup: dict[str, Any]
    devices: dict[str, int]
    created_at: str
    heartbeat_at: str | None
    finished_at: str | None
    error: str | None

    def as_dict(self) -> dict[str, Any]:
        """The fields in order, for ``--json`` and the status table."""
        return asdict(self)


def run_summary(sessions: Sessions, run_id: int) -> RunSummary:
    """Status, progress and best member of a run, for ``lpzq search status``.

    ``status`` is ``stale`` for a running run whose coordinator stopped renewing its lease.
    """
    ctx = load_context(sessions, run_id)
    runs = RunRepository(sessions)
    run = runs.get(run_id)
    rows = runs.individuals(run_id)
    rules: dict[str, int] = {}
    for r in rows:
        if r.pruning_rule:
            rules[r.pruning_rule] = rules.get(r.pruning_rule, 0) + 1
    devices = runs.evaluation_devices(
        run_id,
        batch_id=ctx.batch_id,
        seed=ctx.config.seed,
        builder=ctx.setup.builder,
        objective=ctx.setup.objective,
        linear_scope=ctx.setup.linear_scope,
    )
    return RunSummary(
        run=run.id,
        benchmark=ctx.bench_name,
        status=run.shown_status,
        lease=_lease_line(run),
        seed=run.seed,
        generation=max((r.generation for r in rows), default=None),
        generations=ctx.config.generations,
        candidates=len(rows),
        evaluated_ok=sum(1 for r in rows if r.status == IndividualStatus.OK),
        pruned_by_rule=rules,
        best=run.best_expression,
        best_fitness=run.best_fitness,
        fitness=ctx.config.fitness,
        search_split=ctx.split.label,
        selected_by=_selection_line(run.selection),
        setup=asdict(ctx.setup),
        devices=devices,
        created_at=str(run.created_at),
        heartbeat_at=str(run.heartbeat_at) if run.heartbeat_at else None,
        finished_at=str(run.finished_at) if run.finished_at else None,
        error=run.error,
    )
