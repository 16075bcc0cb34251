"""Which Linears feed the `weight`/`grad` inputs matters for the published GPT-2 proxy.

Run: python scripts/gpt2_weight_scope.py [--n 40]

Scores `sum(l1_norm(square(weight)), square(softmax(grad)))` (the published LPZero GPT-2 proxy,
lower is better) on a seeded sample of GPT-2 architectures twice: with `weight`/`grad` taken from
the token-mixing Linears only (docs/method.md; what lpzq's inputs use) and from every nn.Linear of
the model (what the published repository's GPT-2 scoring path gathers), and prints Kendall tau of
each against validation perplexity.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from scipy.stats import kendalltau

from lpzero_queue.benchmarks import build_model, lm_labels, load_shipped, make_batch
from lpzero_queue.proxies.operators import BINARY_OPS, UNARY_OPS


def published_proxy(weights: list[torch.Tensor], grads: list[torch.Tensor]) -> float:
    """The published GPT-2 proxy, reduced as published (per-tensor means, zip, mean)."""
    left = [UNARY_OPS["l1_norm"](UNARY_OPS["square"](w)).mean() for w in weights]
    right = [UNARY_OPS["square"](UNARY_OPS["softmax"](g)).mean() for g in grads]
    pairs = zip(left, right, strict=True)  # one weight and one grad per Linear
    return float(torch.stack([BINARY_OPS["sum"](a, b) for a, b in pairs]).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40, help="architectures in the sample")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    records = load_shipped("gpt2-wt103").records
    chosen = np.random.default_rng(args.seed).choice(len(records), args.n, replace=False)
    batch = make_batch("gpt2", seed=args.seed, batch_size=4, seq_len=192)
    mixer, every, ppl = [], [], []
    for i in chosen:
        record = records[int(i)]
        model = build_model("gpt2", record.config, seed=args.seed)
        model(batch.input_ids, labels=lm_labels(batch)).loss.backward()
        linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
        linears = [m for m in linears if m.weight.grad is not None]
        mixers = model.mixer_linears()
        mixer.append(
            published_proxy([m.weight.detach() for m in mixers], [m.weight.grad for m in mixers])
        )
        every.append(
            published_proxy([m.weight.detach() for m in linears], [m.weight.grad for m in linears])
        )
        ppl.append(record.ground_truth["valid_ppl"])
    # Lower proxy and lower perplexity are both better: a positive tau means it ranks well.
    print(f"GPT-2, {args.n} architectures (seed {args.seed}), batch 4x192, objective lm")
    print(
        f"  weight/grad from token-mixing Linears: Kendall {kendalltau(mixer, ppl).statistic:+.3f}"
    )
    print(
        f"  weight/grad from every Linear:         Kendall {kendalltau(every, ppl).statistic:+.3f}"
    )


if __name__ == "__main__":
    main()
