"""lpzq bench: list, load (idempotent), show, import (validated, all or nothing)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    REPO_ROOT,
    drop_postgres_database,
    new_postgres_database,
    run_lpzq,
)

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


def _hostile(tmp_path: Path) -> dict[str, tuple[Path, list[str], str]]:
    """name -> (file, extra arguments, what the one error line must say)."""
    record = json.loads(FLEXI.read_text())[0]
    cases: dict[str, tuple[Any, list[str], str]] = {
        "nested": ("[" * 200_000 + "]" * 200_000, [], "nested deeper than 32 levels"),
        "hidden": ([{**record, "hidden_size": 1_000_000_000}], [], "hidden_size: 1,000,000,000"),
        "id": ([{**record, "id": "x" * 129}], [], "id: 129 characters, above the bound 128"),
        "name": ([record], ["--name", "n" * 65], "--name 'nnnn"),
        "layers": (
            [{**record, "encoder_layers": record["encoder_layers"][:1] * 20_000}],
            [],
            "encoder_layers: 20,000 entries, above the bound 64",
        ),
        "params": (
            [
                {
                    **record,
                    "hidden_size": 4096,
                    "encoder_layers": [
                        {
                            **record["encoder_layers"][0],
                            "feed_forward_dimension": 16384,
                            "num_feed_forward": 16,
                        }
                    ]
                    * 64,
                }
            ],
            [],
            "parameters (faithful builder) is above the bound 1,000,000,000",
        ),
    }
    out = {}
    for name, (content, extra, expected) in cases.items():
        path = tmp_path / f"{name}.json"
        path.write_text(content if isinstance(content, str) else json.dumps(content))
        out[name] = (path, extra, expected)
    return out


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)]
)
def test_hostile_imports_are_one_line_errors_on_both_backends(
    backend: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    request: pytest.FixtureRequest,
) -> None:
    """Bounds are checked before storage: same message, nothing stored, on SQLite and PostgreSQL."""
    from lpzero_queue.cli import main

    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    if backend == "postgresql":
        request.getfixturevalue("pg_available")
        url = new_postgres_database()
        request.addfinalizer(lambda: drop_postgres_database(url))
    for key in [k for k in os.environ if k.startswith("LPZQ_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("LPZQ_DATABASE_URL", url)
    for name, (path, extra, expected) in _hostile(tmp_path).items():
        args = ["bench", "import", str(path), "--space", "flexibert", "--metric", "glue"]
        args += [*(extra or ["--name", "mine"]), "--higher-is-better"]
        started = time.monotonic()
        with pytest.raises(SystemExit) as exit_info:
            main(args)
        err = capsys.readouterr().err
        assert exit_info.value.code == 1, (name, err)
        assert err.startswith("lpzq: error: ") and len(err.strip().splitlines()) == 1, (name, err)
        assert expected in err, (name, err)
        assert time.monotonic() - started < 20, name  # bounded before any expensive work
    main(["bench", "list"])
    assert "mine" not in capsys.readouterr().out
