"""GPT-2 (LiteTransformerSearch ``HfGPT2Flex``) with adaptive input and projected adaptive softmax.

Pre-LayerNorm GPT-2 blocks with per-layer head counts and inner widths, an adaptive input
embedding (scaled by sqrt(d), plus learned positions) and a projected adaptive log-softmax whose
token weights are tied to the input tables and whose tail projections are tied as ``tie_projs``
says. Parameter groups follow gpt2_wt103/SOURCE.md and are read from the module itself
(:meth:`Gpt2Model.param_counts`).

Tied tensors are never duplicated: the output layer reads the input tables and projections of
:class:`AdaptiveEmbedding` at call time instead of holding its own references, so unique-parameter
counting and meta-device construction need no special cases.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lpzero_queue.benchmarks.taps import Tap

LN_EPS = 1e-5  # Hugging Face GPT-2 layer_norm_epsilon


@dataclass(frozen=True)
class Gpt2Spec:
    """A validated GPT-2 benchmark config (only the keys the builder uses)."""

    n_token: int  # V
    tgt_len: int  # context length = learned positions
    d_model: int  # d
    d_embed: int  # e (resolved: -1 means d)
    n_head: tuple[int, ...]
    d_inner: tuple[int, ...]
    div_val: int
    cutoffs: tuple[int, ...]  # cleaned: increasing, last entry == V
    tie_projs: tuple[bool, ...]  # one per cluster
    dropout: float  # residual and embedding dropout
    dropatt: float
    weight_init_std: float
    proj_init_std: float

    @property
    def n_layer(self) -> int:
        return len(self.n_head)

    def cluster_bounds(self) -> list[tuple[int, int]]:
        """Token ranges ``[l, r)`` of the clusters (head first)."""
        ends = (0, *self.cutoffs)
        return list(itertools.pairwise(ends))

    def cluster_dim(self, i: int) -> int:
        """Embedding width of cluster ``i``."""
        return self.d_embed if self.div_val == 1 else self.d_embed // self.div_val**i


def _get(config: Mapping[str, Any], key: str, kinds: tuple[type, ...]) -> Any:
    if key not in config:
        raise ValueError(f"config.{key}: missing")
    value = config[key]
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise ValueError(f"config.{key}: expected {kinds[0].__name__}, got {value!r}")
    return value


def _per_layer(config: Mapping[str, Any], key: str, n_layer: int) -> tuple[int, ...]:
    value = _get(config, key, (list, tuple, int))
    values = [value] * n_layer if isinstance(value, int) else list(value)
    if len(values) != n_layer or any(isinstance(v, bool) or not isinstance(v, int) for v in values):
        raise ValueError(f"config.{key}: expected {n_layer} ints (n_layer), got {value!r}")
    if any(v < 1 for v in values):
        raise ValueError(f"config.{key}: values must be positive, got {value!r}")
    return tuple(values)


def clean_cutoffs(cutoffs: list[int], n_token: int) -> tuple[int, ...]:
    """Stop at the first entry > V, make the last entry V (Transformer-XL / Archai rule)."""
    kept: list[int] = []
    for c in cutoffs:
        if kept and c <= kept[-1]:
            raise ValueError(f"config.cutoffs: not increasing: {cutoffs}")
        if c >= n_token:
            break
        kept.append(c)
    return (*kept, n_token)


def parse_gpt2_config(config: Mapping[str, Any]) -> Gpt2Spec:
    """Validate a GPT-2 benchmark config (the record's ``config`` field, or the whole record).

    Raises:
        ValueError: On a missing, mistyped or invalid field (named in the message).
    """
    if not isinstance(config, Mapping):
        raise ValueError(f"config: expected a mapping, got {type(config).__name__}")
    if "config" in config and isinstance(config["config"], Mapping):
        config = config["config"]
    n_token = _get(config, "n_token", (int,))
    d_model = _get(config, "d_model", (int,))
    d_embed = _get(config, "d_embed", (int,))
    n_layer = _get(config, "n_layer", (int,))
    div_val = _get(config, "div_val", (int,))
    if min(n_token, d_model, n_layer, div_val) < 1:
        raise ValueError("config: n_token, d_model, n_layer and div_val must be positive")
    n_head = _per_layer(config, "n_head", n_layer)
    for h in n_head:
        if d_model % h:
            raise ValueError(f"config.n_head: {h} does not divide d_model {d_model}")
    cutoffs = clean_cutoffs(list(_get(config, "cutoffs", (list, tuple))), n_token)
    tie_projs = tuple(bool(t) for t in _get(config, "tie_projs", (list, tuple)))
    if len(tie_projs) < len(cutoffs):
        raise ValueError(f"config.tie_projs: need {len(cutoffs)} entries, got {len(tie_projs)}")
    if not _get(config, "tie_weight", (bool,)):
        raise ValueError("config.tie_weight: only tied output weights are supported")
    _get(config, "adaptive", (bool,))
    spec = Gpt2Spec(
        n_token=n_token,
        tgt_len=_get(config, "tgt_len", (int,)),
        d_model=d_model,
        d_embed=d_model if d_embed == -1 else d_embed,
        n_head=n_head,
        d_inner=_per_layer(config, "d_inner", n_layer),
        div_val=div_val,
        cutoffs=cutoffs,
        tie_projs=tie_projs[: len(cutoffs)],
        dropout=float(_get(config, "dropout", (float, int))),
        dropatt=float(_get(config, "dropatt", (float, int))),
        weight_init_std=float(_get(config, "weight_init_std", (float, int))),
        proj_init_std=float(_get(config, "proj_init_std", (float, int))),
    )
    if min(spec.cluster_dim(i) for i in range(len(cutoffs))) < 1:
        raise ValueError(f"config.div_val: {div_val} leaves a cluster without embedding width")
    return spec


class AdaptiveEmbedding(nn.Module):
    """Adaptive input embedding: per-cluster tables and projections to d, scaled by sqrt(d)."""

    def __init__(self, spec: Gpt2Spec) -> None:
        super().__init__()
        self.spec = spec
        bounds = spec.cluster_bounds()
        if spec.div_val == 1:
            bounds = [(0, spec.n_token)]  # one table; clusters only split the output layer
        self.tables = nn.ModuleList(
            nn.Embedding(hi - lo, spec.cluster_dim(i)) for i, (lo, hi) in enumerate(bounds)
        )
        needs_proj = spec.div_val > 1 or spec.d_model != spec.d_embed
        self.projs = nn.ParameterList(
            nn.Parameter(torch.empty(spec.d_model, spec.cluster_dim(i)))
            for i in range(len(bounds) if needs_proj else 0)
        )

    def table(self, i: int) -> nn.Embedding:
        """Input table of cluster ``i`` (the only table when div_val == 1)."""
        return cast(nn.Embedding, self.tables[i])

    def proj(self, i: int) -> Tensor | None:
        """Projection ``(d, e_i)`` of input table ``i``, or None when e == d and div_val == 1."""
        return self.projs[i] if len(self.projs) else None

    def forward(self, input_ids: Tensor) -> Tensor:
        """``(B, T)`` ids -> ``(B, T, d)`` scaled embeddings."""
        if len(self.tables) == 1:
            x = self.table(0)(input_ids)  # (B, T, e)
            proj = self.proj(0)
            if proj is not None:
                x = F.linear(x, proj)  # (B, T, d)
        else:
            flat = input_ids.reshape(-1)
            x = self.table(0).weight.new_zeros(flat.numel(), self.spec.d_model)  # (B*T, d)
            for i, (lo, hi) in enumerate(self.spec.cluster_bounds()):
                idx = ((flat >= lo) & (flat < hi)).nonzero().squeeze(1)
                if idx.numel():
                    emb = F.linear(self.table(i)(flat[idx] - lo), self.projs[i])  # (n_i, d)
                    x = x.index_copy(0, idx, emb)
            x = x.view(*input_ids.shape, self.spec.d_model)
        return x * math.sqrt(self.spec.d_model)


class AdaptiveSoftmax(nn.Module):
    """Projected adaptive log-softmax; owns only the untied output parameters.

    Holds the per-token output biases, the cluster logits (``cluster_weight`` ``(n_tail, e)``,
    ``cluster_bias``) and the projections of clusters whose ``tie_projs`` entry is false (only
    when the cluster has a projection at all). Token weights come from the input tables.
    """

    def __init__(self, spec: Gpt2Spec) -> None:
        super().__init__()
        self.spec = spec
        n_tail = len(spec.cutoffs) - 1
        self.cluster_weight = nn.Parameter(torch.empty(n_tail, spec.d_embed))
        self.cluster_bias = nn.Parameter(torch.empty(n_tail))
        self.bias = nn.Parameter(torch.empty(spec.n_token))  # per-token bias, all clusters
        has_proj = spec.div_val > 1 or spec.d_model != spec.d_embed
        self.own_projs = nn.ParameterDict(
            {
                str(i): nn.Parameter(torch.empty(spec.d_model, spec.cluster_dim(i)))
                for i in range(len(spec.cutoffs))
                if has_proj and not spec.tie_projs[i]
            }
        )

    def nll(self, hidden: Tensor, target: Tensor, emb: AdaptiveEmbedding) -> Tensor:
        """Per-token negative log-likelihood.

        Args:
            hidden: ``(N, d)`` final hidden states.
            target: ``(N,)`` token ids in ``[0, V)``.
            emb: The input embedding whose tables (and tied projections) are the output weights.

        Returns:
            ``(N,)`` NLL of each target.
        """
        spec = self.spec
        bounds = spec.cluster_bounds()
        if spec.div_val == 1:  # one split (not slices): backward then builds one table-sized grad
            weights = emb.table(0).weight.split([hi - lo for lo, hi in bounds])
        else:
            weights = tuple(emb.table(i).weight for i in range(len(bounds)))
        biases = self.bias.split([hi - lo for lo, hi in bounds])

        def proj(i: int) -> Tensor | None:
            if str(i) in self.own_projs:
                return self.own_projs[str(i)]
            return emb.proj(0 if spec.div_val == 1 else i) if spec.tie_projs[i] else None

        def logits(h: Tensor, i: int) -> Tensor:
            p = proj(i)
            if p is not None:
                h = h @ p  # (n, e_i)
            return F.linear(h, weights[i], biases[i])  # (n, s_i)

        p0 = proj(0)
        h0 = hidden if p0 is None else hidden @ p0  # (N, e)
        # Concatenate logits, not weights: no table-sized copy forward or backward.
        head_logit = torch.cat(
            [
                F.linear(h0, weights[0], biases[0]),
                F.linear(h0, self.cluster_weight, self.cluster_bias),
            ],
            dim=1,
        )  # (N, s_0 + n_tail)
        head_logprob = head_logit.log_softmax(dim=-1)
        nll = hidden.new_zeros(target.shape)  # (N,)
        for i, (lo, hi) in enumerate(bounds):
            idx = ((target >= lo) & (target < hi)).nonzero().squeeze(1)
            if idx.numel() == 0:
                continue
            local = (target[idx] - lo)[:, None]  # (n_i, 1)
            if i == 0:
                lp = head_logprob[idx].gather(1, local).squeeze(1)
            else:
                tail = logits(hidden[idx], i).log_softmax(dim=-1)  # (n_i, s_i)
                lp = head_logprob[idx, bounds[0][1] + i - 1] + tail.gather(1, local).squeeze(1)
            nll = nll.index_copy(0, idx, -lp)
        return nll


class CausalSelfAttention(nn.Module):
    """Fused-QKV causal self-attention with ``head`` and ``softmax`` taps."""

    def __init__(self, d: int, heads: int, dropatt: float, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.c_attn = nn.Linear(d, 3 * d)  # nn.Linear, not HF Conv1D: same parameters
        self.head_tap = Tap("head")
        self.softmax_tap = Tap("softmax")
        self.attn_dropout = nn.Dropout(dropatt)
        self.c_proj = nn.Linear(d, d)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, T, d)`` -> ``(B, T, d)``."""
        B, T, d = x.shape
        q, k, v = self.c_attn(x).split(d, dim=2)  # 3 x (B, T, d)
        q = self.head_tap(q)
        q, k, v = (t.view(B, T, self.heads, d // self.heads).transpose(1, 2) for t in (q, k, v))
        scores = q @ k.transpose(-1, -2) / math.sqrt(d // self.heads)  # (B, h, T, T)
        causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        scores = scores.masked_fill(~causal, torch.finfo(scores.dtype).min)
        probs = self.softmax_tap(scores.softmax(dim=-1))  # (B, h, T, T)
        ctx = (self.attn_dropout(probs) @ v).transpose(1, 2).reshape(B, T, d)  # (B, T, d)
        return self.resid_dropout(self.c_proj(ctx))


class Mlp(nn.Module):
    """FC1 d -> d_inner, gelu_tanh, act tap, FC2 back to d, dropout."""

    def __init__(self, d: int, d_inner: int, dropout: float) -> None:
        super().__init__()
        self.c_fc = nn.Linear(d, d_inner)
        self.act = nn.GELU(approximate="tanh")
        self.act_tap = Tap("act")
        self.c_proj = nn.Linear(d_inner, d)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, T, d)`` -> ``(B, T, d)``."""
        return self.dropout(self.c_proj(self.act_tap(self.act(self.c_fc(x)))))


class Block(nn.Module):
    """Pre-LayerNorm GPT-2 block."""

    def __init__(self, spec: Gpt2Spec, layer: int) -> None:
        super().__init__()
        d = spec.d_model
        self.ln_1 = nn.LayerNorm(d, eps=LN_EPS)
        self.attn = CausalSelfAttention(d, spec.n_head[layer], spec.dropatt, spec.dropout)
        self.ln_2 = nn.LayerNorm(d, eps=LN_EPS)
        self.mlp = Mlp(d, spec.d_inner[layer], spec.dropout)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, T, d)`` -> ``(B, T, d)``."""
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Gpt2Output(NamedTuple):
    """Final hidden states ``(B, T, d)`` and the mean next-token NLL (or None)."""

    hidden: Tensor
    loss: Tensor | None


class Gpt2Model(nn.Module):
    """HfGPT2Flex-equivalent language model. Build it with :func:`build_gpt2`."""

    def __init__(self, spec: Gpt2Spec) -> None:
        super().__init__()
        self.spec = spec
        self.embed = AdaptiveEmbedding(spec)
        self.wpe = nn.Embedding(spec.tgt_len, spec.d_model)
        self.drop = nn.Dropout(spec.dropout)
        self.embedding_tap = Tap("embedding")
        self.blocks = nn.ModuleList(Block(spec, i) for i in range(spec.n_layer))
        self.ln_f = nn.LayerNorm(spec.d_model, eps=LN_EPS)
        self.softmax = AdaptiveSoftmax(spec)

    def mixer_linears(self) -> list[nn.Linear]:
        """The fused QKV projection of every block (``weight``/``grad`` proxy inputs)."""
        return [block.attn.c_attn for block in self.block_list()]

    def block_list(self) -> list[Block]:
        """The blocks, typed."""
        return [cast(Block, block) for block in self.blocks]

    def forward(self, input_ids: Tensor, labels: Tensor | None = None) -> Gpt2Output:
        """Run the model.

        Args:
            input_ids: ``(B, T)`` token ids, ``T <= tgt_len``.
            labels: ``(B, T)`` or None; shifted inside (position t predicts label t + 1), -100
                entries ignored.

        Returns:
            :class:`Gpt2Output` with ``hidden`` ``(B, T, d)`` after the final LayerNorm and the
            mean token NLL of the adaptive softmax (None without labels).
        """
        T = input_ids.size(1)
        if self.spec.tgt_len < T:
            raise ValueError(f"sequence length {T} exceeds tgt_len {self.spec.tgt_len}")
        pos = torch.arange(T, device=input_ids.device)
        x = self.embed(input_ids) + self.wpe(pos)  # (B, T, d)
        x = self.embedding_tap(self.drop(x))
        for block in self.blocks:
            x = block(x)
        hidden = self.ln_f(x)  # (B, T, d)
        loss = None
        if labels is not None:
            h = hidden[:, :-1].reshape(-1, self.spec.d_model)  # (B*(T-1), d)
            target = labels[:, 1:].reshape(-1)
            keep = (target != -100).nonzero().squeeze(1)
            loss = self.softmax.nll(h[keep], target[keep], self.embed).mean()
        return Gpt2Output(hidden, loss)

    def param_counts(self) -> dict[str, int]:
        """Parameter groups as in gpt2_wt103/SOURCE.md, read from this module's parameters."""

        def count(modules: list[nn.Module]) -> int:
            return sum(p.numel() for p in _unique_params(modules))

        attn = count([b.attn for b in self.block_list()])
        ffn = count([b.mlp for b in self.block_list()])
        norms = count([m for m in self.modules() if isinstance(m, nn.LayerNorm)])
        nonembedding = attn + ffn + norms
        return {
            "AdaEmb": count([self.embed, self.wpe]),
            "Attn": attn,
            "FFN": ffn,
            "nonembedding": nonembedding,
            "total": count([self]),
        }


def _unique_params(modules: list[nn.Module]) -> list[nn.Parameter]:
    seen: dict[int, nn.Parameter] = {}
    for module in modules:
        for p in module.parameters():
            seen.setdefault(id(p), p)
    return list(seen.values())


def gpt2_skeleton(config: Mapping[str, Any]) -> Gpt2Model:
    """Build the module structure on the meta device (no memory, no initialisation)."""
    spec = parse_gpt2_config(config)
    with torch.device("meta"):
        return Gpt2Model(spec)


def _init_weights(model: Gpt2Model, gen: torch.Generator) -> None:
    """Weights N(0, std^2), projections N(0, proj_std^2), c_proj N(0, (std / sqrt(2n))^2)."""
    spec = model.spec
    std, proj_std = spec.weight_init_std, spec.proj_init_std
    resid_std = std / math.sqrt(2 * spec.n_layer)  # GPT-2 scaled init of the two c_proj weights
    c_projs = {id(m) for b in model.block_list() for m in (b.attn.c_proj, b.mlp.c_proj)}
    normal: list[tuple[Tensor, float]] = []
    zeros: list[Tensor] = []
    for module in model.modules():
        if isinstance(module, nn.Linear):
            normal.append((module.weight, resid_std if id(module) in c_projs else std))
            zeros.append(module.bias)
        elif isinstance(module, nn.Embedding):
            normal.append((module.weight, std))
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            zeros.append(module.bias)
    normal += [(p, proj_std) for p in [*model.embed.projs, *model.softmax.own_projs.values()]]
    normal.append((model.softmax.cluster_weight, std))
    zeros += [model.softmax.cluster_bias, model.softmax.bias]
    for tensor, sd in normal:
        nn.init.normal_(tensor, 0.0, sd, generator=gen)
    for tensor in zeros:
        nn.init.zeros_(tensor)
    done = {id(t) for t, _ in normal} | {id(t) for t in zeros}
    done |= {id(m.weight) for m in model.modules() if isinstance(m, nn.LayerNorm)}
    missed = [name for name, p in model.named_parameters() if id(p) not in done]
    assert not missed, f"uninitialised parameters: {missed}"


def build_gpt2(config: Mapping[str, Any], *, seed: int) -> Gpt2Model:
    """Build and initialise a GPT-2 benchmark model on the CPU, in eval mode.

    Args:
        config: The record's ``config`` mapping (or the whole record).
        seed: Seed of the ``torch.Generator`` used for every initial weight.

    Returns:
        The model in eval mode.

    Raises:
        ValueError: On a missing, mistyped or invalid config field.
    """
    model = gpt2_skeleton(config)
    model.to_empty(device="cpu")
    _init_weights(model, torch.Generator().manual_seed(seed))
    return model.eval()
