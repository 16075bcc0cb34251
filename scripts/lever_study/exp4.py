import os
import sys, pickle, numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from analyze import *
S = np.load(os.environ.get("LEVER_DIR", "out/lever_study") + "/S.npy"); names, d = pickle.load(open(os.environ.get("LEVER_DIR", "out/lever_study") + "/names_d.pkl", "rb"))
y, D, W = d["y"], d["D"], d["W"]; N = len(y); g = np.stack([D, W], 1)
struct = np.array([n[0][0] == "params" or n[2][0] == "params" for n in names])
lp = pickle.load(open(os.environ.get('LEVER_DIR', 'out/lever_study') + '/fb_layer_params.pkl','rb')); P = np.array([sum(lp[k]) for k in d['keys']], float)
def within_sp(rows, idx):
    out = np.zeros(len(rows)); c = 0
    for gg in np.unique(g[idx], axis=0):
        m = idx[np.all(g[idx] == gg, 1)]
        if len(m) < 3: continue
        out += np.nan_to_num(spearman_rows(S[rows][:, m], y[m]), nan=0); c += 1
    return out / c
def lex(x):  # rank x within the (D, W) key: combined key via ranks
    r = stats.rankdata(x) / (len(x) + 1)
    return D * 1e4 + W + r
res = {}
for nfit in (50, 100):
  for mask_name, mask in (("neural", ~struct), ("all", np.ones(len(S), bool))):
    for kv in (0, 20):
        out = []
        for seed in range(6):
            rng = np.random.default_rng(1000 + seed); perm = rng.permutation(N)
            fit = perm[:nfit]; val = perm[nfit:nfit + 50]; test = perm[nfit + 50:]
            rows = np.flatnonzero(mask)
            f = within_sp(rows, fit)
            if kv:
                top = rows[np.argsort(-f)[:kv]]; best = top[np.argmax(within_sp(top, val))]
            else: best = rows[np.argmax(f)]
            # note lex uses ranks over all archs; test only cares about order within test
            r = report(d, lex(S[best]), test); out.append((r["kt"], r["wd"], r["wdh"], fmt(names[best])))
        a = np.array([o[:3] for o in out])
        print(f"fit{nfit} {mask_name:7s} val{kv:2d} kt {a[:,0].mean():.3f}±{a[:,0].std():.3f} wd {a[:,1].mean():.3f} wdh {a[:,2].mean():.3f}±{a[:,2].std():.3f} {out[0][3]}", flush=True)
