"""Candidate throughput with the input cache versus recomputing inputs per candidate.

Command (repo root, venv active)::

    python scripts/bench_cache.py [--n-archs 50] [--n-exprs 40] [--recompute-exprs 1]

The first 50 FlexiBERT architectures (faithful builder, the default batch, init seed 0) and 40
random valid expressions (``numpy.random.default_rng(0)``, k=2 unary operators per branch, provably
constant ones redrawn) are scored twice:

- cached: inputs computed once per architecture into an :class:`InputCache`, then
  ``evaluate_many`` over all expressions (cold: including those computations; warm: a second pass
  served from the cache, the steady state of a search after its first generation);
- recompute (the published design): ``compute_inputs`` + ``evaluate`` for every (expression,
  architecture); timed on a subset of expressions x all architectures and extrapolated per
  candidate.

Each storage dtype (float32, float16) runs in its own child process so that its peak RSS
(VmHWM) is its own; the parent prints the table and the Spearman change float16 causes. Rates are
printed per wall-clock second and per CPU second of the child (``time.process_time``): on a machine
shared with other work, the wall-clock ratio moves with the load between the two timed phases.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

import numpy as np
import torch

SEED = 0
GB = 1 << 30


def _vm_hwm_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def random_expressions(n: int, seed: int = 0) -> list[str]:
    """Draw ``n`` distinct, not provably constant expressions with two unary ops per branch."""
    from lpzero_queue.proxies.expression import (
        Branch,
        Expression,
        canonicalize,
        format_expression,
        is_provably_constant,
    )
    from lpzero_queue.proxies.operators import BINARY_OPS, INPUT_NAMES, UNARY_OPS

    rng = np.random.default_rng(seed)
    unary, binary = sorted(UNARY_OPS), sorted(BINARY_OPS)
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        branches = [
            Branch(str(rng.choice(INPUT_NAMES)), tuple(str(u) for u in rng.choice(unary, 2)))
            for _ in range(2)
        ]
        e = Expression(str(rng.choice(binary)), *branches)
        canon = format_expression(canonicalize(e))
        if is_provably_constant(e) or canon in seen:
            continue
        seen.add(canon)
        out.append(format_expression(e))
    return out


def child(dtype_name: str, n_archs: int, n_exprs: int, n_recompute: int) -> dict[str, Any]:
    """Run the measurement for one storage dtype; returns plain numbers."""
    from lpzero_queue.benchmarks.batches import make_batch
    from lpzero_queue.benchmarks.records import load_shipped
    from lpzero_queue.proxies.cache import InputCache
    from lpzero_queue.proxies.expression import evaluate, evaluate_many, parse_expression
    from lpzero_queue.proxies.inputs import DEFAULT_BATCH, compute_inputs, inputs_key

    dtype = getattr(torch, dtype_name)
    records = load_shipped("flexibert").records[:n_archs]
    bs, seq = DEFAULT_BATCH["flexibert"]
    batch = make_batch("flexibert", seed=SEED, batch_size=bs, seq_len=seq)
    exprs = [parse_expression(t) for t in random_expressions(n_exprs)]
    cache = InputCache(max_bytes=8 * GB, dtype=dtype)
    base_mb = _vm_hwm_mb()

    def get(rec: Any) -> Any:
        key = inputs_key("flexibert", rec.config, builder="faithful", seed=SEED, batch=batch)
        return cache.get_or_compute(
            key,
            lambda: compute_inputs(
                "flexibert", rec.config, builder="faithful", seed=SEED, batch=batch, dtype=dtype
            ),
        )

    t_compute = t_eval = 0.0
    scores: list[list[float | None]] = []
    for rec in records:
        t0 = time.perf_counter()
        inputs = get(rec)
        t1 = time.perf_counter()
        scores.append([r.score for r in evaluate_many(exprs, inputs.tensors)])
        t_compute, t_eval = t_compute + t1 - t0, t_eval + time.perf_counter() - t1
    t0, c0 = time.perf_counter(), time.process_time()
    for rec in records:  # warm pass: every lookup is a hit
        evaluate_many(exprs, get(rec).tensors)
    t_warm, c_warm = time.perf_counter() - t0, time.process_time() - c0
    stats = cache.stats()

    t0, c0 = time.perf_counter(), time.process_time()
    for e in exprs[:n_recompute] if dtype == torch.float32 else []:
        for rec in records:
            inputs = compute_inputs(
                "flexibert", rec.config, builder="faithful", seed=SEED, batch=batch, dtype=dtype
            )
            try:
                evaluate(e, inputs.tensors)
            except Exception:
                continue
    t_recompute, c_recompute = time.perf_counter() - t0, time.process_time() - c0
    return {
        "dtype": dtype_name,
        "batch": f"{bs}x{seq}",
        "t_compute": t_compute,
        "t_eval": t_eval,
        "t_warm": t_warm,
        "t_recompute": t_recompute,
        "c_warm": c_warm,
        "c_recompute": c_recompute,
        "n_recompute": n_recompute * len(records) if dtype == torch.float32 else 0,
        "bytes": stats.bytes_in_ram,
        "entries": stats.entries,
        "computes": stats.computes,
        "hits": stats.hits,
        "vmhwm_mb": _vm_hwm_mb(),
        "base_mb": base_mb,
        "scores": scores,
    }


def _spearmans(scores: list[list[float | None]], truth: list[float]) -> list[float | None]:
    from lpzero_queue.proxies.correlation import rank_correlations

    out: list[float | None] = []
    for j in range(len(scores[0])):
        col = [row[j] for row in scores]
        ok = [i for i, s in enumerate(col) if s is not None]
        if len(ok) < len(col) // 2:
            out.append(None)
            continue
        rep = rank_correlations(
            [col[i] for i in ok],  # type: ignore[misc]
            [truth[i] for i in ok],
            higher_is_better_truth=True,
            higher_is_better_proxy=True,
        )
        out.append(rep.spearman)
    return out


def main() -> None:
    """Run both dtypes in child processes and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-archs", type=int, default=50)
    parser.add_argument("--n-exprs", type=int, default=40)
    parser.add_argument("--recompute-exprs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        res = child(args.child, args.n_archs, args.n_exprs, args.recompute_exprs)
        print(json.dumps(res))
        return

    print("command: python " + " ".join(sys.argv))
    print(f"machine: {os.cpu_count()} cores, torch threads {torch.get_num_threads()}")
    results = {}
    for name in ("float32", "float16"):
        cmd = [
            sys.executable,
            __file__,
            "--child",
            name,
            "--n-archs",
            str(args.n_archs),
            "--n-exprs",
            str(args.n_exprs),
            "--recompute-exprs",
            str(args.recompute_exprs),
            "--threads",
            str(args.threads),
        ]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        results[name] = json.loads(out.strip().splitlines()[-1])
    r32 = results["float32"]
    n_a, n_e = args.n_archs, args.n_exprs
    cand = n_a * n_e
    print(f"FlexiBERT faithful, first {n_a} archs, batch {r32['batch']}, {n_e} random expressions")
    print(
        f"recompute timed on {args.recompute_exprs} expression(s) x {n_a} archs "
        f"({r32['n_recompute']} candidates, float32 run), extrapolated per candidate;"
    )
    print("its cost is one extraction + one evaluate, independent of the storage dtype")
    print()
    hdr = (
        f"{'dtype':<8} {'cold cand/s':>11} {'warm cand/s':>11} {'recomp cand/s':>13} "
        f"{'cold x':>7} {'warm x':>7} {'1000-cand x':>11} {'cache MB':>9} {'VmHWM MB':>9}"
    )
    print(hdr)
    cpu_rows = []
    for name, r in results.items():
        cold = cand / (r["t_compute"] + r["t_eval"])
        warm = cand / r["t_warm"]
        recompute = r32["n_recompute"] / r32["t_recompute"]  # timed once, in float32
        per_c = r["t_compute"] / n_a  # one extraction
        # A search of 1000 candidates on the same archs: extraction once, then warm evaluations.
        search_cached = n_a * per_c + 1000 * n_a / warm
        search_recompute = 1000 * n_a / recompute
        print(
            f"{name:<8} {cold:>11.1f} {warm:>11.1f} {recompute:>13.2f} "
            f"{cold / recompute:>7.1f} {warm / recompute:>7.0f} "
            f"{search_recompute / search_cached:>11.0f} {r['bytes'] / 1e6:>9.1f} "
            f"{r['vmhwm_mb']:>9.0f}"
        )
        cpu_warm, cpu_recompute = cand / r["c_warm"], r32["n_recompute"] / r32["c_recompute"]
        cpu_rows.append(
            f"{name:<8} {cpu_warm:>11.1f} {cpu_recompute:>13.2f} {cpu_warm / cpu_recompute:>7.0f}"
        )
    print()
    print("the same per CPU second of this process (less sensitive to other load on the machine):")
    print(f"{'dtype':<8} {'warm cand/s':>11} {'recomp cand/s':>13} {'warm x':>7}")
    print("\n".join(cpu_rows))
    print()
    print(
        "cold: inputs computed once per arch inside the run, then evaluate_many over the "
        "expressions;"
    )
    print("warm: inputs already cached (search steady state); 1000-cand: projected ratio for a")
    print("1000-candidate search on these archs (extract once + warm evals vs recompute each).")
    print(f"VmHWM before the first model (imports, batch): {r32['base_mb']:.0f} MB")
    from lpzero_queue.benchmarks.records import load_shipped

    truth = [r.ground_truth["glue"] for r in load_shipped("flexibert").records[:n_a]]
    rho32 = _spearmans(r32["scores"], truth)
    rho16 = _spearmans(results["float16"]["scores"], truth)
    s32 = np.array(r32["scores"], dtype=float)
    s16 = np.array(results["float16"]["scores"], dtype=float)
    changed = int(np.sum(~np.isclose(s32, s16, rtol=0, atol=0, equal_nan=True)))
    deltas = [
        abs(a - b) for a, b in zip(rho32, rho16, strict=True) if a is not None and b is not None
    ]
    flips = sum((a is None) != (b is None) for a, b in zip(rho32, rho16, strict=True))
    print(
        f"float16 vs float32: {changed}/{s32.size} scores differ; over the {len(deltas)} "
        f"expressions scored on both: max |delta rho| = {max(deltas):.4f}, "
        f"median {np.median(deltas):.4f}; {flips} expression(s) valid in only one dtype"
    )
    worst = int(
        np.argmax(
            [
                abs(a - b) if a is not None and b is not None else -1
                for a, b in zip(rho32, rho16, strict=True)
            ]
        )
    )
    print(
        f"largest change: {random_expressions(n_e)[worst]} "
        f"(rho {rho32[worst]:+.3f} -> {rho16[worst]:+.3f})"
    )


if __name__ == "__main__":
    main()
