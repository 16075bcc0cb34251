import os
import sys, pickle, torch
torch.set_num_threads(1)
from lpzero_queue.benchmarks.records import load_shipped
from lpzero_queue.benchmarks.builders import build_model
space = sys.argv[1]; name = "flexibert" if space == "flexibert" else "gpt2-wt103"
out = {}
for rec in load_shipped(name).records:
    with torch.device("meta"):
        pass
    m = build_model(space, rec.config, builder=None, seed=0)
    blocks = m.layers if hasattr(m, "layers") else (m.blocks if hasattr(m, "blocks") else None)
    if blocks is None:
        for attr in ("model", "encoder", "transformer", "bert"):
            sub = getattr(m, attr, None)
            if sub is not None:
                blocks = getattr(sub, "layers", None) or getattr(sub, "blocks", None)
                if blocks is not None: break
    out[rec.key] = [sum(p.numel() for p in b.parameters()) for b in blocks]
    del m
pickle.dump(out, open(sys.argv[2], "wb"))
print(len(out), list(out.items())[:3])
