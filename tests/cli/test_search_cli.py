"""lpzq search start: defaults that follow the benchmark and the sample."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest

from tests.cli.conftest import import_short_gpt2, one_process
from tests.conftest import run_lpzq

TINY = ("--population", "4", "--children", "4", "--per-generation", "4", "--batch-size", "2")


def test_only_an_explicit_probe_size_can_exceed_the_sample(cli_env: dict[str, str]) -> None:
    out = run_lpzq("search", "start", "--bench", "nope", "--sample", "8", env=cli_env)
    assert out.returncode == 1 and "no benchmark 'nope'" in out.stderr, out.stderr
    out = run_lpzq(
        "search", "start", "--bench", "nope", "--sample", "8", "--probe-size", "12", env=cli_env
    )
    assert out.returncode == 1
    assert "'probe_size': 12; valid: 0 (no probe stage) or an integer in [3, sample=8]" in (
        out.stderr
    )


@pytest.mark.slow
def test_search_on_a_short_context_benchmark_then_its_transfer_matrix(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    env = one_process(cli_env)
    import_short_gpt2(env, tmp_path, tgt_len=32)
    out = run_lpzq("search", "start", "--bench", "short", "--sample", "4", *TINY, env=env)
    assert out.returncode == 0, out.stderr
    header = next(line for line in out.stdout.splitlines() if line.startswith("short:"))
    assert "test split (search split sample4-seed0), n=4" in header, header
    assert "batch 2x32 (the longest sequence every architecture accepts)" in header, header
    status = json.loads(run_lpzq("search", "status", "1", "--json", env=env).stdout)
    assert status["status"] == "completed"
    assert status["setup"]["seq_len"] == 32
    db = next((tmp_path / "data").rglob("lpzq.sqlite3"))
    with sqlite3.connect(db) as conn:
        (stored,) = conn.execute("SELECT config FROM search_runs").fetchone()
    assert json.loads(stored)["probe_size"] == 4  # the default followed the sample

    # The run's best proxy beside a named one on two benchmarks of the space: held out from
    # the run's search split on its own benchmark, all architectures on the other; each with
    # the sequence length its architectures accept.
    import_short_gpt2(env, tmp_path, name="wide", n=6, tgt_len=64, seed=1)
    out = run_lpzq(
        "proxy", "transfer", "lpzero-gpt2", "--run", "1", "--bench", "short", "--bench", "wide",
        "--max-archs", "3", "--batch-size", "2", env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    head = lines.index(
        "proxy transfer on gpt2: tie-fair Kendall / Kendall tau-b / Spearman per benchmark"
    )
    assert re.fullmatch(r"proxy +short \(held out: test:sample4-seed0\) +wide", lines[head + 1])
    rows = {line.split("  ")[0]: line for line in lines[head + 3 : head + 9]}
    assert set(rows) == {
        "lpzero-gpt2", "run 1 best", "params", "nonembedding_params", "n_layers",
        "layers_x_hidden",
    }  # fmt: skip
    number = r"[+-]\d\.\d{3} / [+-]\d\.\d{3} / [+-]\d\.\d{3}"  # tie-fair / tau-b / Spearman
    cell = rf"({number}|-)"  # - when undefined (a constant proxy on 3 architectures)
    for line in rows.values():
        assert re.fullmatch(rf"\S.*? +{cell} +{cell}", line), line
    assert re.fullmatch(rf"nonembedding_params +{number} +{number}", rows["nonembedding_params"])
    headers = [line for line in lines if line.startswith(("short:", "wide:"))]
    assert headers[0].startswith("short: test split (search split sample4-seed0), its first 3, n=3")
    assert headers[1].startswith("wide: all architectures, its first 3, n=3")
    assert "batch 2x32 (the longest sequence every architecture accepts)" in headers[0]
    assert "batch 2x64 (the longest sequence every architecture accepts)" in headers[1]
    with sqlite3.connect(db) as conn:
        stored = conn.execute(
            "SELECT b.name, c.split, c.n, c.details FROM correlations c"
            " JOIN benchmarks b ON b.id = c.benchmark_id JOIN proxies p ON p.id = c.proxy_id"
            " WHERE p.name = 'lpzero-gpt2' AND c.details LIKE '%proxy transfer%' ORDER BY 1"
        ).fetchall()
    assert [(b, split, n) for b, split, n, _ in stored] == [
        ("short", "test:sample4-seed0:first3", 3),
        ("wide", "all:first3", 3),
    ]
    assert json.loads(stored[0][3])["held_out_runs"] == [1]
