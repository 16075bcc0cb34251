"""Benchmark records: the shipped ground-truth files and a user's own trained architectures.

A benchmark is a list of trained architectures of one search space (``flexibert`` or ``gpt2``), each
with its config and its measured ground truth. Every config, shipped or imported, passes the same
strict structural check (:func:`validate_config`) before a record exists, so a malformed
architecture is refused at import time rather than failing later inside a model builder.

User imports (``benchmarks.imports.parse_import_file``) are all-or-nothing: every record is
checked and the first problem raises :class:`RecordError` with a one-line message naming the
record (0-based index in the file, and its id) and the field, e.g. ``record 3 (id 'abc'):
encoder_layers[1].operation_type: 'XX' is not one of SA, LT, DSC``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

from lpzero_queue.benchmarks import bounds
from lpzero_queue.errors import LpzqError, brief, clip

__all__ = [
    "SHIPPED",
    "SPACES",
    "ArchitectureRecord",
    "BenchmarkDataError",
    "BenchmarkSpec",
    "RecordError",
    "config_hash",
    "load_shipped",
    "shipped_space",
    "structural_basics",
    "validate_config",
]

SPACES = ("flexibert", "gpt2")
SHIPPED = ("flexibert", "gpt2-wt103")


class RecordError(LpzqError, ValueError):
    """A benchmark record or architecture config is malformed (one line naming the field)."""


class BenchmarkDataError(LpzqError, ValueError):
    """A shipped benchmark is unknown, or its packaged data file is unreadable."""


@dataclass(frozen=True)
class ArchitectureRecord:
    """One trained architecture and its measured ground truth."""

    key: str  # the record's `id` as text (FlexiBERT ids are ints in the file)
    position: int  # 0-based order in the file; LPZero's search fitness uses the first 50
    config: dict[str, Any]  # FlexiBERT: {hidden_size, encoder_layers}; GPT-2: the model config
    ground_truth: dict[str, float]  # FlexiBERT: scores (8 GLUE tasks + glue); GPT-2: valid/test_ppl
    extra: dict[str, Any]  # kept but not ground truth: training time, GPT-2's published params


@dataclass(frozen=True)
class BenchmarkSpec:
    """A benchmark: its space, default metric and direction, provenance and records."""

    name: str
    space: str  # "flexibert" | "gpt2"
    metric: str  # default ground-truth key
    higher_is_better: bool
    description: str
    provenance: dict[str, str]  # source, citation, license, attribution, url
    records: tuple[ArchitectureRecord, ...]


# Short summaries of data/<dir>/SOURCE.md; the SOURCE.md files stay the full record.
_SHIPPED_META: dict[str, dict[str, Any]] = {
    "flexibert": {
        "dir": "flexibert",
        "space": "flexibert",
        "metric": "glue",
        "higher_is_better": True,
        "description": (
            "FlexiBERT / NAS-Bench-BERT: 500 BERT-style encoders (hidden 128|256, 2 or 4 layers "
            "of SA/LT/DSC token mixers) pre-trained ELECTRA-style and fine-tuned on GLUE; metric "
            "`glue` is the mean of 8 GLUE dev-set scores."
        ),
        "provenance": {
            "source": "aaronserianni/training-free-nas data/BERT_benchmark.json "
            "(commit 2d76e01b9586cad7340e8268dadba3056efd070b), reformatted subset",
            "citation": "Aaron Serianni and Jugal Kalita. Training-free Neural Architecture Search "
            "for RNNs and Transformers. ACL 2023, pp. 2522-2540. arXiv:2306.00288",
            "license": "CC BY 4.0",
            "attribution": "NAS-Bench-BERT benchmark, Serianni & Kalita (ACL 2023), CC BY 4.0",
            "url": "https://aclanthology.org/2023.acl-long.142",
        },
    },
    "gpt2-wt103": {
        "dir": "gpt2_wt103",
        "space": "gpt2",
        "metric": "valid_ppl",
        "higher_is_better": False,
        "description": (
            "LiteTransformerSearch GPT-2 (HfGPT2Flex) on WikiText-103: 200 trained decoder-only "
            "architectures (2-16 layers, d_model 64-512, adaptive input/softmax); metric "
            "`valid_ppl` is token-level validation perplexity."
        ),
        "provenance": {
            "source": "pprp/LPZero saved_logs/random_GPT2_wt103/ (commit "
            "9faa34d2c63c6b276a0082442e7eb0aa70be2526): the LiteTransformerSearch tabular logs, "
            "also in microsoft/archai archai/nlp/nas/saved_logs/",
            "citation": "Mojan Javaheripi et al. LiteTransformerSearch: Training-free Neural "
            "Architecture Search for Efficient Language Models. NeurIPS 2022. arXiv:2203.02094",
            "license": "MIT (microsoft/archai); no separate data license was found",
            "attribution": "LiteTransformerSearch GPT-2 WikiText-103 benchmark, Javaheripi et al. "
            "(NeurIPS 2022), from microsoft/archai (MIT)",
            "url": "https://arxiv.org/abs/2203.02094",
        },
    },
}

_FLEXI_LAYER_KEYS = (
    "operation_type",
    "operation_parameter",
    "num_operation_heads",
    "feed_forward_dimension",
    "num_feed_forward",
)
_FLEXI_PARAMS = {"SA": ("SDP", "WMA"), "LT": ("DFT", "DCT")}  # DSC: a positive odd kernel size
# The keys the GPT-2 builder reads, by type; any others are Transformer-XL leftovers.
_GPT2_INTS = ("n_token", "tgt_len", "d_model", "n_layer", "div_val")  # positive
_GPT2_LISTS = ("n_head", "d_inner")  # positive ints, one per layer
_GPT2_BOOLS = ("adaptive", "tie_weight")
_GPT2_FLOATS = ("dropout", "dropatt", "weight_init_std", "proj_init_std")
_GPT2_KEYS: tuple[str, ...] = (
    *_GPT2_INTS,
    "d_embed",
    *_GPT2_LISTS,
    "cutoffs",
    *_GPT2_BOOLS,
    "tie_projs",
)
_GPT2_KEYS += _GPT2_FLOATS
_EXTRA_KEYS = ("time_to_train_s", "train_elapsed_s", "params")  # kept in `extra`, not ground truth
_GPT2_BOUNDS = {
    "n_token": bounds.MAX_TOKENS,
    "tgt_len": bounds.MAX_SEQ,
    "d_model": bounds.MAX_HIDDEN,
    "n_layer": bounds.MAX_LAYERS,
    "div_val": bounds.MAX_HIDDEN,
    "n_head": bounds.MAX_HEADS,
    "d_inner": bounds.MAX_INNER,
}


def _check_space(space: str) -> None:
    if space not in SPACES:
        raise ValueError(f"unknown space {space!r}; valid spaces: {', '.join(SPACES)}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _pos_int(v: Any, field: str, bound: int | None = None) -> int:
    if not _is_int(v) or v <= 0:
        raise RecordError(f"{field}: {brief(v)} is not a positive integer")
    if bound is not None and v > bound:
        raise RecordError(f"{field}: {v:,} is above the bound {bound:,} (valid: 1 to {bound:,})")
    return int(v)


def _short_list(values: Any, field: str, bound: int) -> None:
    if isinstance(values, list) and len(values) > bound:
        raise RecordError(f"{field}: {len(values):,} entries, above the bound {bound:,}")


def _validate_flexibert(config: dict[str, Any]) -> None:
    for key in config:
        if key not in ("hidden_size", "encoder_layers"):
            raise RecordError(f"{key}: unknown key (valid: hidden_size, encoder_layers)")
    for key in ("hidden_size", "encoder_layers"):
        if key not in config:
            raise RecordError(f"{key}: missing")
    hidden = _pos_int(config["hidden_size"], "hidden_size", bounds.MAX_HIDDEN)
    layers = config["encoder_layers"]
    if not isinstance(layers, list) or not layers:
        raise RecordError(f"encoder_layers: {brief(layers)} is not a non-empty list")
    _short_list(layers, "encoder_layers", bounds.MAX_LAYERS)
    for i, layer in enumerate(layers):
        at = f"encoder_layers[{i}]"
        if not isinstance(layer, dict):
            raise RecordError(f"{at}: {brief(layer)} is not an object")
        for key in layer:
            if key not in _FLEXI_LAYER_KEYS:
                raise RecordError(f"{at}.{key}: unknown key")
        for key in _FLEXI_LAYER_KEYS:
            if key not in layer:
                raise RecordError(f"{at}.{key}: missing")
        op, param = layer["operation_type"], layer["operation_parameter"]
        if op == "DSC":
            if not _is_int(param) or param <= 0 or param % 2 == 0:
                raise RecordError(
                    f"{at}.operation_parameter: {brief(param)} is not a positive odd int"
                )
            _pos_int(param, f"{at}.operation_parameter", bounds.MAX_KERNEL)
        elif isinstance(op, str) and op in _FLEXI_PARAMS:
            if param not in _FLEXI_PARAMS[op]:
                raise RecordError(
                    f"{at}.operation_parameter: {brief(param)} is not one of "
                    f"{', '.join(_FLEXI_PARAMS[op])} ({op})"
                )
        else:
            raise RecordError(f"{at}.operation_type: {brief(op)} is not one of SA, LT, DSC")
        heads = _pos_int(
            layer["num_operation_heads"], f"{at}.num_operation_heads", bounds.MAX_HEADS
        )
        if hidden % heads:
            raise RecordError(f"{at}.num_operation_heads: {heads} does not divide {hidden}")
        _pos_int(layer["feed_forward_dimension"], f"{at}.feed_forward_dimension", bounds.MAX_INNER)
        _pos_int(layer["num_feed_forward"], f"{at}.num_feed_forward", bounds.MAX_STACK)


def _validate_gpt2(config: dict[str, Any]) -> None:
    for key in _GPT2_KEYS:
        if key not in config:
            raise RecordError(f"{key}: missing")
    for key in _GPT2_INTS:
        _pos_int(config[key], key, _GPT2_BOUNDS[key])
    d_model, n_layer, n_token = config["d_model"], config["n_layer"], config["n_token"]
    d_embed = config["d_embed"]
    if not _is_int(d_embed) or (d_embed <= 0 and d_embed != -1):
        raise RecordError(f"d_embed: {brief(d_embed)} is not a positive integer or -1 (= d_model)")
    if d_embed != -1:
        _pos_int(d_embed, "d_embed", bounds.MAX_HIDDEN)
    for key in _GPT2_LISTS:
        values = config[key]
        if not isinstance(values, list) or len(values) != n_layer:
            raise RecordError(f"{key}: {brief(values)} is not a list of length n_layer ({n_layer})")
        for i, v in enumerate(values):
            _pos_int(v, f"{key}[{i}]", _GPT2_BOUNDS[key])
            if key == "n_head" and d_model % v:
                raise RecordError(f"n_head[{i}]: {v} does not divide d_model {d_model}")
    cutoffs = config["cutoffs"]
    if not isinstance(cutoffs, list) or not cutoffs:
        raise RecordError(f"cutoffs: {brief(cutoffs)} is not a non-empty list")
    _short_list(cutoffs, "cutoffs", bounds.MAX_LIST)
    previous = 0
    for i, c in enumerate(cutoffs):
        _pos_int(c, f"cutoffs[{i}]")
        if c >= n_token:  # the builder stops at the first cutoff reaching n_token
            break
        if c <= previous:
            raise RecordError(f"cutoffs[{i}]: {c} is not above the previous cutoff {previous}")
        previous = c
    for key in _GPT2_BOOLS:
        if not isinstance(config[key], bool):
            raise RecordError(f"{key}: {brief(config[key])} is not a boolean")
    tie_projs = config["tie_projs"]
    _short_list(tie_projs, "tie_projs", bounds.MAX_LIST)
    if not isinstance(tie_projs, list) or not all(isinstance(t, bool) for t in tie_projs):
        raise RecordError(f"tie_projs: {brief(tie_projs)} is not a list of booleans")
    for key in _GPT2_FLOATS:
        v = config[key]
        if not _is_number(v) or not math.isfinite(v):
            raise RecordError(f"{key}: {brief(v)} is not a finite number")
        if key.startswith("drop") and not 0 <= v < 1:
            raise RecordError(f"{key}: {brief(v)} is not in [0, 1)")
        if key.endswith("std") and v <= 0:
            raise RecordError(f"{key}: {brief(v)} is not positive")


def validate_config(space: str, config: Any) -> None:
    """Check an architecture config strictly; raise on the first problem.

    FlexiBERT accepts exactly ``hidden_size`` and ``encoder_layers``. ``hidden_size`` may be any
    positive integer divisible by every layer's ``num_operation_heads`` (the shipped data uses
    128 and 256; imports of other widths are allowed). GPT-2 requires the keys the builder uses and
    ignores any other (Transformer-XL leftover) keys.

    Args:
        space: ``"flexibert"`` or ``"gpt2"``.
        config: The architecture config.

    Raises:
        RecordError: The config is malformed; the message starts with the field path,
            e.g. ``encoder_layers[1].operation_type: 'XX' is not one of SA, LT, DSC``.
        ValueError: ``space`` is unknown.
    """
    _check_space(space)
    if not isinstance(config, dict):
        raise RecordError(f"config: {type(config).__name__} is not an object")
    if space == "flexibert":
        _validate_flexibert(config)
    else:
        _validate_gpt2(config)


def _canonical(space: str, config: dict[str, Any]) -> dict[str, Any]:
    if space == "flexibert":
        layers = [{k: layer[k] for k in _FLEXI_LAYER_KEYS} for layer in config["encoder_layers"]]
        return {"hidden_size": config["hidden_size"], "encoder_layers": layers}
    out = {k: copy.deepcopy(config[k]) for k in _GPT2_KEYS}
    for key in _GPT2_FLOATS:  # 0 and 0.0 are the same architecture
        out[key] = float(out[key])
    return out


def config_hash(space: str, config: dict[str, Any]) -> str:
    """Identity of an architecture: sha256 hex of its canonical JSON.

    Only the keys the builder uses enter the hash (sorted keys, no whitespace; GPT-2 float fields
    written as floats), so Transformer-XL leftover keys do not change an architecture's identity.

    Args:
        space: ``"flexibert"`` or ``"gpt2"``.
        config: A config that passes :func:`validate_config`.

    Returns:
        64 lowercase hex characters.

    Raises:
        RecordError: The config is malformed.
    """
    validate_config(space, config)
    text = json.dumps(_canonical(space, config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def structural_basics(space: str, config: dict[str, Any]) -> dict[str, int]:
    """Layer count and hidden width of a config (parameter counts come from the builders).

    Args:
        space: ``"flexibert"`` or ``"gpt2"``.
        config: A valid config of that space.

    Returns:
        ``{"n_layers": ..., "hidden_size": ...}`` (GPT-2: ``n_layer`` and ``d_model``).
    """
    _check_space(space)
    if space == "flexibert":
        return {"n_layers": len(config["encoder_layers"]), "hidden_size": config["hidden_size"]}
    return {"n_layers": config["n_layer"], "hidden_size": config["d_model"]}


def _record_from_raw(
    raw: dict[str, Any], position: int, space: str, metric: str, prefix: str
) -> ArchitectureRecord:
    """Build one record from a JSON-shaped dict; ``RecordError`` messages lack the record prefix."""
    config: dict[str, Any]
    if space == "flexibert":
        config = {k: raw[k] for k in ("hidden_size", "encoder_layers") if k in raw}
    elif "config" not in raw:
        raise RecordError("config: missing")
    elif not isinstance(raw["config"], dict):
        raise RecordError(f"config: {type(raw['config']).__name__} is not an object")
    else:
        config = raw["config"]
    try:
        validate_config(space, config)
    except RecordError as exc:
        raise RecordError(f"{prefix}{exc}") from None
    truth: dict[str, float] = {}
    scores = raw.get("scores", {}) if space == "flexibert" else {}
    if not isinstance(scores, dict):
        raise RecordError(f"scores: {brief(scores)} is not an object")
    structural = {"id", "config", "scores", "hidden_size", "encoder_layers", *_EXTRA_KEYS}
    for key, value in [*scores.items(), *raw.items()]:
        if key == metric or key in structural or not _is_number(value):
            continue
        if len(key) > bounds.MAX_NAME_CHARS:  # stored as a ground-truth metric name
            raise RecordError(
                f"{clip(key)}: a ground-truth name longer than {bounds.MAX_NAME_CHARS} characters"
            )
        if math.isfinite(value):  # a missing secondary measurement is left out, not an error
            truth[key] = float(value)
    if metric in raw and metric in scores and raw[metric] != scores[metric]:
        raise RecordError(f"metric {metric!r}: {raw[metric]!r} differs from scores.{metric}")
    value = raw.get(metric, scores.get(metric))
    if value is None or value == "":
        raise RecordError(f"metric {metric!r} missing")
    if not _is_number(value) or not math.isfinite(value):
        raise RecordError(f"metric {clip(metric)}: {brief(value)} is not a finite number")
    truth[metric] = float(value)
    extra = {
        k: copy.deepcopy(v)
        for k, v in raw.items()
        if k in _EXTRA_KEYS or (k not in structural and k != metric and not _is_number(v))
    }
    return ArchitectureRecord(str(raw["id"]), position, copy.deepcopy(config), truth, extra)


def _records(
    raws: list[Any], space: str, metric: str, *, config_prefix: str
) -> list[ArchitectureRecord]:
    if not raws:
        raise RecordError("the file holds no records")
    if len(raws) > bounds.MAX_RECORDS:
        raise RecordError(f"{len(raws):,} records, above the bound {bounds.MAX_RECORDS:,}")
    seen: dict[str, int] = {}
    out = []
    for i, raw in enumerate(raws):
        if not isinstance(raw, dict):
            raise RecordError(f"record {i}: {type(raw).__name__} is not an object")
        rid = raw.get("id")
        if rid is None or rid == "" or not (_is_int(rid) or isinstance(rid, str)):
            raise RecordError(f"record {i} (no id): id: {brief(rid)} is not an integer or text")
        head = f"record {i} (id {clip(str(rid))}): "
        if len(str(rid)) > bounds.MAX_ID_CHARS:
            raise RecordError(
                f"{head}id: {len(str(rid)):,} characters, above the bound {bounds.MAX_ID_CHARS}"
            )
        if str(rid) in seen:
            raise RecordError(f"{head}id: duplicate of record {seen[str(rid)]}")
        seen[str(rid)] = i
        try:
            out.append(_record_from_raw(raw, i, space, metric, config_prefix))
        except RecordError as exc:
            raise RecordError(f"{head}{exc}") from None
    return out


def shipped_space(name: str) -> str | None:
    """The architecture space of a shipped benchmark, or None when ``name`` is not shipped."""
    meta = _SHIPPED_META.get(name)
    return None if meta is None else str(meta["space"])


def load_shipped(name: str) -> BenchmarkSpec:
    """Load a benchmark shipped inside the package (its records validated like an import).

    Args:
        name: One of :data:`SHIPPED`.

    Returns:
        The benchmark with every record in file order.

    Raises:
        BenchmarkDataError: ``name`` is not shipped, or its data file is unreadable or malformed.
    """
    if name not in _SHIPPED_META:
        known = ", ".join(SHIPPED)
        raise BenchmarkDataError(f"unknown benchmark {name!r}; shipped benchmarks: {known}")
    meta = _SHIPPED_META[name]
    resource = files("lpzero_queue.benchmarks") / "data" / meta["dir"] / "benchmark.json"
    try:
        raws = json.loads(resource.read_text(encoding="utf-8"))
        records = _records(raws, meta["space"], meta["metric"], config_prefix="")
    except (OSError, ValueError) as exc:  # JSONDecodeError and RecordError are ValueErrors
        raise BenchmarkDataError(f"shipped benchmark {name!r} is unreadable: {exc}") from None
    fields = {k: meta[k] for k in ("space", "metric", "higher_is_better", "description")}
    return BenchmarkSpec(
        name, **fields, provenance=dict(meta["provenance"]), records=tuple(records)
    )
