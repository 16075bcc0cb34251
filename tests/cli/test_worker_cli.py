"""lpzq worker: one process per GPU."""

from __future__ import annotations

from tests.conftest import run_lpzq


def test_cuda_worker_takes_one_process(cli_env: dict[str, str]) -> None:
    env = {**cli_env, "LPZQ_BROKER_URL": "redis://127.0.0.1:6379/15"}
    out = run_lpzq("worker", "--device", "cuda", "--concurrency", "2", env=env)
    assert out.returncode != 0
    assert "--device cuda takes --concurrency 1" in out.stderr
