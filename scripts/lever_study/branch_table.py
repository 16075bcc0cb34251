"""Research harness: per-architecture per-tensor means of every canonical branch (chain <= K).

Any expression binary(reduce) is then a numpy function of two branch vectors.
Usage: python branch_table.py SPACE OUT.pkl [--n N] [--seed S] [--k 2]
"""
import os
import argparse, itertools, pickle, time
import numpy as np, torch
torch.set_num_threads(1)
from lpzero_queue.benchmarks.batches import make_batch
from lpzero_queue.benchmarks.records import load_shipped
from lpzero_queue.proxies.expression import Branch, _branch_means, _canonical_chain
from lpzero_queue.proxies.operators import INPUT_NAMES, UNARY_OPS
from lpzero_queue.proxies.inputs import DEFAULT_BATCH, compute_inputs
from lpzero_queue.proxies.scoring import ScoringSetup

ap = argparse.ArgumentParser()
ap.add_argument("space"); ap.add_argument("out")
ap.add_argument("--n", type=int, default=0); ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--k", type=int, default=2); ap.add_argument("--start", type=int, default=0)
a = ap.parse_args()
name = "flexibert" if a.space == "flexibert" else "gpt2-wt103"
spec = load_shipped(name)
recs = spec.records[a.start:(a.start + a.n) if a.n else None]
setup = ScoringSetup.resolve(a.space)
batch = make_batch(a.space, seed=a.seed, batch_size=setup.batch_size, seq_len=setup.seq_len)
ops = sorted(o for o in UNARY_OPS if o != "no_op")
chains = set()
for k in range(a.k + 1):
    for c in itertools.product(ops, repeat=k):
        chains.add(_canonical_chain(c))
branches = sorted({Branch(i, c) for i in INPUT_NAMES for c in chains}, key=lambda b: (b.input, b.unary))
print(len(branches), "branches", len(recs), "archs", setup, flush=True)
table = {}
t0 = time.time()
for j, rec in enumerate(recs):
    t1 = time.time()
    inp = compute_inputs(a.space, rec.config, builder=setup.builder, seed=a.seed, batch=batch,
                         objective=setup.objective, linear_scope=setup.linear_scope)
    t2 = time.time()
    means = _branch_means(branches, inp.tensors)
    row = {}
    for b, v in means.items():
        row[(b.input, b.unary)] = None if isinstance(v, Exception) else v.numpy().astype(np.float64)
    table[rec.key] = row
    if j % 10 == 0:
        print(j, f"extract {t2-t1:.2f}s branches {time.time()-t2:.2f}s total {time.time()-t0:.0f}s", flush=True)
meta = {rec.key: dict(config=rec.config, truth=rec.ground_truth, position=rec.position) for rec in recs}
pickle.dump(dict(setup=setup.__dict__, seed=a.seed, table=table, meta=meta,
                 metric=spec.metric, higher=spec.higher_is_better), open(a.out, "wb"))
print("done", time.time() - t0)
