"""``lpzq bench create``: a benchmark whose ground truth comes from training on the train queue."""

from __future__ import annotations

import shlex
import sys
from typing import Any

import typer

from lpzero_queue.errors import LpzqError

HP_HELP = "Training steps per architecture."


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise LpzqError(
            f"--train-seeds {text!r}: give comma-separated integers, e.g. 0,1"
        ) from None
    if not seeds or any(s < 0 for s in seeds):
        raise LpzqError(f"--train-seeds {text!r}: give non-negative integers, e.g. 0,1")
    return seeds


def hyperparameters(**given: Any) -> dict[str, Any]:
    """Validated hyper-parameters as plain JSON (LpzqError naming a bad one)."""
    from lpzero_queue.training.loop import Hyperparameters

    return Hyperparameters.from_dict({k: v for k, v in given.items() if v is not None}).to_dict()


def bench_create(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Name of the new benchmark."),
    space: str = typer.Option(..., "--space", help="Architecture space: gpt2|flexibert."),
    archs: int = typer.Option(40, "--archs", help="Architectures to sample and train."),
    steps: int = typer.Option(300, "--steps", help=HP_HELP),
    seed: int = typer.Option(0, "--seed", help="Seed of the architecture sample."),
    train_seeds: str = typer.Option(
        "0", "--train-seeds", help="Training seed(s); two or more also measure the noise ceiling."
    ),
    width_scale: float = typer.Option(
        0.25, "--width-scale", help="Multiply the shipped benchmark's widths by this (0, 1]."
    ),
    max_layers: int = typer.Option(4, "--max-layers", help="Depth cap of the sampled space."),
    batch_size: int = typer.Option(8, "--batch-size", help="Training batch size."),
    seq_len: int = typer.Option(64, "--seq-len", help="Training sequence length (8..192)."),
    lr: float = typer.Option(1e-3, "--lr", help="AdamW peak learning rate."),
    eval_batches: int = typer.Option(16, "--eval-batches", help="Validation batches."),
    max_seconds: float = typer.Option(3600.0, "--max-seconds", help="Time limit per job."),
    retry_failed: bool = typer.Option(
        False, "--retry-failed", help="Train again jobs of an earlier attempt that failed."
    ),
) -> None:
    """Create a benchmark by training sampled architectures (ground truth: validation perplexity).

    Example: lpzq bench create small --space gpt2 --archs 40 --steps 300 --seed 0
    """
    from lpzero_queue.benchmarks.bounds import check_name
    from lpzero_queue.benchmarks.catalog import store_benchmark
    from lpzero_queue.benchmarks.records import SHIPPED
    from lpzero_queue.cli._progress import training_progress
    from lpzero_queue.execution.train_runner import TrainRunner
    from lpzero_queue.storage import Benchmark, transaction
    from lpzero_queue.training.created import link_jobs, plan_benchmark, results_to_spec
    from lpzero_queue.training.spaces import SpaceScale

    if space not in ("gpt2", "flexibert"):
        raise LpzqError(f"unknown space '{space}'; valid spaces: gpt2, flexibert")
    check_name(name, "benchmark name")
    if name in SHIPPED:
        raise LpzqError(f"'{name}' is the name of a shipped benchmark; choose another name")
    hp = hyperparameters(
        steps=steps, batch_size=batch_size, seq_len=seq_len, lr=lr, eval_batches=eval_batches,
        max_seconds=max_seconds,
    )  # fmt: skip
    plan = plan_benchmark(
        name,
        space,
        archs,
        sample_seed=seed,
        train_seeds=_seeds(train_seeds),
        scale=SpaceScale(width_scale=width_scale, max_layers=max_layers),
        hyperparameters=hp,
    )
    rt = ctx.obj
    rt.apply_torch_settings()
    rt.require_schema(create=True)
    with transaction(rt.sessions) as s:
        existing = s.scalar(select_benchmark(Benchmark, name))
    if existing is not None:
        raise LpzqError(f"benchmark '{name}' already exists; choose another name")
    runner = TrainRunner(rt.settings, rt.engine, say=lambda m: typer.echo(m, err=True))
    requests = plan.requests()
    typer.echo(
        f"training {len(requests)} jobs ({archs} {space} architectures x seeds {train_seeds}, "
        f"{steps} steps of {batch_size}x{seq_len} tokens) on "
        f"{'Celery workers (train queue)' if rt.settings.broker_url else 'this process'}",
        err=True,
    )
    with training_progress(rt.engine, requests, f"training {name}"):
        results = runner.run(requests, retry_failed=retry_failed)
    command = shlex.join(["lpzq", *sys.argv[1:]]) if sys.argv else "lpzq bench create"
    spec, ceiling = results_to_spec(plan, results, command)
    with transaction(rt.sessions) as s:
        result = store_benchmark(s, spec)
        bench_id = s.scalar(select_benchmark(Benchmark.id, name))
        assert bench_id is not None
        link_jobs(s, bench_id, spec.records)
    ppl = sorted(r.ground_truth["valid_ppl"] for r in spec.records)
    typer.echo(
        f"{name}: created ({result.architectures} architectures; valid_ppl min {ppl[0]:.1f}, "
        f"median {ppl[len(ppl) // 2]:.1f}, max {ppl[-1]:.1f}; {steps} steps, "
        f"seeds {train_seeds})"
    )
    if ceiling is not None:
        typer.echo(
            f"noise ceiling (valid_ppl, training seed {plan.train_seeds[0]} vs "
            f"{plan.train_seeds[1]}, n={int(ceiling['n'])}): Kendall {ceiling['kendall']:.3f}, "
            f"Spearman {ceiling['spearman']:.3f}"
        )
    sample = max(3, archs // 2)  # half the architectures for the search, half held out
    probe = "" if sample > 10 else f" --probe-size {max(3, sample // 2)}"
    typer.echo(f"next: lpzq search start --bench {name} --sample {sample}{probe}")


def select_benchmark(column: Any, name: str) -> Any:
    """``SELECT column FROM benchmarks WHERE name = :name``."""
    from sqlalchemy import select

    from lpzero_queue.storage import Benchmark

    return select(column).where(Benchmark.name == name)
