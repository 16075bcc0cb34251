import os
import sys, pickle, numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from analyze import *
lp = pickle.load(open(os.environ.get('LEVER_DIR', 'out/lever_study') + '/fb_layer_params.pkl','rb'))
d0 = build(load(os.environ.get("LEVER_DIR", "out/lever_study") + "/fb_k1_[02]*.pkl"), lp)
d1 = build(load(os.environ.get("LEVER_DIR", "out/lever_study") + "/fb_k1_s1_*.pkl"), lp)
assert d0["keys"] == d1["keys"] and d0["branches"] == d1["branches"]
n0, S0 = all_scores(d0); n1, S1 = all_scores(d1)
assert n0 == n1
valid = np.all(np.isfinite(S0), 1) & np.all(np.isfinite(S1), 1) & (np.nanstd(S0, 1) > 0) & (np.nanstd(S1, 1) > 0)
S0, S1 = S0[valid], S1[valid]; names = [n for n, v in zip(n0, valid) if v]
# rank-average (scale-free) and raw average
Savg = (S0 + S1) / 2
np.save(os.environ.get("LEVER_DIR", "out/lever_study") + "/S0.npy", S0); np.save(os.environ.get("LEVER_DIR", "out/lever_study") + "/S1.npy", S1); pickle.dump((names, d0), open(os.environ.get("LEVER_DIR", "out/lever_study") + "/names_d0.pkl", "wb"))
y, D, W = d0["y"], d0["D"], d0["W"]; N = len(y); g = np.stack([D, W], 1)
def wsp(S, idx):
    out = np.zeros(len(S)); c = 0
    for gg in np.unique(g[idx], axis=0):
        m = idx[np.all(g[idx] == gg, 1)]
        if len(m) < 3: continue
        out += np.nan_to_num(spearman_rows(S[:, m], y[m]), nan=0); c += 1
    return out / c
allidx = np.arange(N)
for nm, S in (("seed0", S0), ("seed1", S1), ("avg", Savg)):
    sp = spearman_rows(S, y); w = wsp(S, allidx)
    top = np.argsort(-np.nan_to_num(sp, nan=-9))[:200]
    print(nm, "overall sp: top1 %.3f top200 mean %.3f | within-dh sp top1 %.3f, mean of top200-by-within %.3f" % (
        np.nanmax(sp), np.nanmean(sp[top]), np.nanmax(w), np.mean(np.sort(np.nan_to_num(w, nan=-9))[-200:])))
# seed-to-seed consistency of each expression's ranking
R0 = stats.rankdata(S0, axis=1); R1 = stats.rankdata(S1, axis=1)
sel = np.argsort(-np.nan_to_num(spearman_rows(S0, y), nan=-9))[:50]
cons = [stats.spearmanr(S0[i], S1[i]).statistic for i in sel]
wcons = []
for i in sel[:20]:
    vals = []
    for gg in np.unique(g, axis=0):
        m = np.all(g == gg, 1); vals.append(stats.spearmanr(S0[i][m], S1[i][m]).statistic)
    wcons.append(np.mean(vals))
print("seed0 vs seed1 spearman of top-50 exprs: overall %.3f, within-dh %.3f" % (np.mean(cons), np.mean(wcons)))
# held-out protocol: fit on 50 (avg vs single), test on rest
for nm, S in (("seed0", S0), ("avg", Savg)):
    out = []
    for seed in range(6):
        rng = np.random.default_rng(1000 + seed); perm = rng.permutation(N); fit = perm[:50]; test = perm[100:]
        f = np.nan_to_num(spearman_rows(S[:, fit], y[fit]), nan=-9); b = np.argmax(f)
        r = report(d0, S[b], test); out.append((r["kt"], r["wd"], r["wdh"]))
    a = np.array(out); print(nm, "held-out kt %.3f±%.3f wd %.3f wdh %.3f" % (a[:,0].mean(), a[:,0].std(), a[:,1].mean(), a[:,2].mean()))
