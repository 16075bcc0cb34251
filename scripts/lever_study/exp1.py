import os
import sys, pickle, numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from analyze import *
bt = load(os.environ.get("LEVER_DIR", "out/lever_study") + "/fb_k1_[02]*.pkl")
lp = pickle.load(open(os.environ.get("LEVER_DIR", "out/lever_study") + "/fb_layer_params.pkl", "rb")) if len(sys.argv) > 1 else None
d = build(bt, lp)
N = len(d["y"]); print("N", N, "branches", len(d["branches"]))
names, S = all_scores(d)
print("exprs", S.shape)
valid = np.all(np.isfinite(S), 1) & (np.nanstd(S, 1) > 0)
S = S[valid]; names = [n for n, v in zip(names, valid) if v]
print("valid", S.shape)
np.save(os.environ.get("LEVER_DIR", "out/lever_study") + "/S.npy", S); pickle.dump((names, d), open(os.environ.get("LEVER_DIR", "out/lever_study") + "/names_d.pkl", "wb"))
