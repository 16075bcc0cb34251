"""The lpzq command line: version, config, db commands and one-line errors (real subprocesses)."""

from __future__ import annotations

import json

import pytest

from lpzero_queue import __version__
from lpzero_queue.storage import head_revision
from tests.conftest import run_lpzq


def test_version(cli_env: dict[str, str]) -> None:
    out = run_lpzq("--version", env=cli_env)
    assert out.returncode == 0
    assert out.stdout.startswith(f"lpzq {__version__}")


def test_every_command_has_help_with_an_example(cli_env: dict[str, str]) -> None:
    for args in (["config", "show"], ["db", "upgrade"], ["db", "current"], ["db", "downgrade"]):
        out = run_lpzq(*args, "--help", env=cli_env)
        assert out.returncode == 0, out.stderr
        assert "Example: " in out.stdout, args


def test_config_show_masks_passwords(cli_env: dict[str, str]) -> None:
    env = {
        **cli_env,
        "LPZQ_DATABASE_URL": "postgresql+psycopg2://me:hunter2@db:5432/lpzq",
        "LPZQ_BROKER_URL": "redis://:s3cret@redis:6379/0",
    }
    out = run_lpzq("config", "show", "--json", env=env)
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)
    assert "hunter2" not in out.stdout and "s3cret" not in out.stdout
    assert shown["database_url"] == "postgresql+psycopg2://me:***@db:5432/lpzq"
    assert shown["broker_url"] == "redis://:***@redis:6379/0"
    assert shown["execution"] == "celery"


def test_embedded_default_is_sqlite_in_process(cli_env: dict[str, str]) -> None:
    out = run_lpzq("config", "show", "--json", env=cli_env)
    shown = json.loads(out.stdout)
    assert (
        shown["database_url"] == f"sqlite:///{cli_env['XDG_DATA_HOME']}/lpzero_queue/lpzq.sqlite3"
    )
    assert shown["execution"] == "in-process"


def test_db_upgrade_current_downgrade_on_the_embedded_default(cli_env: dict[str, str]) -> None:
    up = run_lpzq("db", "upgrade", env=cli_env)
    assert up.returncode == 0, up.stderr
    assert f"empty -> {head_revision()}" in up.stdout
    cur = run_lpzq("db", "current", env=cli_env)
    assert "(up to date)" in cur.stdout
    down = run_lpzq("db", "downgrade", "base", "--yes", env=cli_env)
    assert down.returncode == 0 and "-> empty" in down.stdout
    cur = run_lpzq("db", "current", env=cli_env)
    assert "empty (behind head" in cur.stdout


@pytest.mark.integration
def test_db_upgrade_on_postgresql(cli_env: dict[str, str], pg_available: bool) -> None:
    from tests.conftest import drop_postgres_database, new_postgres_database

    url = new_postgres_database()
    try:
        out = run_lpzq("db", "upgrade", env={**cli_env, "LPZQ_DATABASE_URL": url})
        assert out.returncode == 0, out.stderr
        assert f"empty -> {head_revision()}" in out.stdout
    finally:
        drop_postgres_database(url)


@pytest.mark.parametrize(
    ("env_extra", "expected"),
    [
        (
            {"LPZQ_DATABASE_URL": "postgresql+psycopg2://x:secret@127.0.0.1:1/nope"},
            "cannot use database postgresql+psycopg2://x:***@127.0.0.1:1/nope: ",
        ),
        ({"LPZQ_DATABASE_URL": "nosuchdb://x/y"}, "unsupported database URL"),
        ({"LPZQ_DATABSE_URL": "sqlite://"}, "unknown setting 'databse_url'; valid settings:"),
        ({"LPZQ_DEVICE": "tpu"}, "invalid setting 'device'"),
    ],
)
def test_errors_are_one_line_without_traceback(
    cli_env: dict[str, str], env_extra: dict[str, str], expected: str
) -> None:
    out = run_lpzq("db", "upgrade", env={**cli_env, **env_extra})
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert expected in lines[0]
    assert "secret" not in out.stderr


def test_unknown_revision_is_a_one_line_error(cli_env: dict[str, str]) -> None:
    out = run_lpzq("db", "upgrade", "nonexistent", env=cli_env)
    assert out.returncode != 0
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


def test_toml_config_file_is_read_and_env_wins(cli_env: dict[str, str], tmp_path) -> None:
    cfg = tmp_path / "lpzq.toml"
    cfg.write_text('[lpzq]\ndevice = "cpu"\ntorch_threads = 3\n')
    env = {**cli_env, "LPZQ_CONFIG": str(cfg)}
    env.pop("LPZQ_TORCH_THREADS")
    shown = json.loads(run_lpzq("config", "show", "--json", env=env).stdout)
    assert shown["device"] == "cpu" and shown["torch_threads"] == 3
    shown = json.loads(
        run_lpzq("config", "show", "--json", env={**env, "LPZQ_DEVICE": "cuda"}).stdout
    )
    assert shown["device"] == "cuda"
    cfg.write_text("devcie = 'cpu'\n")
    out = run_lpzq("config", "show", env=env)
    assert out.returncode == 1 and "unknown setting 'devcie'" in out.stderr
