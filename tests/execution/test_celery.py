"""Distribution with real worker subprocesses, the real Redis and the real PostgreSQL.

No eager mode: messages are serialised, acknowledged late and redelivered by Redis; workers are
killed with SIGKILL; Redis is restarted. Each test isolates its Redis keys by a prefix on a
dedicated database number and always stops its workers.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import sessionmaker

from lpzero_queue.config import load_settings
from lpzero_queue.execution.base import UnitFailedError
from lpzero_queue.execution.celery_app import CeleryOptions
from lpzero_queue.execution.celery_executor import CeleryExecutor
from lpzero_queue.execution.local import LocalExecutor
from lpzero_queue.execution.tasks import TEST_FAIL_ENV, TEST_SLEEP_ENV
from lpzero_queue.proxies.scoring import ScoreRow, WorkUnit
from lpzero_queue.storage import WorkUnitRow
from tests.conftest import REPO_ROOT, message_lines, run_lpzq
from tests.execution._celery_support import (
    BROKER_URL,
    Background,
    comparable,
    delete_prefixed_keys,
    migrated_postgres,
    new_key_prefix,
    running_workers,
    tiny_units,
    worker_env,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

UNITS = tiny_units(3)


@pytest.fixture(scope="module")
def local_rows() -> dict[int, list[dict[str, Any]]]:
    """The in-process reference: unit index -> rows without timings.

    Both executors score with ``scoring_threads`` (one thread unless LPZQ_TORCH_THREADS says
    otherwise): float reductions depend on the thread count.
    """
    local = LocalExecutor(cache_bytes=2**29)
    return {i: comparable(rows) for i, (_, rows) in enumerate(local.run(UNITS))}


@pytest.fixture
def pg(pg_available: bool) -> Iterator[tuple[str, Engine]]:
    with migrated_postgres() as database:
        yield database


@pytest.fixture
def prefix() -> Iterator[str]:
    value = new_key_prefix()
    yield value
    delete_prefixed_keys(value)


def _executor(url: str, engine: Engine, prefix: str, **kw: Any) -> CeleryExecutor:
    settings = load_settings({"LPZQ_DATABASE_URL": url, "LPZQ_BROKER_URL": BROKER_URL})
    options = dict(lease_s=3.0, poll_s=0.2, pickup_timeout_s=5.0, timeout_s=180.0)
    options.update(kw)
    return CeleryExecutor(
        settings, sessionmaker(engine), options=CeleryOptions(key_prefix=prefix), **options
    )


def _rows_by_unit(results: list[tuple[WorkUnit, list[ScoreRow]]]) -> dict[int, Any]:
    return {UNITS.index(unit): comparable(rows) for unit, rows in results}


def _db_rows(engine: Engine) -> list[WorkUnitRow]:
    with sessionmaker(engine)() as s:
        return list(s.scalars(select(WorkUnitRow).order_by(WorkUnitRow.id)))


def _done_lines(log: str) -> dict[int, int]:
    """unit id -> how many times a worker recorded it done."""
    counts: dict[int, int] = {}
    for match in re.finditer(r"unit (\d+) attempt \d+: done", log):
        counts[int(match.group(1))] = counts.get(int(match.group(1)), 0) + 1
    return counts


def test_celery_equals_in_process_and_reruns_from_the_database(
    pg: tuple[str, Engine], prefix: str, tmp_path: Path, local_rows: dict[int, Any]
) -> None:
    url, engine = pg
    ex = _executor(url, engine, prefix)
    with running_workers(1, worker_env(url), prefix, tmp_path, "--device", "cpu") as (worker,):
        results = list(ex.run(UNITS))
        assert _rows_by_unit(results) == local_rows
        assert ex.dispatched == len(UNITS)
        # Shards remember their worker (its own queue gets them next time).
        assert set(ex.affine.values()) == {re.search(r"(proxy-\d+@\S+) ready", worker.log())[1]}
        # The health check of the image pings this host's worker through the broker.
        env = worker_env(url)
        check = run_lpzq("worker", "--check", "--key-prefix", prefix, env=env, timeout=60)
        assert check.returncode == 0, check.stderr
        assert "proxy-" in check.stdout
    # A rerun (e.g. a resumed coordinator) reads the stored results: nothing is sent.
    again = _executor(url, engine, prefix)
    assert _rows_by_unit(list(again.run(UNITS))) == local_rows
    assert again.dispatched == 0
    rows = _db_rows(engine)
    assert [(r.status, r.attempts) for r in rows] == [("done", 1)] * len(UNITS)
    # Each result records the thread count and device that produced it.
    assert {(r.result["torch_threads"], r.result["device"]) for r in rows if r.result} == {
        (1, "cpu")
    }
    assert ex.name == "celery:threads=1"


def test_a_worker_that_always_dies_fails_the_unit_and_a_rerun_retries_it(
    pg: tuple[str, Engine], prefix: str, tmp_path: Path, local_rows: dict[int, Any]
) -> None:
    url, engine = pg
    ex = _executor(url, engine, prefix, max_attempts=2)
    env = worker_env(url, **{TEST_FAIL_ENV: "kill"})
    with running_workers(1, env, prefix, tmp_path, "--device", "cpu") as (worker,):
        with pytest.raises(UnitFailedError) as info:
            list(ex.run(UNITS[:1]))
        log = worker.log()
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("work unit 1 (1 flexibert architectures x 3 proxies, seed 0) failed")
    assert "gave up after 2 attempts" in message and "its lease expired (killed" in message
    assert "SIGKILL" in log
    (row,) = _db_rows(engine)
    assert (row.status, row.attempts, row.result) == ("failed", 2, None)
    # The next request (a rerun, or lpzq search resume) retries it with fresh attempts.
    with running_workers(1, worker_env(url), prefix, tmp_path, "--device", "cpu"):
        results = list(_executor(url, engine, prefix, max_attempts=2).run(UNITS[:1]))
    assert _rows_by_unit(results) == {0: local_rows[0]}
    (row,) = _db_rows(engine)
    assert (row.status, row.attempts, row.max_attempts, row.error) == ("done", 3, 4, None)


def test_failed_unit_stores_no_evaluations_and_the_cli_says_so_in_one_line(
    pg: tuple[str, Engine], prefix: str, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    from sqlalchemy import func

    from lpzero_queue.storage import Evaluation

    url, engine = pg
    env = {
        **cli_env,
        "LPZQ_DATABASE_URL": url,
        "LPZQ_BROKER_URL": BROKER_URL,
        "LPZQ_CELERY_KEY_PREFIX": prefix,
        "LPZQ_CELERY_MAX_ATTEMPTS": "1",
        "LPZQ_CELERY_LEASE_S": "5",
    }
    args = ("proxy", "eval", "params", "--bench", "flexibert", "--split", "search")
    args += ("--search-size", "3", "--batch-size", "2", "--seq-len", "16")
    failing = worker_env(url, **{TEST_FAIL_ENV: "CUDA error: an illegal memory access"})
    with running_workers(1, failing, prefix, tmp_path, "--device", "cpu"):
        out = run_lpzq(*args, env=env, timeout=180)
    assert out.returncode == 1, out.stderr
    lines = message_lines(out.stderr)  # loading flexibert on first use reports progress
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("lpzq: error: work unit ")
    assert "MemoryError: CUDA error: an illegal memory access; nothing was stored" in lines[0]
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Evaluation)) == 0
    with running_workers(1, worker_env(url), prefix, tmp_path, "--device", "cpu"):
        out = run_lpzq(*args, env=env, timeout=180)
    assert out.returncode == 0, out.stderr
    with engine.connect() as conn:
        stored = conn.execute(select(Evaluation.status, Evaluation.worker)).all()
    assert stored and set(stored) == {("ok", "celery:threads=1")}


def test_kill_9_mid_task_redoes_each_unit_exactly_once(
    pg: tuple[str, Engine], prefix: str, tmp_path: Path, local_rows: dict[int, Any]
) -> None:
    url, engine = pg
    units = UNITS[:2]
    ex = _executor(url, engine, prefix, max_attempts=4)
    env = worker_env(url, **{TEST_SLEEP_ENV: "2"})
    kills: list[tuple[int, int]] = []  # (unit id, attempt) killed mid-task
    with running_workers(1, env, prefix, tmp_path, "--device", "cpu") as (worker,):
        run = Background(ex, units)
        run.start()
        deadline = time.monotonic() + 120
        while len(kills) < 2 and run.is_alive() and time.monotonic() < deadline:
            running = [r for r in _db_rows(engine) if r.status == "running"]
            fresh = [r for r in running if (r.id, r.attempts) not in kills]
            children = worker.children()
            if fresh and children:
                time.sleep(0.5)  # inside the lease: sleeping or computing
                os.kill(children[0], signal.SIGKILL)
                kills.append((fresh[0].id, fresh[0].attempts))
            time.sleep(0.1)
        run.join(timeout=150)
        log = worker.log()
    assert not run.is_alive() and run.error is None, (run.error, log[-3000:])
    assert len(kills) == 2, log[-3000:]
    assert _rows_by_unit(run.results) == {i: local_rows[i] for i in range(len(units))}
    killed: dict[int, int] = {}
    for unit_id, _ in kills:
        killed[unit_id] = killed.get(unit_id, 0) + 1
    rows = _db_rows(engine)
    for row in rows:
        assert row.status == "done"
        assert row.attempts == 1 + killed.get(row.id, 0), (row.id, row.attempts, kills)
        assert row.result is not None and len(row.result["rows"]) == 3  # 1 arch x 3 proxies
    # Each unit was recorded done once, however many times its message was delivered.
    assert _done_lines(log) == {row.id: 1 for row in rows}, log[-3000:]
    assert "SIGKILL" in log


def test_unreachable_broker_is_one_line_and_nonzero(cli_env: dict[str, str]) -> None:
    env = {
        **cli_env,
        "LPZQ_BROKER_URL": "redis://:secret@127.0.0.1:1/0",
        "LPZQ_CELERY_BROKER_WAIT_S": "1",
    }
    out = run_lpzq(
        *("proxy", "eval", "params", "--bench", "flexibert", "--split", "search"),
        *("--search-size", "5", "--batch-size", "2", "--seq-len", "16"),
        env=env,
        timeout=180,
    )
    assert out.returncode != 0
    lines = message_lines(out.stderr)  # loading flexibert on first use reports progress
    assert len(lines) == 2, out.stderr  # what it waits for, then why it gave up
    assert lines[0].startswith("lpzq: waiting for broker redis://:***@127.0.0.1:1/0")
    assert lines[1].startswith("lpzq: error: cannot reach broker redis://:***@127.0.0.1:1/0")
    assert "secret" not in out.stderr


def test_worker_rejects_bad_queues_and_missing_broker(cli_env: dict[str, str]) -> None:
    env = {**cli_env, "LPZQ_BROKER_URL": BROKER_URL}
    out = run_lpzq("worker", "--queues", "proxy,gpu", env=env, timeout=60)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        "lpzq: error: invalid --queues 'proxy,gpu'; valid: proxy, train or proxy,train "
        "(comma-separated)"
    ]
    out = run_lpzq("worker", env=cli_env, timeout=60)
    assert out.returncode == 1 and "needs a broker" in out.stderr


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(_cuda_available(), reason="a GPU is present; the no-GPU error cannot occur")
def test_device_cuda_without_gpu_is_one_line(cli_env: dict[str, str]) -> None:
    env = {**cli_env, "LPZQ_BROKER_URL": BROKER_URL}
    out = run_lpzq("worker", "--device", "cuda", env=env, timeout=60)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "no CUDA device is visible" in lines[0], out.stderr


@pytest.mark.cuda
@pytest.mark.skipif(not _cuda_available(), reason="needs a CUDA device (none visible here)")
def test_cuda_worker_scores_units(
    pg: tuple[str, Engine], prefix: str, tmp_path: Path, local_rows: dict[int, Any]
) -> None:
    url, engine = pg
    ex = _executor(url, engine, prefix)
    with running_workers(1, worker_env(url), prefix, tmp_path, "--device", "cuda") as (worker,):
        results = list(ex.run(UNITS))
        assert "device cuda" in worker.log()
    got = _rows_by_unit(results)
    assert set(got) == set(local_rows)
    for index, rows in got.items():  # the same numbers as on the CPU, up to rounding
        for g, c in zip(rows, local_rows[index], strict=True):
            assert (g["arch_id"], g["proxy"], g["status"]) == (
                c["arch_id"],
                c["proxy"],
                c["status"],
            )
            if c["score"] is not None:
                assert g["score"] == pytest.approx(c["score"], rel=1e-4)
            assert g["device"].startswith("cuda:") or c["device"] == g["device"] == "cpu"
    assert all(r.status == "done" for r in _db_rows(engine))


def test_worker_parent_never_imports_torch() -> None:
    code = (
        "import sys; import lpzero_queue.cli, lpzero_queue.execution.tasks; "
        "from lpzero_queue.config import load_settings; "
        "from lpzero_queue.execution.celery_app import make_celery; "
        f"make_celery(load_settings({{'LPZQ_BROKER_URL': {BROKER_URL!r}}})); "
        "sys.exit(1 if 'torch' in sys.modules else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=False)
    assert out.returncode == 0


def test_soft_time_limit_stores_timeout_rows(
    pg: tuple[str, Engine], prefix: str, tmp_path: Path
) -> None:
    url, engine = pg
    limits = {"LPZQ_CELERY_SOFT_TIME_LIMIT_S": "1", "LPZQ_CELERY_HARD_TIME_LIMIT_S": "30"}
    env = worker_env(url, **limits, **{TEST_SLEEP_ENV: "4"})
    with running_workers(1, env, prefix, tmp_path, "--device", "cpu"):
        ((_, rows),) = list(_executor(url, engine, prefix).run(UNITS[:1]))
    assert {(r.status, r.score, r.error) for r in rows} == {("timeout", None, "timeout after 1 s")}
    (row,) = _db_rows(engine)
    assert (row.status, row.attempts) == ("done", 1)  # a result: not retried
