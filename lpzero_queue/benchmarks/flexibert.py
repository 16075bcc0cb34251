"""FlexiBERT (NAS-Bench-BERT) encoders: the ``faithful`` and the ``lpzero`` builder.

``faithful`` builds the architecture the ground truth was trained with (docs/benchmarks.md): the
record's hidden size H, embedding 128 projected to H, an output block (Linear, dropout, residual,
LayerNorm) after every token mixer, feed-forward widths ``4H`` then ``F`` for the extra layers, and
the padding mask applied in attention.

``lpzero`` builds the model the published proxy numbers were computed on: H = 256, every
feed-forward width 1024, no output block after linear-transform mixers, no attention mask, the
word-embedding padding row (id 0) zeroed and frozen as in the Hugging Face ELECTRA code. Callers
use it in train mode, as published.

Models are constructed on the meta device and initialised from a ``torch.Generator`` seeded with
``seed``; the global RNG is never used.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lpzero_queue.benchmarks.dropout import HostDrawnDropout
from lpzero_queue.benchmarks.flexibert_mixers import (
    DynamicSpanConv,
    LinearTransform,
    SelfAttention,
    SeparableConv1d,
)
from lpzero_queue.benchmarks.taps import Tap

FLEXIBERT_BUILDERS: Final[tuple[str, ...]] = ("faithful", "lpzero")
VOCAB_SIZE: Final = 30522  # WordPiece, uncased
MAX_POSITIONS: Final = 512
TYPE_VOCAB: Final = 2
EMBEDDING_SIZE: Final = 128  # ELECTRA-small embedding width, projected to H when H != 128
INIT_STD: Final = 0.02
LN_EPS: Final = 1e-12  # ELECTRA / BERT LayerNorm epsilon
HIDDEN_DROPOUT: Final = 0.1
ATTN_DROPOUT: Final = 0.1
LPZERO_HIDDEN: Final = 256  # the published proxy model ignores the record's hidden_size ...
LPZERO_FF: Final = 1024  # ... and feed_forward_dimension


@dataclass(frozen=True)
class FlexiLayerSpec:
    """One validated encoder layer."""

    op_type: str  # "SA" | "LT" | "DSC"
    op_param: str | int  # SDP/WMA, DFT/DCT, or the DSC kernel width
    heads: int
    ff_widths: tuple[int, ...]  # hidden widths of the feed-forward stack, one GELU each


@dataclass(frozen=True)
class FlexiBertSpec:
    """A resolved FlexiBERT architecture for one builder."""

    hidden: int
    layers: tuple[FlexiLayerSpec, ...]
    lt_output_block: bool  # output Linear/residual/LayerNorm after LT mixers
    use_mask: bool  # apply the padding mask in attention
    padding_idx: int | None  # word-embedding row kept at zero (HF ELECTRA), or None


_OP_PARAMS: Final[dict[str, tuple[Any, ...]]] = {
    "SA": ("SDP", "WMA"),
    "LT": ("DFT", "DCT"),
    "DSC": (),  # any odd positive int
}


def _field(mapping: Mapping[str, Any], key: str, where: str, kind: type) -> Any:
    if not isinstance(mapping, Mapping):
        raise ValueError(f"{where}: expected a mapping, got {type(mapping).__name__}")
    if key not in mapping:
        raise ValueError(f"{where}.{key}: missing")
    value = mapping[key]
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValueError(f"{where}.{key}: expected int, got {value!r}")
    if kind is not int and not isinstance(value, kind):
        raise ValueError(f"{where}.{key}: expected {kind.__name__}, got {value!r}")
    return value


def _parse_layer(raw: Any, where: str, hidden: int, ff_rule: str) -> FlexiLayerSpec:
    op_type = _field(raw, "operation_type", where, str)
    if op_type not in _OP_PARAMS:
        raise ValueError(f"{where}.operation_type: unknown {op_type!r}; valid: SA, LT, DSC")
    heads = _field(raw, "num_operation_heads", where, int)
    ff_dim = _field(raw, "feed_forward_dimension", where, int)
    n_ff = _field(raw, "num_feed_forward", where, int)
    param = raw.get("operation_parameter") if isinstance(raw, Mapping) else None
    if op_type == "DSC":
        param = _field(raw, "operation_parameter", where, int)
        if param < 1 or param % 2 == 0:
            raise ValueError(f"{where}.operation_parameter: DSC kernel must be odd, got {param}")
    elif param not in _OP_PARAMS[op_type]:
        valid = ", ".join(_OP_PARAMS[op_type])
        raise ValueError(f"{where}.operation_parameter: {param!r} invalid for {op_type}: {valid}")
    if heads < 1 or hidden % heads:
        raise ValueError(f"{where}.num_operation_heads: {heads} does not divide hidden {hidden}")
    if op_type == "DSC" and hidden % (2 * max(1, heads // 2) * (hidden // heads)):
        raise ValueError(f"{where}.num_operation_heads: {heads} invalid for DSC")
    if ff_dim < 1 or n_ff < 1:
        raise ValueError(f"{where}: feed_forward_dimension and num_feed_forward must be >= 1")
    # ELECTRA's first feed-forward layer is always 4H; F only sets the extra ones.
    widths = (LPZERO_FF,) * n_ff if ff_rule == "lpzero" else (4 * hidden,) + (ff_dim,) * (n_ff - 1)
    assert isinstance(param, str | int)
    return FlexiLayerSpec(op_type, param, heads, widths)


def parse_flexibert_config(config: Mapping[str, Any], builder: str = "faithful") -> FlexiBertSpec:
    """Validate a benchmark record (or its architecture fields) and resolve it for a builder.

    Args:
        config: Mapping with ``hidden_size`` and ``encoder_layers`` (extra keys are ignored, so a
            whole benchmark record can be passed).
        builder: ``"faithful"`` or ``"lpzero"``.

    Returns:
        The resolved spec.

    Raises:
        ValueError: On an unknown builder, or a missing, mistyped or invalid field (named).
    """
    if builder not in FLEXIBERT_BUILDERS:
        raise ValueError(
            f"unknown flexibert builder {builder!r}; valid: {', '.join(FLEXIBERT_BUILDERS)}"
        )
    hidden = _field(config, "hidden_size", "config", int)
    if hidden < 1:
        raise ValueError(f"config.hidden_size: must be positive, got {hidden}")
    raw_layers = _field(config, "encoder_layers", "config", Sequence)
    if isinstance(raw_layers, str) or not raw_layers:
        raise ValueError("config.encoder_layers: expected a non-empty list of layers")
    if builder == "lpzero":
        hidden = LPZERO_HIDDEN
    layers = tuple(
        _parse_layer(raw, f"config.encoder_layers[{i}]", hidden, builder)
        for i, raw in enumerate(raw_layers)
    )
    lpzero = builder == "lpzero"
    return FlexiBertSpec(
        hidden=hidden,
        layers=layers,
        lt_output_block=not lpzero,
        use_mask=not lpzero,
        padding_idx=0 if lpzero else None,
    )


class FlexiEmbeddings(nn.Module):
    """Word + position + token-type embeddings (128), LayerNorm, dropout, Linear 128 -> H."""

    def __init__(self, hidden: int, padding_idx: int | None) -> None:
        super().__init__()
        self.word = nn.Embedding(VOCAB_SIZE, EMBEDDING_SIZE, padding_idx=padding_idx)
        self.position = nn.Embedding(MAX_POSITIONS, EMBEDDING_SIZE)
        self.token_type = nn.Embedding(TYPE_VOCAB, EMBEDDING_SIZE)
        self.norm = nn.LayerNorm(EMBEDDING_SIZE, eps=LN_EPS)
        self.dropout = HostDrawnDropout(HIDDEN_DROPOUT)
        self.project = nn.Linear(EMBEDDING_SIZE, hidden) if hidden != EMBEDDING_SIZE else None
        self.tap = Tap("embedding")

    def forward(self, input_ids: Tensor) -> Tensor:
        """``input_ids`` ``(B, T)`` -> ``(B, T, H)``; token type 0 everywhere."""
        T = input_ids.size(1)
        if T > MAX_POSITIONS:
            raise ValueError(f"sequence length {T} exceeds {MAX_POSITIONS} positions")
        pos = torch.arange(T, device=input_ids.device)
        x = self.word(input_ids) + self.position(pos) + self.token_type.weight[0]  # (B, T, 128)
        x = self.dropout(self.norm(x))
        if self.project is not None:
            x = self.project(x)  # (B, T, H)
        return self.tap(x)


class AddNorm(nn.Module):
    """Linear, dropout, residual add, LayerNorm (the block after a mixer or a feed-forward)."""

    def __init__(self, d_in: int, hidden: int) -> None:
        super().__init__()
        self.dense = nn.Linear(d_in, hidden)
        self.dropout = HostDrawnDropout(HIDDEN_DROPOUT)
        self.norm = nn.LayerNorm(hidden, eps=LN_EPS)

    def forward(self, x: Tensor, residual: Tensor) -> Tensor:
        """``x`` ``(B, T, d_in)``, ``residual`` ``(B, T, H)`` -> ``(B, T, H)``."""
        return self.norm(self.dropout(self.dense(x)) + residual)


class FeedForward(nn.Module):
    """Stack of [Linear, GELU, act tap] stages, then Linear back to H + dropout/residual/LN."""

    def __init__(self, hidden: int, widths: Sequence[int]) -> None:
        super().__init__()
        dims = [hidden, *widths]
        self.stages = nn.ModuleList(
            nn.Sequential(nn.Linear(a, b), nn.GELU(), Tap("act"))
            for a, b in itertools.pairwise(dims)
        )
        self.output = AddNorm(dims[-1], hidden)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, T, H)`` -> ``(B, T, H)``."""
        h = x
        for stage in self.stages:
            h = stage(h)  # (B, T, width)
        return self.output(h, x)


class FlexiBertLayer(nn.Module):
    """Token mixer, optional output block, feed-forward."""

    def __init__(self, spec: FlexiLayerSpec, hidden: int, lt_output_block: bool) -> None:
        super().__init__()
        self.mixer: SelfAttention | LinearTransform | DynamicSpanConv
        if spec.op_type == "SA":
            weighted = spec.op_param == "WMA"
            self.mixer = SelfAttention(
                hidden, spec.heads, weighted=weighted, attn_dropout=ATTN_DROPOUT
            )
        elif spec.op_type == "LT":
            self.mixer = LinearTransform(hidden, spec.heads, transform=str(spec.op_param))
        else:
            assert isinstance(spec.op_param, int)
            self.mixer = DynamicSpanConv(
                hidden, spec.heads, kernel=spec.op_param, attn_dropout=ATTN_DROPOUT
            )
        has_output = spec.op_type != "LT" or lt_output_block
        self.mixer_output = AddNorm(hidden, hidden) if has_output else None
        self.ffn = FeedForward(hidden, spec.ff_widths)

    def forward(self, x: Tensor, keep: Tensor | None) -> Tensor:
        """``(B, T, H)`` -> ``(B, T, H)``."""
        mixed = self.mixer(x, keep)  # (B, T, H)
        if self.mixer_output is not None:
            mixed = self.mixer_output(mixed, x)
        return self.ffn(mixed)


class FlexiBertModel(nn.Module):
    """FlexiBERT encoder returning the last hidden state. Build it with :func:`build_flexibert`."""

    def __init__(self, spec: FlexiBertSpec) -> None:
        super().__init__()
        self.spec = spec
        self.embeddings = FlexiEmbeddings(spec.hidden, spec.padding_idx)
        self.layers = nn.ModuleList(
            FlexiBertLayer(layer, spec.hidden, spec.lt_output_block) for layer in spec.layers
        )

    def mixer_linears(self) -> list[nn.Linear]:
        """Linear layers inside the token mixers, in module order (``weight``/``grad`` inputs)."""
        return [lin for layer in self.layers for lin in cast(FlexiBertLayer, layer).mixer.linears()]

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """Encode a batch.

        Args:
            input_ids: Token ids ``(B, T)``.
            attention_mask: ``(B, T)``, 1 for real tokens and 0 for padding. Applied to attention
                by the ``faithful`` builder, ignored by ``lpzero`` (as published).

        Returns:
            The last hidden state ``(B, T, H)``.
        """
        keep = None
        if self.spec.use_mask and attention_mask is not None:
            keep = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T)
        x = self.embeddings(input_ids)  # (B, T, H)
        for layer in self.layers:
            x = layer(x, keep)
        return x


class FlexiBertForMaskedLM(nn.Module):
    """ELECTRA-generator-style MLM head on a :class:`FlexiBertModel`.

    Linear H -> 128, GELU, LayerNorm, then a decoder tied to the word-embedding table plus a bias.

    Args:
        model: The encoder (its parameters are shared, not copied).
        seed: Seeds the CPU generator that initialises the head (then moved to the encoder's
            device, so every device starts from the same head).
    """

    def __init__(self, model: FlexiBertModel, *, seed: int) -> None:
        super().__init__()
        self.model = model
        device = model.embeddings.word.weight.device
        with torch.device("meta"):
            self.dense = nn.Linear(model.spec.hidden, EMBEDDING_SIZE)
            self.act = nn.GELU()
            self.norm = nn.LayerNorm(EMBEDDING_SIZE, eps=LN_EPS)
        self.bias = nn.Parameter(torch.zeros(VOCAB_SIZE, device=device))
        for m in (self.dense, self.norm):
            m.to_empty(device="cpu")
        # Drawn on the CPU and then moved: a CUDA generator gives other numbers for the same
        # seed, and the head's weights reach every gradient of the mlm objective.
        gen = torch.Generator(device="cpu").manual_seed(seed)
        nn.init.normal_(self.dense.weight, 0.0, INIT_STD, generator=gen)
        nn.init.zeros_(self.dense.bias)
        nn.init.ones_(self.norm.weight)
        nn.init.zeros_(self.norm.bias)
        for m in (self.dense, self.norm):
            m.to(device)

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, labels: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """Return MLM logits ``(B, T, V)`` and the mean cross-entropy (labels -100 ignored)."""
        h = self.model(input_ids, attention_mask)  # (B, T, H)
        h = self.norm(self.act(self.dense(h)))  # (B, T, 128)
        logits = F.linear(h, self.model.embeddings.word.weight, self.bias)  # (B, T, V)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
        return logits, loss


def flexibert_skeleton(config: Mapping[str, Any], builder: str = "faithful") -> FlexiBertModel:
    """Build the module structure on the meta device (no memory, no initialisation)."""
    spec = parse_flexibert_config(config, builder)
    with torch.device("meta"):
        return FlexiBertModel(spec)


def _init_weights(model: nn.Module, gen: torch.Generator) -> None:
    """ELECTRA init: Linear/Embedding/Conv weights N(0, 0.02^2), biases 0, LayerNorm 1/0."""
    done: set[int] = set()
    for module in model.modules():
        if isinstance(module, nn.Linear | nn.Embedding | nn.Conv1d):
            nn.init.normal_(module.weight, 0.0, INIT_STD, generator=gen)
            done.add(id(module.weight))
            if isinstance(module, nn.Embedding) and module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            done.add(id(module.weight))
        bias = getattr(module, "bias", None)
        if isinstance(module, nn.Linear | nn.LayerNorm | SeparableConv1d) and bias is not None:
            nn.init.zeros_(bias)
            done.add(id(bias))
    missed = [name for name, p in model.named_parameters() if id(p) not in done]
    assert not missed, f"uninitialised parameters: {missed}"


def build_flexibert(
    config: Mapping[str, Any], *, builder: str = "faithful", seed: int
) -> FlexiBertModel:
    """Build and initialise a FlexiBERT encoder on the CPU, in eval mode.

    Args:
        config: A benchmark record (``hidden_size``, ``encoder_layers``).
        builder: ``"faithful"`` (default) or ``"lpzero"``.
        seed: Seed of the ``torch.Generator`` used for every initial weight.

    Returns:
        The model in eval mode (call ``.train()`` for the published ``lpzero`` setting).

    Raises:
        ValueError: On an unknown builder or an invalid config field.
    """
    model = flexibert_skeleton(config, builder)
    model.to_empty(device="cpu")
    _init_weights(model, torch.Generator().manual_seed(seed))
    return model.eval()
