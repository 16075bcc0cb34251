import os
import pickle, glob, sys, itertools, numpy as np
from scipy import stats
def load(pattern):
    tabs = [pickle.load(open(f, "rb")) for f in sorted(glob.glob(pattern))]
    base = tabs[0]
    for t in tabs[1:]:
        base["table"].update(t["table"]); base["meta"].update(t["meta"])
    return base
def build(bt, layer_params=None):
    keys = sorted(bt["meta"], key=lambda k: bt["meta"][k]["position"])
    meta = [bt["meta"][k] for k in keys]
    sign = 1 if bt["higher"] else -1
    y = np.array([sign * m["truth"][bt["metric"]] for m in meta])
    branches = sorted({b for k in keys for b in bt["table"][k]})
    L = max(len(v) for k in keys for v in bt["table"][k].values() if v is not None)
    N = len(keys)
    V = np.full((len(branches), N, L), np.nan); lens = np.zeros((len(branches), N), int)
    ok = np.ones((len(branches), N), bool)
    for i, b in enumerate(branches):
        for j, k in enumerate(keys):
            v = bt["table"][k].get(b)
            if v is None or not np.all(np.isfinite(v)): ok[i, j] = False; continue
            V[i, j, :len(v)] = v; lens[i, j] = len(v)
    if layer_params is not None:
        P = [np.array(layer_params[k], float) for k in keys]
        Lp = max(len(p) for p in P)
        if Lp > L:
            V = np.concatenate([V, np.full((V.shape[0], N, Lp - L), np.nan)], 2); L = Lp
        sops = {"": lambda p: p, "log": np.log, "sqrt": np.sqrt, "square": np.square,
                "invert": lambda p: 1 / p, "negate": lambda p: -p, "abslog": lambda p: np.log(np.abs(p)),
                "l1_norm": lambda p: p, "sigmoid": lambda p: 1 / (1 + np.exp(-p))}
        extra = []
        for name, f in sops.items():
            if name in ("l1_norm", "sigmoid"): continue
            M = np.full((1, N, L), np.nan); ln = np.zeros((1, N), int)
            for j, p in enumerate(P):
                M[0, j, :len(p)] = f(p); ln[0, j] = len(p)
            extra.append(((("params", (name,) if name else ())), M, ln))
        branches = branches + [e[0] for e in extra]
        V = np.concatenate([V] + [e[1] for e in extra]); lens = np.concatenate([lens] + [e[2] for e in extra])
        ok = np.concatenate([ok, np.ones((len(extra), N), bool)])
    D = np.array([len(m["config"]["encoder_layers"]) if "encoder_layers" in m["config"] else m["config"]["n_layer"] for m in meta])
    W = np.array([m["config"].get("hidden_size", m["config"].get("d_model")) for m in meta])
    return dict(keys=keys, y=y, branches=branches, V=V, lens=lens, ok=ok, D=D, W=W)

BIN = {"sum": np.add, "difference": np.subtract, "product": np.multiply}
def all_scores(d, allowed=None):
    """Scores of every (l, r, bin, red) expression; returns list of names and matrix (E, N)."""
    V, lens, ok = d["V"], d["lens"], d["ok"]
    B, N, L = V.shape
    idx = [i for i, b in enumerate(d["branches"]) if allowed is None or allowed(b)]
    cols = np.arange(L)
    names, out = [], []
    with np.errstate(all="ignore"):
        for a in idx:
            for bname, f in BIN.items():
                rs = [r for r in idx if (r >= a or bname == "difference")]
                Vr = V[rs]; lr = lens[rs]
                n = np.minimum(lens[a][None], lr)  # (R, N)
                mask = cols[None, None, :] < n[..., None]
                P = f(V[a][None], Vr)
                P = np.where(mask, P, 0.0)
                tot = P.sum(-1); mean = tot / np.maximum(n, 1)
                good = ok[a][None] & ok[rs]
                for red, S in (("mean", mean), ("total", tot)):
                    S = np.where(good & np.isfinite(S), S, np.nan)
                    out.append(S); names += [(d["branches"][a], bname, d["branches"][r], red) for r in rs]
    S = np.concatenate(out)
    return names, S

def fmt(name):
    (li, lc), b, (ri, rc), red = name
    def br(i, c):
        s = i
        for o in c: s = f"{o}({s})"
        return s
    e = f"{b}({br(li, lc)}, {br(ri, rc)})"
    return e if red == "mean" else f"total({e})"

def rank_rows(S):
    return stats.rankdata(S, axis=1)
def spearman_rows(S, y):
    R = rank_rows(S); ry = stats.rankdata(y)
    R = R - R.mean(1, keepdims=True); ry = ry - ry.mean()
    return (R @ ry) / (np.sqrt((R ** 2).sum(1)) * np.sqrt((ry ** 2).sum()) + 1e-300)
def kendall_tf(x, y):
    if np.all(y == y[0]): return np.nan
    if np.all(x == x[0]): return 0.0
    n0 = len(x) * (len(x) - 1) / 2
    _, c = np.unique(x, return_counts=True); n1 = (c * (c - 1) / 2).sum()
    return stats.kendalltau(x, y).statistic * np.sqrt((n0 - n1) / n0)
def within(x, y, groups):
    vals = []
    for g in np.unique(groups, axis=0):
        m = np.all(groups == g, axis=1) if groups.ndim > 1 else groups == g
        if m.sum() >= 3 and not np.all(y[m] == y[m][0]): vals.append(kendall_tf(x[m], y[m]))
    return float(np.mean(vals))
def report(d, s, idx):
    y = d["y"][idx]; x = s[idx]
    return dict(kt=kendall_tf(x, y), wd=within(x, y, d["D"][idx]),
                wdh=within(x, y, np.stack([d["D"][idx], d["W"][idx]], 1)))
