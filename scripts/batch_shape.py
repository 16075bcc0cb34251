"""Effect of the proxy batch shape on ranking quality and cost.

Command (repo root, venv active; one space per run keeps each run under ~10 minutes)::

    python scripts/batch_shape.py --space flexibert [--shapes 4x64,8x128,16x128,32x128]
    python scripts/batch_shape.py --space gpt2 [--shapes 4x192,8x192,16x192]

For a fixed seeded sample of architectures (``numpy.random.default_rng(0)``, 60 by default; the
default builder, init seed 0, batch seed 0, the space's default objective) the six inputs are
computed for every batch shape and a handful of proxies is scored: Kendall tau against the ground
truth (over all archs and mean within depth groups) and the seconds per architecture.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

from lpzero_queue.benchmarks.batches import make_batch
from lpzero_queue.benchmarks.records import load_shipped
from lpzero_queue.proxies.correlation import depth_strata_gpt2, rank_correlations
from lpzero_queue.proxies.expression import (
    LPZERO_FLEXIBERT,
    LPZERO_GPT2,
    evaluate_many,
    parse_expression,
)
from lpzero_queue.proxies.inputs import compute_inputs
from lpzero_queue.proxies.objective import resolve_objective

PROXIES = (
    LPZERO_FLEXIBERT,
    LPZERO_GPT2,
    "sum(frobenius_norm(act), frobenius_norm(act))",  # activation scale
    "sum(l1_norm(head), to_std_scalar(act))",  # query scale + activation spread
    "product(frobenius_norm(grad), frobenius_norm(weight))",  # gradient x weight norm
    "sum(mean(abslog(softmax)), mean(abslog(softmax)))",  # attention log-probability (entropy)
)
SHORT = ("lpz_fb", "lpz_g2", "act", "head+act", "grad*w", "softmax")
BENCH = {"flexibert": "flexibert", "gpt2": "gpt2-wt103"}
DEFAULT_SHAPES = {"flexibert": "4x64,8x128,16x128,32x128", "gpt2": "4x192,8x192,16x192"}


def main() -> None:
    """Score the proxies for every batch shape and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", choices=sorted(BENCH), required=True)
    parser.add_argument("--shapes", default=None, help="comma-separated BATCHxSEQ")
    parser.add_argument("--n-archs", type=int, default=60)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    space = args.space
    shapes = [
        tuple(int(v) for v in s.split("x"))
        for s in (args.shapes or DEFAULT_SHAPES[space]).split(",")
    ]
    print("command: python " + " ".join(sys.argv))
    print(f"machine: {os.cpu_count()} cores, torch threads {torch.get_num_threads()}")

    bench = load_shipped(BENCH[space])
    idx = sorted(np.random.default_rng(0).choice(len(bench.records), args.n_archs, replace=False))
    records = [bench.records[i] for i in idx]
    truth = [r.ground_truth[bench.metric] for r in records]
    if space == "flexibert":
        strata: list[object] = [len(r.config["encoder_layers"]) for r in records]
    else:
        strata = list(depth_strata_gpt2([r.config["n_layer"] for r in records]))
    objective = resolve_objective(space)
    exprs = [parse_expression(p) for p in PROXIES]
    print(f"{space}: {len(records)} archs (rng 0), default builder, objective {objective}")
    for name, text in zip(SHORT, PROXIES, strict=True):
        print(f"  {name:<9} {text}")
    print("cells: Kendall tau-b vs ground truth (all archs) / mean tau within depth groups;")
    print("proxy taken as higher-is-better, truth oriented so that + means 'ranks like quality'.")
    print()
    print(f"{'shape':<8} {'s/arch':>6} {'MB/arch':>7}  " + "  ".join(f"{n:>13}" for n in SHORT))
    for bs, seq in shapes:
        batch = make_batch(space, seed=0, batch_size=bs, seq_len=seq)
        scores: list[list[float | None]] = [[] for _ in exprs]
        started = time.perf_counter()
        nbytes = 0
        for rec in records:
            inputs = compute_inputs(space, rec.config, builder=None, seed=0, batch=batch)
            nbytes += inputs.nbytes
            for j, res in enumerate(evaluate_many(exprs, inputs.tensors)):
                scores[j].append(res.score)
        sec = (time.perf_counter() - started) / len(records)
        cells = []
        for col in scores:
            ok = [i for i, s in enumerate(col) if s is not None]
            rep = rank_correlations(
                [col[i] for i in ok],  # type: ignore[misc]
                [truth[i] for i in ok],
                higher_is_better_truth=bench.higher_is_better,
                higher_is_better_proxy=True,
                strata=[strata[i] for i in ok],
            )
            tau = "const" if rep.kendall is None else f"{rep.kendall:+.3f}"
            within = "n/a" if rep.within_kendall is None else f"{rep.within_kendall:+.3f}"
            cells.append(f"{tau}/{within}" + ("*" if len(ok) < len(col) else ""))
        mb = nbytes / len(records) / 1e6
        print(
            f"{bs}x{seq:<6} {sec:>6.2f} {mb:>7.1f}  " + "  ".join(f"{c:>13}" for c in cells),
            flush=True,
        )
    print("\n* = some architectures scored non-finite/error and were left out of that cell.")


if __name__ == "__main__":
    main()
