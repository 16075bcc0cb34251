import os
import sys, pickle, numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from analyze import *
S = np.load(os.environ.get("LEVER_DIR", "out/lever_study") + "/S.npy"); names, d = pickle.load(open(os.environ.get("LEVER_DIR", "out/lever_study") + "/names_d.pkl", "rb"))
y, D, W = d["y"], d["D"], d["W"]
g = np.stack([D, W], 1)
# spearman within dh for all exprs on all archs (fast), then tie-fair kendall for top
ws = np.zeros(len(S)); cnt = 0
for gg in np.unique(g, axis=0):
    m = np.all(g == gg, 1); ws += spearman_rows(S[:, m], y[m]); cnt += 1
ws /= cnt
order = np.argsort(-np.nan_to_num(ws, nan=-9))[:15]
for i in order:
    print(f"{ws[i]:.3f}", round(within(S[i], y, g), 3), fmt(names[i]))
# per-group best
for gg in np.unique(g, axis=0):
    m = np.all(g == gg, 1); sp = spearman_rows(S[:, m], y[m]); i = np.nanargmax(sp)
    print(gg, m.sum(), f"best spearman {sp[i]:.3f}", fmt(names[i]))
