"""lpzq bench create, lpzq subnet pretrain/search: tiny end-to-end runs and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_lpzq

# The smallest settings that still go through every stage (each training job ~1-3 s on CPU).
TINY_TRAIN = ("--batch-size", "2", "--seq-len", "16")


@pytest.mark.slow
def test_bench_create_then_search_start(cli_env: dict[str, str]) -> None:
    created = run_lpzq(
        "bench", "create", "mini", "--space", "gpt2", "--archs", "4", "--steps", "2",
        "--train-seeds", "0,1", "--width-scale", "0.125", "--max-layers", "2",
        "--eval-batches", "1", *TINY_TRAIN, env=cli_env,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    assert "mini: created (4 architectures; valid_ppl min" in created.stdout
    assert "noise ceiling (valid_ppl, training seed 0 vs 1, n=4): Kendall" in created.stdout
    # Without a terminal, training reports its progress in lines (always the last one).
    last = [line for line in created.stderr.splitlines() if line.startswith("lpzq: training mini:")]
    assert last and last[-1].startswith("lpzq: training mini: 16/16 after "), created.stderr
    assert last[-1].endswith("jobs 8/8 finished")
    show = run_lpzq("bench", "show", "mini", "--json", env=cli_env)
    overview = json.loads(show.stdout)
    assert overview["architectures"] == 4 and overview["metric"] == "valid_ppl"
    assert "valid_ppl_seed1" in overview["metrics"]
    assert overview["provenance"]["noise_ceiling"]["n"] == 4
    again = run_lpzq("bench", "create", "mini", "--space", "gpt2", env=cli_env)
    assert again.returncode == 1
    assert (
        again.stderr.strip() == "lpzq: error: benchmark 'mini' already exists; choose another name"
    )
    search = run_lpzq(
        "search", "start", "--bench", "mini", "--sample", "3", "--population", "4",
        "--children", "4", "--per-generation", "4", "--probe-size", "0",
        "--batch-size", "2", "--seq-len", "16", env=cli_env,
    )  # fmt: skip
    assert search.returncode == 0, search.stderr
    assert "run 1 best" in search.stdout and "mini: test split" in search.stdout


def test_bench_create_rejects_bad_input_in_one_line(cli_env: dict[str, str]) -> None:
    cases = {
        ("--space", "resnet"): "lpzq: error: unknown space 'resnet'; valid spaces: gpt2, flexibert",
        ("--space", "gpt2", "--seq-len", "500"): (
            "lpzq: error: hyperparameter seq_len: 500 is not in 8..192"
        ),
        ("--space", "gpt2", "--width-scale", "2"): (
            "lpzq: error: --width-scale 2.0 is not in (0, 1]"
        ),
    }
    for args, message in cases.items():
        out = run_lpzq("bench", "create", "x", *args, env=cli_env)
        assert (out.returncode, out.stderr.strip()) == (1, message)
    listing = run_lpzq("bench", "list", env=cli_env)
    assert " x " not in listing.stdout


def test_subnet_model_errors_are_one_line(cli_env: dict[str, str], tmp_path: Path) -> None:
    missing = run_lpzq(
        "subnet", "search", "--model", str(tmp_path / "nope"), "--proxy", "lpzero-gpt2",
        env=cli_env,
    )  # fmt: skip
    assert missing.returncode == 1
    assert missing.stderr.startswith(f"lpzq: error: model path '{tmp_path / 'nope'}' does not")
    assert missing.stderr.count("\n") == 1
    gpt2 = tmp_path / "gpt2"
    gpt2.mkdir()
    (gpt2 / "config.json").write_text(json.dumps({"model_type": "gpt2", "vocab_size": 50257}))
    wrong = run_lpzq(
        "subnet", "search", "--model", str(gpt2), "--proxy", "lpzero-gpt2", env=cli_env
    )
    assert wrong.returncode == 1 and wrong.stderr.count("\n") == 1
    assert "holds a gpt2 model, not a LLaMA-architecture model" in wrong.stderr
    builtin = run_lpzq("subnet", "search", "--model", str(gpt2), "--proxy", "params", env=cli_env)
    assert "'params' is a built-in baseline" in builtin.stderr


@pytest.mark.slow
def test_subnet_pretrain_then_search_prints_the_comparison(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    model = tmp_path / "llama"
    pre = run_lpzq(
        "subnet", "pretrain", "--out", str(model), "--steps", "2", "--hidden", "32",
        "--heads", "2", "--intermediate", "64", *TINY_TRAIN, env=cli_env,
    )  # fmt: skip
    assert pre.returncode == 0, pre.stderr
    assert (model / "config.json").is_file() and "valid_ppl" in pre.stdout
    report = tmp_path / "report.json"
    out = run_lpzq(
        "subnet", "search", "--model", str(model), "--proxy", "sum(mean(act), mean(head))",
        "--higher-is-better", "--samples", "4", "--top-k", "1", "--random-k", "1",
        "--steps", "1", "--rank", "4", "--out", str(report), *TINY_TRAIN, env=cli_env,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "picked by" in out.stdout and "active params" in out.stdout
    for group in ("proxy ", "random ", "largest "):
        assert any(line.startswith(group) for line in out.stdout.splitlines()), out.stdout
    data = json.loads(report.read_text())
    assert len(data["scored"]) == 4 and all(r["active_params"] > 0 for r in data["scored"])
    largest = next(r for r in data["finetuned"] if r["group"] == "largest")
    assert largest["widths"] == [64, 64] and largest["status"] == "completed"
    assert max(r["active_params"] for r in data["finetuned"]) == largest["active_params"]
