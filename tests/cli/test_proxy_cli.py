"""lpzq proxy: eval prints the figures with how they were obtained, next to trivial baselines."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.cli.conftest import import_short_gpt2, one_process
from tests.conftest import run_lpzq

SMALL = ("--split", "search", "--search-size", "5", "--batch-size", "2", "--seq-len", "16")


@pytest.mark.slow
def test_eval_named_proxy_prints_provenance_and_baselines(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    out = run_lpzq("proxy", "eval", "lpzero-gpt2", "--bench", "gpt2-wt103", *SMALL, env=cli_env)
    assert out.returncode == 0, out.stderr
    assert "loaded the shipped benchmark 'gpt2-wt103'" in out.stdout
    header = next(line for line in out.stdout.splitlines() if line.startswith("gpt2-wt103:"))
    parts = ("search split", "n=5", "seeds [0]", "builder gpt2", "objective lm", "batch 2x16")
    for part in (*parts, "linear scope all"):
        assert part in header, (part, header)
    for name in ("lpzero-gpt2", "params", "nonembedding_params", "n_layers", "layers_x_hidden"):
        assert any(line.startswith(name) for line in out.stdout.splitlines()), name
    # Another linear scope is another setup: computed and stored beside the first.
    mixer = run_lpzq(
        "proxy",
        "eval",
        "lpzero-gpt2",
        "--bench",
        "gpt2-wt103",
        *SMALL,
        "--linear-scope",
        "mixer",
        env=cli_env,
    )
    assert mixer.returncode == 0, mixer.stderr
    assert "linear scope mixer" in mixer.stdout
    db = next((tmp_path / "data").rglob("lpzq.sqlite3"))
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT c.linear_scope, COUNT(*) FROM evaluations c JOIN proxies p ON p.id = c.proxy_id"
            " WHERE p.name = 'lpzero-gpt2' GROUP BY c.linear_scope ORDER BY 1"
        ).fetchall()
    assert rows == [("all", 5), ("mixer", 5)]


@pytest.mark.parametrize(
    ("proxy", "extra", "expected"),
    [
        ("sum(sqaure(act), abs(head))", ["--higher-is-better"], "position 4: unknown operator"),
        ("sum(abs(act), abs(head))", [], "--higher-is-better or --lower-is-better"),
        ("synflo", [], "unknown proxy 'synflo'; give an expression or one of:"),
        # A 100 KB paste is echoed as its first 80 characters and its length, not whole.
        ("x" * 100_000, [], "unknown proxy '" + "x" * 80 + "'... (100,000 characters);"),
        ("sum(" + "y" * 100_000 + ")", ["--higher-is-better"], "... (100,000 characters)"),
    ],
)
def test_bad_proxies_are_one_line_errors(
    cli_env: dict[str, str], proxy: str, extra: list[str], expected: str
) -> None:
    out = run_lpzq("proxy", "eval", proxy, *extra, "--bench", "gpt2-wt103", env=cli_env)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert expected in out.stderr and len(out.stderr) < 1200


def test_bad_builder_is_a_one_line_error(cli_env: dict[str, str]) -> None:
    out = run_lpzq(
        "proxy", "eval", "params", "--bench", "flexibert", "--builder", "tf", *SMALL, env=cli_env
    )
    assert out.returncode == 1
    assert "unknown builder 'tf' for flexibert; valid: faithful, lpzero" in out.stderr


def test_bad_linear_scope_is_a_one_line_error(cli_env: dict[str, str]) -> None:
    out = run_lpzq(
        "proxy",
        "eval",
        "params",
        "--bench",
        "flexibert",
        "--linear-scope",
        "every",
        *SMALL,
        env=cli_env,
    )
    assert out.returncode == 1
    assert "unknown linear scope 'every'; expected one of: mixer, all" in out.stderr


def _count(db: Path, sql: str) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute(sql).fetchone()[0])


@pytest.mark.slow
def test_short_context_benchmark_takes_its_sequence_length(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    cli_env = one_process(cli_env)
    import_short_gpt2(cli_env, tmp_path, tgt_len=32)
    out = run_lpzq(
        "proxy", "eval", "lpzero-gpt2", "--bench", "short", "--split", "all", "--batch-size", "2",
        env=cli_env,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    header = next(line for line in out.stdout.splitlines() if line.startswith("short:"))
    assert "n=8" in header
    assert "batch 2x32 (the longest sequence every architecture accepts)" in header, header
    db = next((tmp_path / "data").rglob("lpzq.sqlite3"))
    assert _count(db, "SELECT COUNT(*) FROM evaluations WHERE status = 'error'") == 0
    assert _count(db, "SELECT COUNT(*) FROM evaluations WHERE status = 'ok'") > 8
    stored = _count(db, "SELECT COUNT(*) FROM evaluations")
    # A longer sequence is refused before any work, by every command that scores.
    for command in (
        ("proxy", "baselines", "--only", "params"),
        ("proxy", "eval", "lpzero-gpt2"),
        ("search", "start"),
    ):
        refused = run_lpzq(*command, "--bench", "short", "--seq-len", "48", env=cli_env)
        assert refused.returncode == 1, command
        assert refused.stderr.strip().splitlines() == [
            "lpzq: error: short: --seq-len 48 is longer than the benchmark's architectures "
            "accept; valid: at most 32"
        ], (command, refused.stderr)
    assert _count(db, "SELECT COUNT(*) FROM evaluations") == stored
    assert _count(db, "SELECT COUNT(*) FROM input_batches WHERE seq_len = 48") == 0
    assert _count(db, "SELECT COUNT(*) FROM search_runs") == 0
