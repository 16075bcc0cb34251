"""Benchmarks created by training: sample architectures, train them, store the ground truth.

``lpzq bench create NAME`` samples architectures (:mod:`~lpzero_queue.training.spaces`), sends
one training job per (architecture, training seed) to the train queue and, once every job has
completed, stores a benchmark whose ground truth is the trained validation perplexity:

* ``valid_ppl`` (the benchmark's metric, lower is better): ``exp`` of the mean validation loss
  over the training seeds (with one seed, that seed's perplexity);
* ``valid_ppl_seed<S>`` and ``valid_loss_seed<S>`` for each training seed.

With two or more training seeds the noise ceiling (Kendall and Spearman between the first two
seeds' perplexities) is printed and stored in the benchmark's provenance. Jobs are idempotent: a
second ``bench create`` with the same arguments finds the finished jobs and trains only the rest.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lpzero_queue.benchmarks.records import ArchitectureRecord, BenchmarkSpec
from lpzero_queue.errors import LpzqError
from lpzero_queue.storage import JobStatus
from lpzero_queue.storage.training_jobs import JobRequest, JobResult
from lpzero_queue.storage.training_jobs import link_jobs as link_to_architectures
from lpzero_queue.training.data import DATA_DESCRIPTION
from lpzero_queue.training.spaces import SpaceScale, sample_architectures

if TYPE_CHECKING:
    from lpzero_queue.storage.queue import Session

__all__ = ["CreatePlan", "link_jobs", "noise_ceiling", "plan_benchmark", "results_to_spec"]


@dataclass(frozen=True)
class CreatePlan:
    """What ``bench create`` trains: architectures x training seeds."""

    name: str
    space: str
    configs: list[dict[str, Any]]
    train_seeds: tuple[int, ...]
    sample_seed: int
    scale: SpaceScale
    hyperparameters: dict[str, Any]

    def requests(self) -> list[JobRequest]:
        """One job per (architecture, training seed), architecture-major."""
        return [
            JobRequest({"kind": "arch", "space": self.space, "config": c}, self.hyperparameters, s)
            for c in self.configs
            for s in self.train_seeds
        ]


def plan_benchmark(
    name: str,
    space: str,
    n_archs: int,
    *,
    sample_seed: int,
    train_seeds: Sequence[int],
    scale: SpaceScale,
    hyperparameters: dict[str, Any],
) -> CreatePlan:
    """Sample the architectures of a new benchmark (nothing is written)."""
    if not train_seeds or len(set(train_seeds)) != len(train_seeds):
        raise LpzqError("--train-seeds: give distinct seeds, e.g. 0 or 0,1")
    configs = sample_architectures(space, n_archs, seed=sample_seed, scale=scale)
    return CreatePlan(name, space, configs, tuple(train_seeds), sample_seed, scale, hyperparameters)


def noise_ceiling(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
    """Kendall tau-b and Spearman rho between two trainings of the same architectures."""
    from scipy import stats

    kendall = stats.kendalltau(a, b).statistic
    spearman = stats.spearmanr(a, b).statistic
    return {"kendall": float(kendall), "spearman": float(spearman), "n": float(len(a))}


def results_to_spec(
    plan: CreatePlan, results: Sequence[JobResult], command: str
) -> tuple[BenchmarkSpec, dict[str, float] | None]:
    """The benchmark to store from completed jobs, and the noise ceiling (two or more seeds).

    Raises:
        LpzqError: A job did not complete (naming the first, its reason and how to retry).
    """
    bad = [r for r in results if r.status != JobStatus.COMPLETED]
    if bad:
        first = bad[0]
        raise LpzqError(
            f"{len(bad)} of {len(results)} training jobs did not complete (job {first.id}: "
            f"{first.status}: {' '.join((first.error or 'no reason').split())}); nothing stored; "
            "run the same command with --retry-failed to train them again"
        )
    per_seed = len(plan.train_seeds)
    records = []
    for i, config in enumerate(plan.configs):
        runs = results[i * per_seed : (i + 1) * per_seed]
        truth: dict[str, float] = {}
        for seed, run in zip(plan.train_seeds, runs, strict=True):
            truth[f"valid_ppl_seed{seed}"] = float(run.metrics["valid_ppl"])
            truth[f"valid_loss_seed{seed}"] = float(run.metrics["valid_loss"])
        mean_loss = sum(float(r.metrics["valid_loss"]) for r in runs) / per_seed
        truth["valid_ppl"] = math.exp(mean_loss)
        extra = {
            "training_jobs": [r.id for r in runs],
            "train_seconds": [round(float(r.metrics["seconds"]), 2) for r in runs],
            "trained_params": runs[0].metrics.get("params", {}),
        }
        records.append(ArchitectureRecord(f"arch{i:03d}", i, config, truth, extra))
    ceiling = None
    if per_seed >= 2:
        s0, s1 = plan.train_seeds[:2]
        ceiling = noise_ceiling(
            [r.ground_truth[f"valid_ppl_seed{s0}"] for r in records],
            [r.ground_truth[f"valid_ppl_seed{s1}"] for r in records],
        )
    hp = plan.hyperparameters
    provenance: dict[str, Any] = {
        "source": "created by training (lpzq bench create)",
        "command": command,
        "sample_seed": plan.sample_seed,
        "train_seeds": list(plan.train_seeds),
        "width_scale": plan.scale.width_scale,
        "max_layers": plan.scale.max_layers,
        "hyperparameters": hp,
        "data": DATA_DESCRIPTION,
        "metric": "valid_ppl = exp(mean over training seeds of the validation loss); "
        f"{hp['eval_batches']} x {hp['batch_size']} x {hp['seq_len']} validation windows",
    }
    if ceiling is not None:
        provenance["noise_ceiling"] = {
            **ceiling,
            "between": "valid_ppl_seed{} vs valid_ppl_seed{}".format(*plan.train_seeds[:2]),
        }
    description = (
        f"{len(records)} {plan.space} architectures (widths x{plan.scale.width_scale}, "
        f"<= {plan.scale.max_layers} layers) trained {hp['steps']} steps on the shipped English "
        f"text with seeds {', '.join(map(str, plan.train_seeds))}; metric validation perplexity"
    )
    spec = BenchmarkSpec(
        name=plan.name,
        space=plan.space,
        metric="valid_ppl",
        higher_is_better=False,
        description=description,
        provenance=provenance,
        records=tuple(records),
    )
    return spec, ceiling


def link_jobs(session: Session, benchmark_id: int, records: Sequence[ArchitectureRecord]) -> None:
    """Point each training job at the architecture row it produced."""
    link_to_architectures(session, benchmark_id, {r.key: r.extra["training_jobs"] for r in records})
