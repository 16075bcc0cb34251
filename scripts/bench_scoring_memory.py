"""Resident memory of a scoring process over a search's stream of expressions on one GPT-2
architecture, with and without giving the heap's free pages back after each batch.

    python scripts/bench_scoring_memory.py --record 5 --batches 8
    python scripts/bench_scoring_memory.py --record 5 --batches 8 --no-trim

Extracts the inputs of shipped GPT-2 record ``--record`` (default batch and linear scope), then
scores ``--batches`` batches of 40 random expressions with one branch memo (as a scoring process
does generation after generation), printing after each batch the resident size, the live tensors
and the memo's size. With trimming (the default, what ``execution.base.score_as_result`` does
after every unit) the resident size stays at what is alive; with ``--no-trim`` glibc keeps the
freed float64 temporaries' pages and the process grows.
"""

from __future__ import annotations

import argparse
import gc
import time

import numpy as np
import torch

from lpzero_queue.benchmarks.records import load_shipped
from lpzero_queue.execution.base import release_free_heap
from lpzero_queue.proxies.expression import evaluate_many
from lpzero_queue.proxies.inputs import compute_inputs
from lpzero_queue.proxies.scoring import ScoringSetup, input_batch
from lpzero_queue.search.genotype import random_valid_genotype


def _rss_gb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**30


def main() -> None:
    """Run and print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", type=int, default=5)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--no-trim", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    setup = ScoringSetup.resolve("gpt2")
    batch = input_batch("gpt2", 0, setup.batch_size, setup.seq_len)
    config = load_shipped("gpt2-wt103").records[args.record].config
    inputs = compute_inputs(
        "gpt2", config, builder=None, seed=0, batch=batch, linear_scope=setup.linear_scope
    ).tensors
    rng = np.random.default_rng(0)
    memo: dict[object, object] = {}
    started = time.perf_counter()
    for i in range(args.batches):
        exprs = [
            random_valid_genotype(
                rng, 2, lambda g: True, reductions=("mean", "total")
            ).to_expression()
            for _ in range(40)
        ]
        evaluate_many(exprs, inputs, memo=memo)  # type: ignore[arg-type]
        gc.collect()
        if not args.no_trim:
            release_free_heap()
        tensors = sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor))
        print(f"batch {i}: rss {_rss_gb():.2f} GB, live tensors {tensors}, memo {len(memo)}")
    print(f"{'no trim' if args.no_trim else 'trim'}: {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
