"""Training jobs through the train queue: idempotent rows, fenced leases, a real Celery worker.

The Celery test starts a real worker on the ``train`` queue against the local Redis and
PostgreSQL, SIGKILLs its child after the first checkpoint and checks that the redelivered job
resumes from that checkpoint and is recorded once.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from lpzero_queue.config import load_settings
from lpzero_queue.execution.train_runner import TrainRunner
from lpzero_queue.execution.train_tasks import (
    TEST_STEP_SLEEP_ENV,
    JobRequest,
    execute_job,
    lease_job,
)
from lpzero_queue.storage import TrainingJob, make_engine, upgrade
from tests.execution._celery_support import (
    BROKER_URL,
    delete_prefixed_keys,
    migrated_postgres,
    new_key_prefix,
    running_workers,
    worker_env,
)
from tests.training.conftest import TINY_HP, tiny_gpt2_config


def _request(steps: int = 2, seed: int = 0) -> JobRequest:
    hp = dataclasses.replace(TINY_HP, steps=steps).__dict__
    return JobRequest({"kind": "arch", "space": "gpt2", "config": tiny_gpt2_config()}, hp, seed)


def _rows(engine: Engine) -> list[TrainingJob]:
    from sqlalchemy.orm import Session

    with Session(engine) as s:
        return list(s.scalars(select(TrainingJob).order_by(TrainingJob.id)))


def test_in_process_jobs_are_idempotent_and_fenced(database_url: str, tmp_path: Path) -> None:
    engine = make_engine(database_url)
    upgrade(engine)
    settings = load_settings({"LPZQ_DATABASE_URL": database_url, "LPZQ_DATA_DIR": str(tmp_path)})
    said: list[str] = []
    runner = TrainRunner(settings, engine, say=said.append)
    requests = [_request(seed=0), _request(seed=1), _request(seed=0)]
    ids = runner.submit(requests)
    assert ids[0] == ids[2] != ids[1]  # the same (spec, hyper-parameters, seed) is one row
    results = runner.run(requests)
    assert [r.status for r in results] == ["completed"] * 3
    assert results[0].metrics["valid_ppl"] > 1 and results[0].metrics["steps"] == 2
    assert any("job" in line and "completed" in line for line in said)
    # A second request finds the rows done: nothing trains again.
    again = runner.run(requests)
    assert [r.metrics for r in again] == [r.metrics for r in results]
    assert all(r.attempts == 1 for r in again)
    # A redelivered message for a finished job returns its status without leasing it.
    key = requests[0].key
    url = engine.url.render_as_string(hide_password=False)
    assert execute_job(ids[0], url, worker="late", job_key=key, data_dir=tmp_path) == "completed"
    assert lease_job(engine, ids[0], "late", 60, key, 3) is None
    assert not list((tmp_path / "checkpoints").glob("*.pt"))  # completed jobs drop checkpoints
    engine.dispose()


@pytest.fixture
def pg_engine(pg_available: bool) -> Iterator[tuple[str, Engine]]:
    with migrated_postgres() as database:
        yield database


@pytest.mark.integration
def test_worker_killed_mid_training_resumes_from_its_checkpoint(
    pg_engine: tuple[str, Engine], tmp_path: Path
) -> None:
    url, engine = pg_engine
    prefix = new_key_prefix()
    settings = load_settings(
        {"LPZQ_DATABASE_URL": url, "LPZQ_BROKER_URL": BROKER_URL, "LPZQ_DATA_DIR": str(tmp_path)}
    )
    runner = TrainRunner(
        settings, engine, say=lambda _: None, lease_s=3.0, poll_s=0.2, key_prefix=prefix
    )
    request = _request(steps=6)
    (job_id,) = runner.submit([request])
    env = worker_env(url, LPZQ_DATA_DIR=str(tmp_path), **{TEST_STEP_SLEEP_ENV: "0.7"})
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            runner.wait([job_id])
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    try:
        with running_workers(1, env, prefix, tmp_path, "--queues", "train") as (worker,):
            thread = threading.Thread(target=wait, daemon=True)
            thread.start()
            deadline = time.monotonic() + 120
            killed_at = None
            while killed_at is None and time.monotonic() < deadline:
                (row,) = _rows(engine)
                if row.status == "running" and row.step >= 2 and worker.children():
                    killed_at = row.step
                    os.kill(worker.children()[0], signal.SIGKILL)
                time.sleep(0.1)
            thread.join(timeout=150)
            log = worker.log()
    finally:
        delete_prefixed_keys(prefix)
    assert killed_at is not None and not thread.is_alive() and not errors, (errors, log[-3000:])
    (row,) = _rows(engine)
    assert (row.status, row.attempts) == ("completed", 2), log[-3000:]
    assert row.metrics["resumed_from"] >= killed_at and row.metrics["steps"] == 6
    assert log.count(f"training job {job_id} attempt 2: completed") == 1, log[-3000:]


def test_ctrl_c_hands_the_job_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import lpzero_queue.training.loop as loop

    url = f"sqlite:///{tmp_path / 'lpzq.sqlite3'}"
    engine = make_engine(url)
    upgrade(engine)
    settings = load_settings({"LPZQ_DATABASE_URL": url, "LPZQ_DATA_DIR": str(tmp_path)})
    request = _request()
    (job_id,) = TrainRunner(settings, engine, say=lambda _: None).submit([request])

    def interrupted(*_args: object, **_kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "train", interrupted)
    with pytest.raises(KeyboardInterrupt):
        execute_job(job_id, url, worker="me", job_key=request.key, data_dir=tmp_path)
    (row,) = _rows(engine)
    assert (row.status, row.lease_expires_at, row.error) == ("pending", None, "interrupted")
    engine.dispose()


def test_out_of_memory_is_retried_up_to_the_cap_then_the_job_fails(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Out of memory is an infrastructure failure, as for the proxy units: never a result."""
    import lpzero_queue.training.loop as loop

    engine = make_engine(database_url)
    upgrade(engine)
    settings = load_settings(
        {
            "LPZQ_DATABASE_URL": database_url,
            "LPZQ_DATA_DIR": str(tmp_path),
            "LPZQ_CELERY_MAX_ATTEMPTS": "2",
        }
    )
    real = loop.train
    calls: list[int] = []

    def out_of_memory_once(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 1:
            raise MemoryError("CUDA out of memory (simulated)")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(loop, "train", out_of_memory_once)
    runner = TrainRunner(settings, engine, say=lambda _: None, poll_s=0.01)
    (result,) = runner.run([_request(seed=0)])
    assert (result.status, result.attempts, result.error) == ("completed", 2, None)

    def out_of_memory(*_args: object, **_kwargs: object) -> None:
        raise MemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(loop, "train", out_of_memory)
    request = _request(seed=1)
    (job_id,) = runner.submit([request])
    url = engine.url.render_as_string(hide_password=False)
    # One attempt: the lease is released at once with the reason; nothing is recorded.
    kw = {"worker": "w1", "job_key": request.key, "data_dir": tmp_path, "max_attempts": 2}
    assert execute_job(job_id, url, **kw) == "released"  # type: ignore[arg-type]
    (row,) = [r for r in _rows(engine) if r.id == job_id]
    assert (row.status, row.attempts, row.metrics) == ("running", 1, {})
    assert row.error == "MemoryError: CUDA out of memory (simulated)"
    # The runner retries it (the lease was released) up to the cap, then the job is failed.
    runner.wait([job_id])
    (failed,) = runner.results([job_id])
    assert (failed.status, failed.attempts, failed.metrics) == ("failed", 2, {})
    assert (failed.error or "").startswith("gave up after 2 attempts (last worker in-process-")
    assert (failed.error or "").endswith("): MemoryError: CUDA out of memory (simulated)")
    # A new request with --retry-failed gets a fresh budget and trains it.
    monkeypatch.setattr(loop, "train", real)
    (again,) = runner.run([request], retry_failed=True)
    assert (again.status, again.attempts) == ("completed", 3)
    engine.dispose()
