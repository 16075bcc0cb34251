"""Compare the FlexiBERT ``ones`` and ``mlm`` objectives on gradient-using proxies.

Command (repo root, venv active)::

    python scripts/compare_objectives.py [--n-archs 60] [--batch 8x128] [--threads 1]

On a fixed seeded sample of FlexiBERT architectures (``numpy.random.default_rng(0)``, faithful
builder, init seed 0, batch seed 0) the inputs are computed once per objective and the proxies
that read ``grad`` or ``jacobs`` are scored; Kendall tau (all archs and mean within depth) against
the GLUE score is printed per objective, plus the size of the gradients each objective gives.
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
from lpzero_queue.proxies.correlation import rank_correlations
from lpzero_queue.proxies.expression import LPZERO_GPT2, evaluate_many, parse_expression
from lpzero_queue.proxies.inputs import compute_inputs

PROXIES = (
    LPZERO_GPT2,
    "sum(mean(abs(grad)), mean(abs(jacobs)))",
    "product(frobenius_norm(grad), frobenius_norm(weight))",  # GradNorm x weight scale
    "sum(l1_norm(grad), l1_norm(grad))",  # 2 x mean |grad| (GradNorm-like, L1)
    "sum(frobenius_norm(jacobs), frobenius_norm(jacobs))",  # 2 x ||d loss / d embedding||
    "difference(mean(abslog(grad)), mean(abslog(weight)))",  # log |grad| - log |weight|
)


def _tau(scores: list[float | None], truth: list[float], depth: list[int]) -> str:
    ok = [i for i, s in enumerate(scores) if s is not None]
    if len(ok) < 3:
        return f"{'n/a':>6} {'n/a':>6}"
    rep = rank_correlations(
        [scores[i] for i in ok],  # type: ignore[misc]
        [truth[i] for i in ok],
        higher_is_better_truth=True,
        higher_is_better_proxy=True,
        strata=[depth[i] for i in ok],
    )
    tau = "const" if rep.kendall is None else f"{rep.kendall:+.3f}"
    within = "n/a" if rep.within_kendall is None else f"{rep.within_kendall:+.3f}"
    bad = len(scores) - len(ok)
    return f"{tau:>6} {within:>6}" + (f" ({bad} not ok)" if bad else "")


def main() -> None:
    """Run the comparison and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-archs", type=int, default=60)
    parser.add_argument("--batch", default="8x128", help="BATCHxSEQ")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bs, seq = (int(v) for v in args.batch.split("x"))
    print("command: python " + " ".join(sys.argv))
    print(f"machine: {os.cpu_count()} cores, torch threads {torch.get_num_threads()}")

    bench = load_shipped("flexibert")
    idx = sorted(np.random.default_rng(0).choice(len(bench.records), args.n_archs, replace=False))
    records = [bench.records[i] for i in idx]
    truth = [r.ground_truth["glue"] for r in records]
    depth = [len(r.config["encoder_layers"]) for r in records]
    batch = make_batch("flexibert", seed=0, batch_size=bs, seq_len=seq)
    exprs = [parse_expression(p) for p in PROXIES]
    print(f"flexibert faithful, {len(records)} archs (rng 0), batch {bs}x{seq}, init seed 0")

    results: dict[str, list[list[float | None]]] = {}
    for objective in ("ones", "mlm"):
        scores: list[list[float | None]] = [[] for _ in exprs]
        grad_abs: list[float] = []
        jac_abs: list[float] = []
        started = time.perf_counter()
        for rec in records:
            inputs = compute_inputs(
                "flexibert",
                rec.config,
                builder="faithful",
                seed=0,
                batch=batch,
                objective=objective,
            )
            grad_abs.append(float(np.median([t.abs().mean() for t in inputs.tensors["grad"]])))
            jac_abs.append(float(inputs.tensors["jacobs"][0].abs().mean()))
            for j, res in enumerate(evaluate_many(exprs, inputs.tensors)):
                scores[j].append(res.score)
        sec = (time.perf_counter() - started) / len(records)
        results[objective] = scores
        print(
            f"objective {objective}: {sec:.2f} s/arch; median over archs of mean|grad| "
            f"{np.median(grad_abs):.3e}, of mean|jacobs| {np.median(jac_abs):.3e}"
        )
    layers_tau = _tau([float(d) for d in depth], truth, depth)
    print()
    print(f"{'proxy':<56} {'objective':<9} {'tau':>6} {'within':>6}")
    print(f"{'#layers (trivial baseline)':<56} {'-':<9} {layers_tau}")
    for j, text in enumerate(PROXIES):
        for objective in ("ones", "mlm"):
            print(f"{text:<56} {objective:<9} {_tau(results[objective][j], truth, depth)}")
    print("\ntau: Kendall tau-b vs GLUE, proxy taken as higher-is-better (sign = direction);")
    print("within: mean tau inside each depth group (2 and 4 layers).")


if __name__ == "__main__":
    main()
