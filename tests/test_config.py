"""Settings: the celery_* options, the scoring thread rule, and one-line errors for bad values."""

from __future__ import annotations

import json

import pytest

from lpzero_queue.config import load_settings
from lpzero_queue.errors import ConfigError
from tests.conftest import run_lpzq


def test_defaults_of_the_distributed_settings() -> None:
    s = load_settings({})
    assert (s.celery_soft_time_limit_s, s.celery_hard_time_limit_s) == (1800, 2100)
    assert s.effective_visibility_timeout_s == 3000  # hard limit + 900 s
    assert (s.celery_lease_s, s.effective_heartbeat_s) == (60.0, 20.0)
    assert (s.celery_max_attempts, s.celery_key_prefix) == (3, "")
    # torch_threads 0 means one intra-op thread per scoring process, on every executor.
    assert (s.torch_threads, s.scoring_threads) == (0, 1)
    assert load_settings({"LPZQ_TORCH_THREADS": "4"}).scoring_threads == 4


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"LPZQ_CELERY_SOFT_TIME_LIMIT_S": "2100"},
            "inconsistent settings: celery_soft_time_limit_s (2100) must be below "
            "celery_hard_time_limit_s (2100)",
        ),
        (
            {"LPZQ_CELERY_VISIBILITY_TIMEOUT_S": "2000"},
            "inconsistent settings: celery_visibility_timeout_s (2000) must exceed "
            "celery_hard_time_limit_s (2100), or long units run twice; 0 derives it",
        ),
        (
            {"LPZQ_CELERY_LEASE_S": "10", "LPZQ_CELERY_HEARTBEAT_S": "10"},
            "inconsistent settings: celery_heartbeat_s (10) must be below celery_lease_s (10); "
            "0 means a third of the lease",
        ),
        ({"LPZQ_CELERY_MAX_ATTEMPTS": "0"}, "invalid setting 'celery_max_attempts'"),
        ({"LPZQ_CELERY_LEASE_S": "soon"}, "invalid setting 'celery_lease_s'"),
        ({"LPZQ_CELERY_BROKER_WAIT_S": "0"}, "invalid setting 'celery_broker_wait_s'"),
        ({"LPZQ_CELERY_LEASE": "5"}, "unknown setting 'celery_lease'; valid settings:"),
    ],
)
def test_bad_values_are_rejected_naming_the_settings(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_inconsistent_limits_are_one_line_from_the_cli(cli_env: dict[str, str]) -> None:
    env = {**cli_env, "LPZQ_CELERY_HARD_TIME_LIMIT_S": "600"}
    out = run_lpzq("config", "show", env=env)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        "lpzq: error: inconsistent settings: celery_soft_time_limit_s (1800) must be below "
        "celery_hard_time_limit_s (600)"
    ]


def test_config_show_lists_the_distributed_settings(cli_env: dict[str, str], tmp_path) -> None:
    cfg = tmp_path / "lpzq.toml"
    cfg.write_text("[lpzq]\ncelery_max_attempts = 5\ncelery_key_prefix = 'team-a:'\n")
    env = {**cli_env, "LPZQ_CONFIG": str(cfg), "LPZQ_CELERY_LEASE_S": "30"}
    out = run_lpzq("config", "show", "--json", env=env)
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)
    assert {k: v for k, v in shown.items() if k.startswith("celery_")} == {
        "celery_soft_time_limit_s": 1800,
        "celery_hard_time_limit_s": 2100,
        "celery_visibility_timeout_s": 3000,
        "celery_lease_s": 30.0,
        "celery_heartbeat_s": 10.0,
        "celery_max_attempts": 5,
        "celery_key_prefix": "team-a:",
        "celery_broker_wait_s": 300.0,
    }
    assert shown["torch_threads"] == 1  # the conftest environment sets 1
