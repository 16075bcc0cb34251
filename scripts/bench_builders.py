"""Benchmark the architecture builders: build time, forward+backward time, peak RSS.

Each sampled architecture runs in a fresh Python subprocess so that its peak resident set
(``VmHWM`` in /proc/self/status) is its own; the reported memory is that peak minus the RSS after
imports and data loading (i.e. what the model, its forward and its backward add). Token ids are
random; the loss is a random projection of the last hidden state (FlexiBERT) or the LM loss
(GPT-2).

Run (from the repository root, inside the virtual environment)::

    python scripts/bench_builders.py                      # 20 architectures per benchmark
    python scripts/bench_builders.py --n 10 --jemalloc    # glibc malloc vs jemalloc side by side
    python scripts/bench_builders.py --space gpt2 --gpt2-batch 16 --gpt2-seq 192
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "lpzero_queue" / "benchmarks" / "data"
JEMALLOC = Path("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")
METRICS = ("build_s", "fwd_bwd_s", "peak_rss_mib")


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def run_worker(args: argparse.Namespace) -> None:
    """Build and run one architecture; print one JSON line with the measurements."""
    import torch

    from lpzero_queue.benchmarks.builders import build_model, structural_summary

    if args.threads:
        torch.set_num_threads(args.threads)
    records = json.loads((DATA / _data_dir(args.space) / "benchmark.json").read_text())
    record = records[args.worker]
    config = record["config"] if args.space == "gpt2" else record
    batch, seq = (
        (args.gpt2_batch, args.gpt2_seq) if args.space == "gpt2" else (args.fb_batch, args.fb_seq)
    )
    vocab = 50264 if args.space == "gpt2" else 30522
    gen = torch.Generator().manual_seed(args.seed)
    ids = torch.randint(0, vocab, (batch, seq), generator=gen)
    builder = args.builder if args.space == "flexibert" else None
    # Warm-up on the meta device (no memory): the first meta construction imports torch's
    # Python reference ops (~1-2 s), a one-off per process that would swamp the build time.
    structural_summary(args.space, config, builder)
    base = _rss_kib("VmRSS")

    t0 = time.perf_counter()
    model = build_model(args.space, config, builder=builder, seed=args.seed)
    t1 = time.perf_counter()
    if args.space == "gpt2":
        loss = model(ids, labels=ids).loss
    else:
        hidden = model(ids, torch.ones_like(ids))  # (B, T, H)
        loss = (hidden * torch.randn(hidden.shape, generator=gen)).sum()
    loss.backward()
    t2 = time.perf_counter()
    peak = _rss_kib("VmHWM")
    print(
        json.dumps(
            {
                "id": record["id"],
                "build_s": t1 - t0,
                "fwd_bwd_s": t2 - t1,
                "peak_rss_mib": (peak - base) / 1024,
            }
        )
    )


def _data_dir(space: str) -> str:
    return "gpt2_wt103" if space == "gpt2" else "flexibert"


def _sample(space: str, n: int, seed: int) -> list[int]:
    import numpy as np

    total = len(json.loads((DATA / _data_dir(space) / "benchmark.json").read_text()))
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(total, size=min(n, total), replace=False))


def _measure(args: argparse.Namespace, space: str, index: int, env: dict[str, str]) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(index), "--space", space]
    cmd += ["--seed", str(args.seed), "--threads", str(args.threads)]
    cmd += ["--fb-batch", str(args.fb_batch), "--fb-seq", str(args.fb_seq)]
    cmd += ["--gpt2-batch", str(args.gpt2_batch), "--gpt2-seq", str(args.gpt2_seq)]
    if space == "flexibert":
        cmd += ["--builder", args.builder]
    out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _stats(values: list[float]) -> tuple[float, float, float]:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return statistics.median(ordered), p90, ordered[-1]


def _table(title: str, runs: dict[str, list[dict[str, Any]]]) -> str:
    names = list(runs)
    cells = [f"| {n + ' median':>16} {'p90':>8} {'max':>8} " for n in names]
    head = f"{'metric':<14}" + "".join(cells)
    lines = [title, head, "-" * len(head)]
    for metric in METRICS:
        row = f"{metric:<14}"
        for name in names:
            med, p90, top = _stats([r[metric] for r in runs[name]])
            row += f"| {med:>16.3f} {p90:>8.3f} {top:>8.3f} "
        lines.append(row)
    return "\n".join(lines)


def main() -> None:
    """Parse flags, run the sampled architectures in subprocesses, print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", choices=("flexibert", "gpt2", "all"), default="all")
    parser.add_argument("--builder", default="faithful", help="FlexiBERT builder")
    parser.add_argument("--n", type=int, default=20, help="architectures sampled per benchmark")
    parser.add_argument("--seed", type=int, default=0, help="sample, weight and token seed")
    parser.add_argument("--fb-batch", type=int, default=16)
    parser.add_argument("--fb-seq", type=int, default=128)
    parser.add_argument("--gpt2-batch", type=int, default=8)
    parser.add_argument("--gpt2-seq", type=int, default=192)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--jemalloc", action="store_true", help="also run under jemalloc")
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        run_worker(args)
        return

    allocators = {"glibc": dict(os.environ)}
    if args.jemalloc:
        if JEMALLOC.exists():
            allocators["jemalloc"] = {**os.environ, "LD_PRELOAD": str(JEMALLOC)}
        else:
            print(f"note: {JEMALLOC} not found; install it with `apt-get install libjemalloc2`")
    spaces = ("flexibert", "gpt2") if args.space == "all" else (args.space,)
    for space in spaces:
        shape = (
            f"{args.gpt2_batch}x{args.gpt2_seq}"
            if space == "gpt2"
            else f"{args.fb_batch}x{args.fb_seq}, builder {args.builder}"
        )
        indices = _sample(space, args.n, args.seed)
        runs = {
            name: [_measure(args, space, i, env) for i in indices]
            for name, env in allocators.items()
        }
        print(_table(f"\n{space}: {len(indices)} architectures, batch {shape}", runs))


if __name__ == "__main__":
    main()
