import os
import sys, pickle, numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from analyze import *
S = np.load(os.environ.get("LEVER_DIR", "out/lever_study") + "/S.npy"); names, d = pickle.load(open(os.environ.get("LEVER_DIR", "out/lever_study") + "/names_d.pkl", "rb"))
y, D, W = d["y"], d["D"], d["W"]; N = len(y)
struct = np.array([n[0][0] == "params" or n[2][0] == "params" for n in names])
pure_struct = np.array([n[0][0] == "params" and n[2][0] == "params" for n in names])
print("struct exprs", struct.sum(), "pure", pure_struct.sum())
def kt_rows(Ssub, ysub):
    # tie-fair kendall for many rows (slow-ish): use scipy per row
    return np.array([kendall_tf(r, ysub) for r in Ssub])
def within_rows(Ssub, ysub, groups, metric):
    out = np.zeros(len(Ssub))
    gs = np.unique(groups, axis=0); cnt = 0
    for g in gs:
        m = np.all(groups == g, axis=1)
        if m.sum() < 3: continue
        out += metric(Ssub[:, m], ysub[m]); cnt += 1
    return out / cnt
def fit_scores(rows, idx, kind):
    Ssub = S[rows][:, idx]; ysub = y[idx]
    if kind == "spearman": return spearman_rows(Ssub, ysub)
    if kind == "blend_dh":
        g = np.stack([D[idx], W[idx]], 1)
        return 0.5 * spearman_rows(Ssub, ysub) + 0.5 * within_rows(Ssub, ysub, g, spearman_rows)
    if kind == "blend_d":
        g = D[idx][:, None]
        return 0.5 * spearman_rows(Ssub, ysub) + 0.5 * within_rows(Ssub, ysub, g, spearman_rows)
def run(seed, rows_mask, kind, k_val=0, nfit=50, nval=50):
    rng = np.random.default_rng(1000 + seed)
    perm = rng.permutation(N); fit = perm[:nfit]; val = perm[nfit:nfit + nval]; test = perm[nfit + nval:]
    rows = np.flatnonzero(rows_mask)
    f = fit_scores(rows, fit, kind)
    f = np.nan_to_num(f, nan=-9)
    if k_val:
        top = rows[np.argsort(-f)[:k_val]]
        fv = np.nan_to_num(fit_scores(top, val, kind), nan=-9)
        best = top[np.argmax(fv)]
    else:
        best = rows[np.argmax(f)]
    r = report(d, S[best], test)
    return best, r, test
allm = np.ones(len(S), bool)
configs = [("neural", ~struct, "spearman", 0), ("all", allm, "spearman", 0), ("structonly", pure_struct, "spearman", 0),
           ("neural+val20", ~struct, "spearman", 20), ("all+val20", allm, "spearman", 20),
           ("all blend_dh", allm, "blend_dh", 0), ("all blend_dh+val20", allm, "blend_dh", 20),
           ("all blend_d+val20", allm, "blend_d", 20), ("neural blend_dh+val20", ~struct, "blend_dh", 20)]
seeds = range(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
for name, mask, kind, kv in configs:
    res = [run(s, mask, kind, kv) for s in seeds]
    kt = [r[1]["kt"] for r in res]; wd = [r[1]["wd"] for r in res]; wdh = [r[1]["wdh"] for r in res]
    print(f"{name:24s} kt {np.mean(kt):.3f}±{np.std(kt):.3f} wd {np.mean(wd):.3f} wdh {np.mean(wdh):.3f}  e.g. {fmt(names[res[0][0]])}", flush=True)
# baselines on the same test splits
for s in seeds:
    rng = np.random.default_rng(1000 + s); perm = rng.permutation(N); test = perm[100:]
    P = np.array([sum(x) for x in [pickle.load(open(os.environ.get('LEVER_DIR', 'out/lever_study') + '/fb_layer_params.pkl','rb'))[k] for k in d['keys']]], float)
    for bn, b in (("D*W", D * W), ("D,W", D * 1e4 + W), ("D,W,P", D * 1e4 + W + P / 1e10), ("P", P)):
        r = report(d, b, test); print(s, bn, {k: round(v, 3) for k, v in r.items()})
