"""A search through Celery workers equals the in-process search, and resumes after a kill."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from lpzero_queue.config import load_settings
from lpzero_queue.execution.celery_app import CeleryOptions
from lpzero_queue.execution.celery_executor import CeleryExecutor
from lpzero_queue.execution.local import LocalExecutor
from lpzero_queue.storage import make_engine, upgrade
from lpzero_queue.workflows.catalog import load_shipped_benchmark
from lpzero_queue.workflows.search_run import create_run, execute_run
from tests.conftest import drop_postgres_database, new_postgres_database
from tests.execution._celery_support import (
    BROKER_URL,
    delete_prefixed_keys,
    new_key_prefix,
    running_workers,
    worker_env,
)
from tests.workflows.test_search_run import TINY, _individuals

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture
def pg(pg_available: bool) -> Iterator[tuple[str, sessionmaker[Session]]]:
    url = new_postgres_database()
    engine: Engine = make_engine(url)
    try:
        upgrade(engine)
        factory = sessionmaker(engine, expire_on_commit=False)
        load_shipped_benchmark(factory, "gpt2-wt103")
        yield url, factory
    finally:
        engine.dispose()
        drop_postgres_database(url)


@pytest.fixture
def prefix() -> Iterator[str]:
    value = new_key_prefix()
    yield value
    delete_prefixed_keys(value)


def _celery(url: str, sessions: sessionmaker[Session], prefix: str) -> CeleryExecutor:
    settings = load_settings({"LPZQ_DATABASE_URL": url, "LPZQ_BROKER_URL": BROKER_URL})
    return CeleryExecutor(
        settings,
        sessions,
        options=CeleryOptions(key_prefix=prefix),
        lease_s=5.0,
        poll_s=0.2,
        pickup_timeout_s=10.0,
        timeout_s=300.0,
    )


def test_search_on_workers_equals_in_process_and_resumes(
    pg: tuple[str, sessionmaker[Session]], prefix: str, tmp_path: Path
) -> None:
    import torch

    _, sessions = pg
    # The in-process reference with one torch thread, like the workers (float reductions depend
    # on the thread count).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        local_run = create_run(sessions, "gpt2-wt103", TINY)
        execute_run(sessions, local_run, LocalExecutor(cache_bytes=2**30))
    finally:
        torch.set_num_threads(threads)
    expected = _individuals(sessions, local_run)

    # The same search on another seed-identical run, through a real worker. Stored evaluations
    # would be reused, so the Celery run scores in its own database.
    other_url = new_postgres_database()
    other_engine = make_engine(other_url)
    try:
        upgrade(other_engine)
        other = sessionmaker(other_engine, expire_on_commit=False)
        load_shipped_benchmark(other, "gpt2-wt103")
        env = worker_env(other_url)
        with running_workers(1, env, prefix, tmp_path, "--device", "cpu"):
            run_id = create_run(other, "gpt2-wt103", TINY)
            partial = execute_run(
                other, run_id, _celery(other_url, other, prefix), stop_after_generation=1
            )
            assert partial.status == "running"  # the coordinator "dies" here
            resumed = execute_run(other, run_id, _celery(other_url, other, prefix))
        assert resumed.status == "completed"
        assert _individuals(other, run_id) == expected
    finally:
        other_engine.dispose()
        drop_postgres_database(other_url)
