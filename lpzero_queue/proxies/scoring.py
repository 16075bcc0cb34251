"""Units of scoring work and the function that does one: expressions and baselines on a shard of
architectures, for one seed. Pure computation (no database): the same code runs in-process and
inside a Celery worker, and units travel as JSON.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from lpzero_queue.benchmarks.builders import resolve_builder
from lpzero_queue.benchmarks.records import config_hash
from lpzero_queue.proxies.objective import resolve_objective
from lpzero_queue.proxies.outcomes import is_proxy_outcome

if TYPE_CHECKING:
    from lpzero_queue.benchmarks.batches import InputBatch
    from lpzero_queue.proxies.cache import InputCache


@dataclass(frozen=True)
class ScoringSetup:
    """How proxy inputs are obtained; stored with every number computed under it."""

    space: str
    builder: str
    # The loss whose backward gives the gradients ("ones" | "mlm" for FlexiBERT, "lm" for GPT-2).
    objective: str
    batch_size: int
    seq_len: int
    # Which Linears feed the weight/grad inputs: "mixer" (token-mixing) or "all".
    linear_scope: str = "mixer"

    @classmethod
    def resolve(
        cls,
        space: str,
        *,
        builder: str | None = None,
        objective: str | None = None,
        batch_size: int | None = None,
        seq_len: int | None = None,
        linear_scope: str | None = None,
        max_seq_len: int | None = None,
    ) -> ScoringSetup:
        """Fill in the space's defaults and validate (ValueError naming valid values).

        Args:
            max_seq_len: The longest sequence every architecture of the benchmark accepts
                (``catalog.max_seq_len``). Without ``seq_len`` the sequence length is the
                space's default or this, whichever is shorter; a longer ``seq_len`` is refused.
        """
        from lpzero_queue.benchmarks.batches import MIN_SEQ_LEN
        from lpzero_queue.proxies.inputs import DEFAULT_BATCH, resolve_linear_scope

        default_b, default_t = DEFAULT_BATCH[space]
        if max_seq_len is not None:
            if max_seq_len < MIN_SEQ_LEN:
                raise ValueError(
                    f"the benchmark's architectures accept at most {max_seq_len} tokens, "
                    f"below the shortest proxy batch ({MIN_SEQ_LEN})"
                )
            if seq_len is not None and seq_len > max_seq_len:
                raise ValueError(
                    f"--seq-len {seq_len} is longer than the benchmark's architectures accept; "
                    f"valid: at most {max_seq_len}"
                )
            default_t = min(default_t, max_seq_len)
        return cls(
            space=space,
            builder=resolve_builder(space, builder),
            objective=resolve_objective(space, objective),
            batch_size=batch_size or default_b,
            seq_len=seq_len or default_t,
            linear_scope=resolve_linear_scope(space, linear_scope),
        )


@dataclass(frozen=True)
class ArchRef:
    """An architecture as a worker needs it: its database id, key and config."""

    id: int
    key: str
    config: dict[str, Any]


@dataclass(frozen=True)
class WorkUnit:
    """A batch of proxies over a shard of architectures, for one seed."""

    setup: ScoringSetup
    seed: int
    archs: tuple[ArchRef, ...]
    expressions: tuple[str, ...] = ()
    baselines: tuple[str, ...] = ()

    def to_payload(self) -> dict[str, Any]:
        """A JSON-serialisable form (Celery uses JSON only)."""
        return asdict(self)

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> WorkUnit:
        """Inverse of :meth:`to_payload`."""
        return cls(
            setup=ScoringSetup(**payload["setup"]),
            seed=int(payload["seed"]),
            archs=tuple(ArchRef(**a) for a in payload["archs"]),
            expressions=tuple(payload.get("expressions", ())),
            baselines=tuple(payload.get("baselines", ())),
        )


@dataclass(frozen=True)
class ScoreRow:
    """One result: a proxy (expression text or baseline name) on one architecture."""

    arch_id: int
    proxy: str
    score: float | None
    status: str  # an EvaluationStatus: ok | nonfinite | constant | error | timeout
    error: str | None = None
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    # Where it was computed (scoring.device_label: "cpu", "cuda:<name>"); None: not computed.
    device: str | None = None


@functools.lru_cache(maxsize=16)
def input_batch(space: str, seed: int, batch_size: int, seq_len: int) -> InputBatch:
    """The proxy batch for (space, seed, shape); cached per process (it is deterministic)."""
    from lpzero_queue.benchmarks.batches import make_batch

    return make_batch(space, seed=seed, batch_size=batch_size, seq_len=seq_len)


def device_label(device: str) -> str:
    """How a device is recorded with each evaluation: ``cpu`` or ``cuda:<device name>``."""
    if device == "cpu":
        return "cpu"
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(dev)}"
    return str(dev)


def score_unit(unit: WorkUnit, cache: InputCache, device: str = "cpu") -> list[ScoreRow]:
    """Score every proxy of ``unit`` on every architecture of its shard.

    Inputs of an architecture are computed once (one forward and backward) and kept in ``cache``
    with its branch memo; then all expressions are evaluated on all architectures in one engine
    call (``proxies._engine``: packed into few large operations on an accelerator, one
    architecture at a time on the CPU). Baselines build their own model (on the CPU). A proxy
    failing with a declared outcome (``proxies.outcomes``) gives an ``error`` row; anything else
    (out of memory, a device error, a bug) raises and nothing of the unit is stored. ``device``
    is where the inputs are computed and the expressions evaluated ("cuda" on a GPU worker);
    every expression row records it (:func:`device_label`), baseline rows record ``cpu``.
    """
    from lpzero_queue.proxies.baselines import score_baselines
    from lpzero_queue.proxies.expression import evaluate_archs, parse_expression

    setup = unit.setup
    batch = input_batch(setup.space, unit.seed, setup.batch_size, setup.seq_len)
    exprs = [parse_expression(text) for text in unit.expressions]
    label = device_label(device)
    rows: dict[int, list[ScoreRow]] = {arch.id: [] for arch in unit.archs}
    # The CPU evaluates each architecture right after its extraction (only the cache holds
    # inputs); an accelerator takes the shard's inputs together, as one packed evaluation.
    chunks = [[a] for a in unit.archs] if device == "cpu" else [list(unit.archs)]
    for chunk in chunks if exprs else ():
        ready: list[tuple[ArchRef, Any, Any]] = []  # (arch, tensors, memo)
        for arch in chunk:
            try:
                ready.append((arch, *_arch_inputs(unit, arch, batch, cache, device)))
            except Exception as exc:  # a model that cannot run is a result, not a crash
                if not is_proxy_outcome(exc):
                    raise  # out of memory, a device error or a bug: nothing is stored
                message = f"{type(exc).__name__}: {exc}"
                rows[arch.id] = [
                    ScoreRow(arch.id, t, None, "error", message) for t in unit.expressions
                ]
        started = time.perf_counter()
        results = evaluate_archs(exprs, [t for _, t, _ in ready], memos=[m for _, _, m in ready])
        each = (time.perf_counter() - started) / max(1, len(exprs) * len(ready))
        for (arch, _, _), per_arch in zip(ready, results, strict=True):
            rows[arch.id] = [
                ScoreRow(arch.id, text, r.score, r.status, r.error, each, device=label)
                for text, r in zip(unit.expressions, per_arch, strict=True)
            ]
    for arch in unit.archs if unit.baselines else ():
        results_b = score_baselines(
            list(unit.baselines), setup.space, arch.config, **_model_args(unit, batch)
        )
        rows[arch.id].extend(
            ScoreRow(arch.id, name, r.score, r.status, r.error, r.seconds, device="cpu")
            for name, r in results_b.items()
        )
    return [row for arch in unit.archs for row in rows[arch.id]]


def _model_args(unit: WorkUnit, batch: InputBatch) -> dict[str, Any]:
    """How a unit's models are built and run (inputs and baselines alike)."""
    setup = unit.setup
    return {
        "builder": setup.builder,
        "seed": unit.seed,
        "batch": batch,
        "objective": setup.objective,
    }


def _arch_inputs(
    unit: WorkUnit, arch: ArchRef, batch: InputBatch, cache: InputCache, device: str
) -> tuple[Any, Any]:
    """An architecture's cached input tensors (on ``device``) and its branch memo."""
    from lpzero_queue.proxies.inputs import InputsKey, compute_inputs

    setup = unit.setup
    key = InputsKey(
        space=setup.space,
        config_hash=config_hash(setup.space, arch.config),
        builder=setup.builder,
        seed=unit.seed,
        batch_hash=batch.content_hash,
        objective=setup.objective,
        linear_scope=setup.linear_scope,
    )
    inputs = cache.get_or_compute(
        key,
        functools.partial(
            compute_inputs,
            setup.space,
            arch.config,
            **_model_args(unit, batch),
            device=device,
            linear_scope=setup.linear_scope,
        ),
    )
    tensors: Any = inputs.tensors
    if device != "cpu" and any(t.device.type == "cpu" for ts in tensors.values() for t in ts):
        # read back from a spill file (always CPU): evaluate on the device all the same
        tensors = {name: tuple(t.to(device) for t in ts) for name, ts in tensors.items()}
    return tensors, cache.memo(key)


def shard(archs: Sequence[ArchRef], size: int) -> list[tuple[ArchRef, ...]]:
    """Split architectures into consecutive shards of at most ``size``."""
    return [tuple(archs[i : i + size]) for i in range(0, len(archs), size)]
