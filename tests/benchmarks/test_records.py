"""Shipped benchmark records, config validation, user imports and config identity."""

from __future__ import annotations

import copy
import csv
import functools
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lpzero_queue.benchmarks.imports import parse_import_file
from lpzero_queue.benchmarks.records import (
    SHIPPED,
    ArchitectureRecord,
    BenchmarkDataError,
    RecordError,
    config_hash,
    load_shipped,
    structural_basics,
    validate_config,
)
from lpzero_queue.errors import LpzqError

METRIC = {"flexibert": "glue", "gpt2": "valid_ppl"}
SHIPPED_OF = {"flexibert": "flexibert", "gpt2": "gpt2-wt103"}


@functools.cache
def _shipped_rows(space: str) -> list[dict[str, Any]]:
    """The raw records of the shipped file (the package copy, not ../shared)."""
    name = {"flexibert": "flexibert", "gpt2": "gpt2_wt103"}[space]
    source = Path(__file__).parents[2] / "lpzero_queue/benchmarks/data" / name / "benchmark.json"
    rows: list[dict[str, Any]] = json.loads(source.read_text(encoding="utf-8"))
    return rows


@pytest.fixture(scope="module")
def shipped() -> dict[str, Any]:
    return {space: load_shipped(name) for space, name in SHIPPED_OF.items()}


# ---------------------------------------------------------------- shipped data


def test_shipped_flexibert(shipped: dict[str, Any]) -> None:
    spec = shipped["flexibert"]
    assert (spec.name, spec.space, spec.metric, spec.higher_is_better) == (
        "flexibert",
        "flexibert",
        "glue",
        True,
    )
    assert len(spec.records) == 500
    first = spec.records[0]
    assert (first.key, first.position) == ("0", 0)
    assert [r.position for r in spec.records] == list(range(500))
    assert set(first.config) == {"hidden_size", "encoder_layers"}
    assert set(first.ground_truth) == {
        *("cola", "mnli", "mrpc", "qnli", "qqp", "rte", "sst", "sts", "glue")
    }
    assert first.ground_truth["glue"] == pytest.approx(74.73375)
    assert set(first.extra) == {"time_to_train_s"}
    for record in spec.records:  # glue is the plain mean of the 8 tasks
        tasks = [v for k, v in record.ground_truth.items() if k != "glue"]
        assert record.ground_truth["glue"] == pytest.approx(sum(tasks) / 8)


def test_shipped_gpt2(shipped: dict[str, Any]) -> None:
    spec = shipped["gpt2"]
    assert (spec.name, spec.space, spec.metric, spec.higher_is_better) == (
        "gpt2-wt103",
        "gpt2",
        "valid_ppl",
        False,
    )
    assert len(spec.records) == 200
    first = spec.records[0]
    assert (first.key, first.position) == ("config_0_j0", 0)
    assert set(first.ground_truth) == {"valid_ppl", "test_ppl"}
    assert set(first.extra) == {"train_elapsed_s", "params"}
    assert set(first.extra["params"]) == {"AdaEmb", "Attn", "FFN", "nonembedding", "total"}
    assert "mem_len" in first.config  # the original config is kept whole
    assert all(24 < r.ground_truth["valid_ppl"] < 75 for r in spec.records)


@pytest.mark.parametrize("space", ["flexibert", "gpt2"])
def test_shipped_provenance(shipped: dict[str, Any], space: str) -> None:
    prov = shipped[space].provenance
    for key in ("source", "citation", "license", "attribution", "url"):
        assert prov[key].strip(), key
    assert shipped[space].description
    expected = {"flexibert": "CC BY 4.0", "gpt2": "MIT"}[space]
    assert expected in prov["license"]


def test_unknown_shipped_benchmark() -> None:
    assert SHIPPED == ("flexibert", "gpt2-wt103")
    with pytest.raises(BenchmarkDataError) as info:
        load_shipped("x")
    assert str(info.value) == "unknown benchmark 'x'; shipped benchmarks: flexibert, gpt2-wt103"
    assert isinstance(info.value, ValueError) and isinstance(info.value, LpzqError)


def test_structural_basics(shipped: dict[str, Any]) -> None:
    flexi = shipped["flexibert"].records[0].config
    assert structural_basics("flexibert", flexi) == {"n_layers": 4, "hidden_size": 256}
    gpt = shipped["gpt2"].records[0].config
    assert structural_basics("gpt2", gpt) == {"n_layers": 5, "hidden_size": 128}


# ---------------------------------------------------------------- config validation / identity


def test_validate_config_accepts_other_hidden_sizes() -> None:
    layer = {
        "operation_type": "DSC",
        "operation_parameter": 7,
        "num_operation_heads": 3,
        "feed_forward_dimension": 384,
        "num_feed_forward": 2,
    }
    validate_config("flexibert", {"hidden_size": 192, "encoder_layers": [layer]})
    with pytest.raises(RecordError, match=r"encoder_layers\[0\]\.num_operation_heads"):
        validate_config("flexibert", {"hidden_size": 128, "encoder_layers": [layer]})


def test_validate_config_unknown_space() -> None:
    with pytest.raises(ValueError, match="valid spaces: flexibert, gpt2"):
        validate_config("lstm", {})


def test_config_hash_ignores_gpt2_leftovers(shipped: dict[str, Any]) -> None:
    config = shipped["gpt2"].records[0].config
    digest = config_hash("gpt2", config)
    assert len(digest) == 64 and int(digest, 16) >= 0
    trimmed = {k: v for k, v in config.items() if k not in ("mem_len", "attn_type", "d_head")}
    assert config_hash("gpt2", trimmed) == digest
    assert config_hash("gpt2", {**config, "mem_len": 999, "new_leftover": 1}) == digest
    assert config_hash("gpt2", {**config, "dropatt": 0}) == digest  # 0 == 0.0
    assert config_hash("gpt2", {**config, "d_inner": [*config["d_inner"][:-1], 64]}) != digest


def test_config_hash_flexibert(shipped: dict[str, Any]) -> None:
    config = shipped["flexibert"].records[0].config
    digest = config_hash("flexibert", config)
    reordered = {
        "encoder_layers": [
            dict(reversed(list(layer.items()))) for layer in config["encoder_layers"]
        ],
        "hidden_size": config["hidden_size"],
    }
    assert config_hash("flexibert", reordered) == digest
    assert config_hash("flexibert", {**config, "hidden_size": 128}) != digest
    hashes = {config_hash("gpt2", r.config) for r in shipped["gpt2"].records}
    assert len(hashes) == 200


# ---------------------------------------------------------------- imports: helpers


def _normalised(spec: Any, n: int = 6) -> list[dict[str, Any]]:
    """Records as {id, config, metric, truth} that the writers below turn into files."""
    out = []
    for r in spec.records[:n]:
        truth = {k: v for k, v in r.ground_truth.items() if k != spec.metric}
        item = {"id": r.key, "config": copy.deepcopy(r.config), "truth": truth}
        item["metric"] = r.ground_truth[spec.metric]
        out.append(item)
    return out


def _write_json(path: Path, space: str, items: list[dict[str, Any]]) -> Path:
    metric, rows = METRIC[space], []
    for it in items:
        if space == "flexibert":
            scores = dict(it["truth"])
            if "metric" in it:
                scores[metric] = it["metric"]
            rows.append({"id": it["id"], **it["config"], "scores": scores})
        else:
            row = {"id": it["id"], "config": it["config"], **it["truth"]}
            if "metric" in it:
                row[metric] = it["metric"]
            rows.append(row)
    path.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    return path


def _write_csv(path: Path, space: str, items: list[dict[str, Any]]) -> Path:
    extra = sorted({k for it in items for k in it["truth"]})
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "config", METRIC[space], *extra])
        for it in items:
            metric = it.get("metric", "")
            cells = [it["id"], json.dumps(it["config"]), repr(metric) if metric != "" else ""]
            writer.writerow(cells + [repr(it["truth"].get(k, "")) for k in extra])
    return path


def _write(tmp_path: Path, fmt: str, space: str, items: list[dict[str, Any]]) -> Path:
    path = tmp_path / f"import.{fmt}"
    return (_write_json if fmt == "json" else _write_csv)(path, space, items)


def _layer(it: dict[str, Any], i: int) -> dict[str, Any]:
    layer: dict[str, Any] = it["config"]["encoder_layers"][i]
    return layer


Mutation = Callable[[dict[str, Any], list[dict[str, Any]]], None]

FLEXI_CASES: list[tuple[str, Mutation, str]] = [
    (
        "bad-op",
        lambda it, _: _layer(it, 1).update(operation_type="XX"),
        "encoder_layers[1].operation_type: 'XX' is not one of SA, LT, DSC",
    ),
    (
        "sa-with-dft",
        lambda it, _: _layer(it, 0).update(operation_type="SA", operation_parameter="DFT"),
        "encoder_layers[0].operation_parameter: 'DFT' is not one of SDP, WMA",
    ),
    (
        "lt-with-sdp",
        lambda it, _: _layer(it, 0).update(operation_type="LT", operation_parameter="SDP"),
        "encoder_layers[0].operation_parameter: 'SDP'",
    ),
    (
        "dsc-even-kernel",
        lambda it, _: _layer(it, 1).update(operation_type="DSC", operation_parameter=4),
        "encoder_layers[1].operation_parameter: 4",
    ),
    (
        "heads-not-dividing",
        lambda it, _: _layer(it, 0).update(num_operation_heads=3),
        "encoder_layers[0].num_operation_heads: 3",
    ),
    (
        "heads-zero",
        lambda it, _: _layer(it, 0).update(num_operation_heads=0),
        "encoder_layers[0].num_operation_heads: 0",
    ),
    (
        "ffn-missing",
        lambda it, _: _layer(it, 1).pop("feed_forward_dimension"),
        "encoder_layers[1].feed_forward_dimension: missing",
    ),
    (
        "nff-float",
        lambda it, _: _layer(it, 0).update(num_feed_forward=1.5),
        "encoder_layers[0].num_feed_forward: 1.5",
    ),
    (
        "layer-unknown-key",
        lambda it, _: _layer(it, 0).update(activation="relu"),
        "encoder_layers[0].activation: unknown key",
    ),
    ("hidden-zero", lambda it, _: it["config"].update(hidden_size=0), "hidden_size: 0"),
    ("hidden-text", lambda it, _: it["config"].update(hidden_size="256"), "hidden_size: '256'"),
    ("hidden-missing", lambda it, _: it["config"].pop("hidden_size"), "hidden_size: missing"),
    ("no-layers", lambda it, _: it["config"].update(encoder_layers=[]), "encoder_layers: []"),
    ("metric-missing", lambda it, _: it.pop("metric"), "metric 'glue' missing"),
    ("metric-nan", lambda it, _: it.update(metric=math.nan), "metric 'glue': nan"),
    ("metric-inf", lambda it, _: it.update(metric=math.inf), "metric 'glue': inf"),
    ("duplicate-id", lambda it, items: it.update(id=items[1]["id"]), "id: duplicate of record 1"),
]

GPT2_CASES: list[tuple[str, Mutation, str]] = [
    (
        "n-head-length",
        lambda it, _: it["config"].update(n_head=it["config"]["n_head"][:-1]),
        "n_head: ",
    ),
    (
        "n-head-not-dividing",
        lambda it, _: it["config"]["n_head"].__setitem__(1, 3),
        "n_head[1]: 3 does not divide d_model",
    ),
    ("d-inner-missing", lambda it, _: it["config"].pop("d_inner"), "d_inner: missing"),
    (
        "d-inner-negative",
        lambda it, _: it["config"]["d_inner"].__setitem__(0, -5),
        "d_inner[0]: -5",
    ),
    ("d-model-zero", lambda it, _: it["config"].update(d_model=0), "d_model: 0"),
    ("d-embed-zero", lambda it, _: it["config"].update(d_embed=0), "d_embed: 0"),
    ("dropout-big", lambda it, _: it["config"].update(dropout=1.5), "dropout: 1.5"),
    ("adaptive-text", lambda it, _: it["config"].update(adaptive="yes"), "adaptive: 'yes'"),
    ("tie-projs", lambda it, _: it["config"].update(tie_projs=True), "tie_projs: True"),
    ("cutoffs-order", lambda it, _: it["config"].update(cutoffs=[200, 100]), "cutoffs[1]: 100"),
    ("std-zero", lambda it, _: it["config"].update(proj_init_std=0.0), "proj_init_std: 0.0"),
    ("metric-missing", lambda it, _: it.pop("metric"), "metric 'valid_ppl' missing"),
    ("metric-nan", lambda it, _: it.update(metric=math.nan), "metric 'valid_ppl': nan"),
    ("metric-inf", lambda it, _: it.update(metric=-math.inf), "metric 'valid_ppl': -inf"),
    ("duplicate-id", lambda it, items: it.update(id=items[0]["id"]), "id: duplicate of record 0"),
]

CASES = [("flexibert", *c) for c in FLEXI_CASES] + [("gpt2", *c) for c in GPT2_CASES]


# ---------------------------------------------------------------- imports: malformed records


@pytest.mark.parametrize("fmt", ["json", "csv"])
@pytest.mark.parametrize(
    ("space", "case", "mutate", "field"), CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES]
)
def test_malformed_record_names_index_id_and_field(
    tmp_path: Path,
    shipped: dict[str, Any],
    fmt: str,
    space: str,
    case: str,
    mutate: Mutation,
    field: str,
) -> None:
    items = _normalised(shipped[space])
    mutate(items[3], items)
    path = _write(tmp_path, fmt, space, items)
    with pytest.raises(RecordError) as info:
        parse_import_file(path, space=space, metric=METRIC[space], higher_is_better=True)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"record 3 (id {items[3]['id']!r}): "), message
    assert field in message, message


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_first_problem_wins(tmp_path: Path, shipped: dict[str, Any], fmt: str) -> None:
    items = _normalised(shipped["flexibert"])
    _layer(items[2], 0)["operation_type"] = "XX"
    items[4].pop("metric")
    path = _write(tmp_path, fmt, "flexibert", items)
    with pytest.raises(RecordError, match=r"^record 2 \(id '2'\)"):
        parse_import_file(path, space="flexibert", metric="glue", higher_is_better=True)


def test_gpt2_json_config_missing(tmp_path: Path, shipped: dict[str, Any]) -> None:
    rows = json.loads(
        _write_json(tmp_path / "a.json", "gpt2", _normalised(shipped["gpt2"])).read_text()
    )
    del rows[2]["config"]
    (tmp_path / "a.json").write_text(json.dumps(rows))
    with pytest.raises(RecordError, match=r"^record 2 \(id 'config_0_j2'\): config: missing$"):
        parse_import_file(
            tmp_path / "a.json", space="gpt2", metric="valid_ppl", higher_is_better=False
        )


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("a.json", "", "the file is empty"),
        ("a.csv", "\n\n", "the file is empty"),
        ("a.json", "[]", "no records"),
        ("a.csv", "id,config,glue\n", "CSV header has no"),  # replaced below for glue
        ("a.json", '[{"id": 0,\n "hidden_size": 128,,}]', "invalid JSON at line 2, column"),
        ("a.json", '{"id": 0}', "not a list of records"),
        ("a.json", "[1, 2]", "record 0: int is not an object"),
        ("a.json", '[{"hidden_size": 128}]', "record 0 (no id)"),
        ("a.txt", "[]", "unknown extension '.txt' (valid: .json, .csv)"),
        ("a.csv", "id,glue\n1,70\n", "CSV header has no 'config' column"),
        ("a.csv", 'id,config,glue\n1,"{bad",70\n', "record 0 (id '1'): config: invalid JSON at"),
        ("a.csv", "id,config,glue\n1,{},70,5\n", "record 0 (id '1'): line 2 has 4 fields"),
        ("a.csv", 'id,config,glue\n1,"{""x"": 1}",70\n', "record 0 (id '1'): config.x: unknown"),
        ("a.csv", 'id,config,glue\n1,"{""a\n', "invalid CSV at line"),
    ],
)
def test_malformed_files(tmp_path: Path, name: str, text: str, expected: str) -> None:
    if expected == "CSV header has no":
        text, expected = "id,config\n", "CSV header has no 'glue' column (columns: id, config)"
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RecordError) as info:
        parse_import_file(path, space="flexibert", metric="glue", higher_is_better=True)
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(RecordError, match="cannot read"):
        parse_import_file(tmp_path / "nope.json", space="gpt2", metric="m", higher_is_better=False)
    (tmp_path / "b.csv").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(RecordError, match="not UTF-8"):
        parse_import_file(tmp_path / "b.csv", space="gpt2", metric="m", higher_is_better=False)


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown space"):
        parse_import_file(tmp_path / "a.json", space="rnn", metric="m", higher_is_better=True)
    with pytest.raises(ValueError, match="metric"):
        parse_import_file(tmp_path / "a.json", space="gpt2", metric="", higher_is_better=True)


# ---------------------------------------------------------------- imports: good files


def _same(a: ArchitectureRecord, b: ArchitectureRecord) -> None:
    assert (a.key, a.position, a.config) == (b.key, b.position, b.config)
    assert a.ground_truth == pytest.approx(b.ground_truth)


@pytest.mark.parametrize("space", ["flexibert", "gpt2"])
def test_json_in_shipped_shape_round_trips(
    tmp_path: Path, shipped: dict[str, Any], space: str
) -> None:
    rows = _shipped_rows(space)[:25]
    path = tmp_path / "mine.JSON"
    path.write_text(json.dumps(rows), encoding="utf-8")
    records = parse_import_file(path, space=space, metric=METRIC[space], higher_is_better=True)
    assert len(records) == 25
    for got, want in zip(records, shipped[space].records[:25], strict=True):
        _same(got, want)
        assert got.extra == want.extra


@pytest.mark.parametrize("space", ["flexibert", "gpt2"])
def test_csv_round_trips(tmp_path: Path, shipped: dict[str, Any], space: str) -> None:
    items = _normalised(shipped[space], n=12)
    path = _write(tmp_path, "csv", space, items)
    records = parse_import_file(path, space=space, metric=METRIC[space], higher_is_better=True)
    assert len(records) == 12
    for got, want in zip(records, shipped[space].records[:12], strict=True):
        _same(got, want)


def test_csv_other_columns(tmp_path: Path, shipped: dict[str, Any]) -> None:
    config = json.dumps(shipped["flexibert"].records[0].config)
    path = tmp_path / "mine.csv"
    with path.open("w", newline="", encoding="utf-8-sig") as fh:  # with a BOM, as Excel writes
        writer = csv.writer(fh)
        writer.writerow(["id", "config", "accuracy", "latency_ms", "notes", "time_to_train_s"])
        writer.writerow(["a", config, "0.91", "12.5", "first try", "3600"])
        writer.writerow(["b", config, "0.88", "nan", "", "1800"])
    records = parse_import_file(path, space="flexibert", metric="accuracy", higher_is_better=True)
    assert records[0].ground_truth == {"latency_ms": 12.5, "accuracy": 0.91}
    assert records[0].extra == {"notes": "first try", "time_to_train_s": 3600.0}
    assert records[1].ground_truth == {"accuracy": 0.88}  # non-finite secondary value left out
    assert records[1].extra == {"time_to_train_s": 1800.0}


def test_flexibert_json_metric_top_level(tmp_path: Path, shipped: dict[str, Any]) -> None:
    config = shipped["flexibert"].records[0].config
    rows = [
        {"id": "x", **config, "my_score": 3.5, "params_m": 11},
        {"id": 7, **config, "my_score": 4, "scores": {"cola": 40.0}},
    ]
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    records = parse_import_file(path, space="flexibert", metric="my_score", higher_is_better=True)
    assert [r.key for r in records] == ["x", "7"]
    assert records[0].ground_truth == {"params_m": 11.0, "my_score": 3.5}
    assert records[1].ground_truth == {"cola": 40.0, "my_score": 4.0}
    rows[1]["scores"]["my_score"] = 5
    path.write_text(json.dumps(rows), encoding="utf-8")
    with pytest.raises(RecordError, match=r"^record 1 \(id '7'\): metric 'my_score': 4 differs"):
        parse_import_file(path, space="flexibert", metric="my_score", higher_is_better=True)


# ---------------------------------------------------------------- imports: never a crash

_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 600) | st.floats() | st.text(max_size=4),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)


def _leaf_paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    paths = [path]
    if isinstance(value, dict):
        for k, v in value.items():
            paths += _leaf_paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            paths += _leaf_paths(v, (*path, i))
    return paths


@pytest.mark.parametrize("space", ["flexibert", "gpt2"])
@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_mutation_is_accepted_or_a_record_error(
    tmp_path: Path, shipped: dict[str, Any], space: str, data: st.DataObject
) -> None:
    rows = copy.deepcopy(_shipped_rows(space)[:3])
    path = data.draw(st.sampled_from(_leaf_paths(rows[1])[1:]))
    target = rows[1]
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = data.draw(_JSON_VALUES)
    file = tmp_path / "fuzz.json"
    file.write_text(json.dumps(rows), encoding="utf-8")
    try:
        records = parse_import_file(file, space=space, metric=METRIC[space], higher_is_better=True)
    except RecordError as exc:
        assert str(exc).startswith("record 1 ("), str(exc)
    else:
        assert len(records) == 3
