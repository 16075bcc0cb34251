import os
import sys, pickle, numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from analyze import *
S = np.load(os.environ.get("LEVER_DIR", "out/lever_study") + "/S.npy"); names, d = pickle.load(open(os.environ.get("LEVER_DIR", "out/lever_study") + "/names_d.pkl", "rb"))
y, D, W = d["y"], d["D"], d["W"]; N = len(y)
struct = np.array([n[0][0] == "params" or n[2][0] == "params" for n in names])
rows = np.flatnonzero(~struct); Sn = S[rows]
lp = pickle.load(open(os.environ.get('LEVER_DIR', 'out/lever_study') + '/fb_layer_params.pkl','rb')); P = np.array([sum(lp[k]) for k in d['keys']], float)
dwp = D * 1e4 + W + P / 1e10
for nfit, nval, k in ((50, 0, 0), (50, 50, 10), (50, 50, 40), (100, 0, 0), (100, 50, 20), (150, 0, 0), (200, 0, 0)):
    out = []; base = []
    for seed in range(8):
        rng = np.random.default_rng(2000 + seed); perm = rng.permutation(N)
        fit = perm[:nfit]; val = perm[nfit:nfit + nval]; test = perm[250:]  # same 250 test archs for all configs
        f = np.nan_to_num(spearman_rows(Sn[:, fit], y[fit]), nan=-9)
        if k:
            top = np.argsort(-f)[:k]; fv = np.nan_to_num(spearman_rows(Sn[top][:, val], y[val]), nan=-9); b = top[np.argmax(fv)]
        else: b = np.argmax(f)
        r = report(d, Sn[b], test); out.append((r["kt"], r["wd"], r["wdh"]))
        rb = report(d, dwp, test); base.append(rb["kt"])
    a = np.array(out)
    print(f"fit{nfit} val{nval} k{k}: kt {a[:,0].mean():.3f}±{a[:,0].std():.3f} wd {a[:,1].mean():.3f} wdh {a[:,2].mean():.3f} | D,W,P {np.mean(base):.3f} | diff {np.mean(a[:,0]-base):+.3f}", flush=True)
