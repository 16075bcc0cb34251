"""Rank correlation of every baseline proxy with the ground truth, per benchmark.

Command (repo root, venv active)::

    python scripts/baseline_table.py [--benchmarks flexibert,gpt2-wt103] [--n 100]
        [--flexibert-batch 8x128] [--gpt2-batch 8x192] [--seed 0] [--builder faithful]
        [--flexibert-objective mlm] [--skip grasp] [--budget-s 450]

A seeded sample of ``--n`` architectures per benchmark (``numpy.random.default_rng(seed)``, without
replacement, in the drawn order so that an early stop leaves a random subset) is scored with
:func:`score_baselines` (init seed, batch seed and sample seed all ``--seed``;
``torch.set_num_threads(1)``). ``--budget-s`` stops a benchmark early once that many seconds are
spent (the table then says how many architectures were scored). Printed
per benchmark: proxy, architectures scored ok, Spearman, Kendall, mean within-stratum Kendall
(FlexiBERT: layer count; GPT-2: ``depth_strata_gpt2``), and mean stand-alone seconds per
architecture. Directions are normalised: positive means the proxy ranks like the trained quality.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from lpzero_queue.benchmarks.batches import make_batch
from lpzero_queue.benchmarks.builders import structural_summary
from lpzero_queue.benchmarks.records import load_shipped
from lpzero_queue.proxies.baselines import BASELINES, score_baselines
from lpzero_queue.proxies.correlation import depth_strata_gpt2, rank_correlations

SPACE = {"flexibert": "flexibert", "gpt2-wt103": "gpt2"}


def _shape(text: str) -> tuple[int, int]:
    b, t = text.lower().split("x")
    return int(b), int(t)


def _fmt(x: float | None) -> str:
    return "   -  " if x is None else f"{x:+.3f}"


def run_benchmark(name: str, args: argparse.Namespace, names: list[str]) -> None:
    """Score the sample of one benchmark and print its table."""
    spec = load_shipped(name)
    space = SPACE[name]
    builder = args.builder if space == "flexibert" else None
    objective = args.flexibert_objective if space == "flexibert" else None
    b, t = _shape(args.flexibert_batch if space == "flexibert" else args.gpt2_batch)
    batch = make_batch(space, seed=args.seed, batch_size=b, seq_len=t)
    rng = np.random.default_rng(args.seed)
    n = min(args.n, len(spec.records))
    picks = rng.choice(len(spec.records), size=n, replace=False).tolist()  # random order

    scores: dict[str, list[float | None]] = {k: [] for k in names}
    seconds: dict[str, list[float]] = {k: [] for k in names}
    errors: dict[str, str] = {}
    truth: list[float] = []
    depth: list[int] = []
    started = time.perf_counter()
    for i, idx in enumerate(picks):
        if time.perf_counter() - started > args.budget_s:
            print(f"[{name}] budget of {args.budget_s:.0f} s reached after {i} architectures")
            break
        rec = spec.records[idx]
        results = score_baselines(
            names,
            space,
            rec.config,
            builder=builder,
            seed=args.seed,
            batch=batch,
            objective=objective,
        )
        truth.append(float(rec.ground_truth[spec.metric]))
        depth.append(structural_summary(space, rec.config, builder)["n_layers"])
        for k, r in results.items():
            scores[k].append(r.score)
            seconds[k].append(r.seconds)
            if r.status == "error":
                errors.setdefault(k, f"arch {rec.key}: {r.error}")
        if (i + 1) % 10 == 0:
            print(f"[{name}] {i + 1}/{n} archs, {time.perf_counter() - started:.0f} s", flush=True)
    total = time.perf_counter() - started

    strata: list[object] = list(depth) if space == "flexibert" else list(depth_strata_gpt2(depth))
    print(
        f"\n## {name}: {len(truth)} architectures, truth {spec.metric} "
        f"({'higher' if spec.higher_is_better else 'lower'} is better), builder "
        f"{builder or 'gpt2'}, objective {objective or 'lm'}, batch {b}x{t}, {total:.0f} s total"
    )
    print(
        f"{'proxy':22s} {'dir':6s} {'ok':>4s} {'spearman':>8s} {'kendall':>8s} "
        f"{'within_k':>8s} {'s/arch':>7s}"
    )
    for k in names:
        ok = [j for j, s in enumerate(scores[k]) if s is not None]
        rep = None
        if len(ok) >= 2:
            rep = rank_correlations(
                [scores[k][j] for j in ok],  # type: ignore[misc]
                [truth[j] for j in ok],
                higher_is_better_truth=spec.higher_is_better,
                higher_is_better_proxy=BASELINES[k].direction == "higher",
                strata=[strata[j] for j in ok],
            )
        print(
            f"{k:22s} {BASELINES[k].direction:6s} {len(ok):4d} "
            f"{_fmt(rep.spearman if rep else None):>8s} {_fmt(rep.kendall if rep else None):>8s} "
            f"{_fmt(rep.within_kendall if rep else None):>8s} {np.mean(seconds[k] or [0.0]):7.2f}"
        )
    for k, e in errors.items():
        print(f"  error {k}: {e}")


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, print the settings, and run each benchmark."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--benchmarks", default="flexibert,gpt2-wt103")
    p.add_argument("--n", type=int, default=100, help="architectures sampled per benchmark")
    p.add_argument("--flexibert-batch", default="8x128")
    p.add_argument("--gpt2-batch", default="8x192")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--builder", default="faithful", help="FlexiBERT builder")
    # "ones" differentiates a LayerNorm-output sum: its gradients are rounding noise.
    p.add_argument("--flexibert-objective", default="mlm")
    p.add_argument("--skip", default="", help="comma-separated baselines to leave out")
    p.add_argument("--budget-s", type=float, default=450.0, help="seconds per benchmark")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    skip = {s for s in args.skip.split(",") if s}
    names = [k for k in BASELINES if k not in skip]
    print("command: python " + " ".join(sys.argv))
    print(f"settings: {vars(args)}; torch threads {torch.get_num_threads()}")
    for name in args.benchmarks.split(","):
        run_benchmark(name, args, names)


if __name__ == "__main__":
    main()
