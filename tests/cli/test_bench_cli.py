"""lpzq bench: list, load (idempotent), show, import (validated, all or nothing)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import REPO_ROOT, run_lpzq

FLEXI = REPO_ROOT / "lpzero_queue/benchmarks/data/flexibert/benchmark.json"


def test_load_twice_show_and_list(cli_env: dict[str, str]) -> None:
    first = run_lpzq("bench", "load", "gpt2-wt103", env=cli_env)
    assert first.returncode == 0, first.stderr
    assert "gpt2-wt103: loaded (200 architectures)" in first.stdout
    assert "created the schema" in first.stdout
    # Without a terminal, loading reports progress in lines (always the last one).
    assert "lpzq: loading gpt2-wt103: 200/200 after " in first.stderr, first.stderr
    second = run_lpzq("bench", "load", "gpt2-wt103", env=cli_env)
    assert "already loaded, unchanged (200 architectures)" in second.stdout
    show = run_lpzq("bench", "show", "gpt2-wt103", env=cli_env)
    assert show.returncode == 0, show.stderr
    assert "valid_ppl (lower is better)" in show.stdout
    assert "ground truth       min 24.3" in show.stdout
    listing = run_lpzq("bench", "list", env=cli_env)
    assert "gpt2-wt103" in listing.stdout and "loaded" in listing.stdout
    assert "flexibert" in listing.stdout and "shipped, not loaded" in listing.stdout


def test_unknown_shipped_name_is_one_line(cli_env: dict[str, str]) -> None:
    out = run_lpzq("bench", "load", "imagenet", env=cli_env)
    assert out.returncode == 1
    assert out.stderr.strip() == (
        "lpzq: error: unknown benchmark 'imagenet'; shipped benchmarks: flexibert, gpt2-wt103"
    )


def test_malformed_import_names_the_record_and_loads_nothing(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    records = json.loads(FLEXI.read_text())[:10]
    records[7]["encoder_layers"][1]["operation_type"] = "XX"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(records))
    out = run_lpzq(
        "bench",
        "import",
        str(bad),
        "--name",
        "mine",
        "--space",
        "flexibert",
        "--metric",
        "glue",
        "--higher-is-better",
        env=cli_env,
    )
    assert out.returncode == 1
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
    assert "record 7 (id '7')" in out.stderr and "operation_type" in out.stderr
    listing = run_lpzq("bench", "list", env=cli_env)
    assert "mine" not in listing.stdout


def test_csv_import_then_show(cli_env: dict[str, str], tmp_path: Path) -> None:
    records = json.loads(FLEXI.read_text())[:6]
    lines = ["id,config,glue,cola"]
    for r in records:
        config = json.dumps(
            {"hidden_size": r["hidden_size"], "encoder_layers": r["encoder_layers"]}
        )
        lines.append(
            f'{r["id"]},"{config.replace(chr(34), chr(34) * 2)}",'
            f"{r['scores']['glue']},{r['scores']['cola']}"
        )
    path = tmp_path / "mine.csv"
    path.write_text("\n".join(lines) + "\n")
    args = (
        "bench",
        "import",
        str(path),
        "--name",
        "mine",
        "--space",
        "flexibert",
        "--metric",
        "glue",
        "--higher-is-better",
    )
    out = run_lpzq(*args, env=cli_env)
    assert out.returncode == 0, out.stderr
    assert "mine: imported (6 architectures)" in out.stdout
    assert "already imported, unchanged" in run_lpzq(*args, env=cli_env).stdout
    show = json.loads(run_lpzq("bench", "show", "mine", "--json", env=cli_env).stdout)
    assert show["architectures"] == 6 and sorted(show["metrics"]) == ["cola", "glue"]


def test_import_requires_a_direction(cli_env: dict[str, str], tmp_path: Path) -> None:
    out = run_lpzq(
        "bench",
        "import",
        str(tmp_path / "x.json"),
        "--name",
        "m",
        "--space",
        "flexibert",
        "--metric",
        "glue",
        env=cli_env,
    )
    assert out.returncode == 1 and "--higher-is-better or --lower-is-better" in out.stderr
