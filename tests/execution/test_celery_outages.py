"""Broker outages and dead workers, with real worker processes and a private Redis.

Each test starts its own ``redis-server`` on a free port, so it can kill and restart it without
touching the machine's shared Redis.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import Engine, select
from sqlalchemy.orm import sessionmaker

from lpzero_queue.config import load_settings
from lpzero_queue.execution.celery_app import CeleryOptions
from lpzero_queue.execution.celery_executor import CeleryExecutor, unit_key
from lpzero_queue.execution.tasks import TEST_SLEEP_ENV
from lpzero_queue.proxies.scoring import WorkUnit
from lpzero_queue.storage import WorkUnitRow
from tests.execution._celery_support import (
    Background,
    RedisServer,
    migrated_postgres,
    new_key_prefix,
    running_workers,
    tiny_units,
    worker_env,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


@pytest.fixture
def pg(pg_available: bool) -> Iterator[tuple[str, Engine]]:
    with migrated_postgres() as database:
        yield database


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer() as srv:
        yield srv


def _executor(url: str, engine: Engine, broker: str, prefix: str, **kw: Any) -> CeleryExecutor:
    settings = load_settings({"LPZQ_DATABASE_URL": url, "LPZQ_BROKER_URL": broker})
    # A long pickup timeout: only the fixes under test can finish these runs in time.
    options: dict[str, Any] = dict(lease_s=3.0, poll_s=0.2, pickup_timeout_s=600.0)
    options.update(kw)
    return CeleryExecutor(
        settings, sessionmaker(engine), options=CeleryOptions(key_prefix=prefix), **options
    )


def _rows(engine: Engine) -> list[WorkUnitRow]:
    with sessionmaker(engine)() as s:
        return list(s.scalars(select(WorkUnitRow).order_by(WorkUnitRow.id)))


def _wait(condition: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_broker_outages_are_waited_out_and_lost_messages_sent_again(
    pg: tuple[str, Engine], server: RedisServer, tmp_path: Path
) -> None:
    url, engine = pg
    prefix, broker = new_key_prefix(), server.url(5)
    said: list[str] = []
    ex = _executor(url, engine, broker, prefix, broker_down_s=60.0, say=said.append)
    units = tiny_units(4)
    env = worker_env(url, LPZQ_BROKER_URL=broker, **{TEST_SLEEP_ENV: "1"})
    with running_workers(1, env, prefix, tmp_path, "--device", "cpu") as (worker,):
        # 1. The broker is down when the run starts: the coordinator waits and says so.
        server.kill()
        run = Background(ex, units)
        run.start()
        _wait(lambda: any("waiting for broker" in m for m in said), "no waiting line")
        time.sleep(1.0)  # several polls: still said once
        server.start()
        # 2. Killed again mid-run: queued and unacknowledged messages are lost with it.
        _wait(lambda: any(r.status == "done" for r in _rows(engine)), worker.log()[-2000:])
        server.kill()
        time.sleep(1.5)
        server.start()
        run.join(timeout=90)
        log = worker.log()
    assert not run.is_alive() and run.error is None, (run.error, said, log[-3000:])
    assert sorted(unit_key(u) for u, _ in run.results) == sorted(unit_key(u) for u in units)
    assert all(r.status == "done" for r in _rows(engine))
    waiting = [m for m in said if m.startswith("waiting for broker")]
    assert len(waiting) == 2, said  # once per outage, not once per poll
    assert "redis://127.0.0.1" in waiting[0] and "celery_broker_wait_s" in waiting[0]
    assert any(m.startswith("re-sending") for m in said), said


def test_a_broker_down_past_the_limit_is_one_line(
    pg: tuple[str, Engine], server: RedisServer
) -> None:
    from lpzero_queue.errors import LpzqError

    url, engine = pg
    server.kill()
    said: list[str] = []
    ex = _executor(url, engine, server.url(5), new_key_prefix(), broker_down_s=1.0, say=said.append)
    with pytest.raises(LpzqError, match=r"cannot reach broker redis://127\.0\.0\.1:\d+/5 for \d s"):
        list(ex.run(tiny_units(1)))
    assert len(said) == 1 and said[0].startswith("waiting for broker")


def test_affinity_never_waits_for_a_dead_worker(
    pg: tuple[str, Engine], server: RedisServer, tmp_path: Path
) -> None:
    url, engine = pg
    prefix, broker = new_key_prefix(), server.url(5)
    ex = _executor(url, engine, broker, prefix)
    env = worker_env(url, LPZQ_BROKER_URL=broker)
    first = tiny_units(6)
    # Same architectures, seed and setup (same shards), other proxies: routed by affinity.
    second = [
        WorkUnit(u.setup, u.seed, u.archs, ("mean(grad)",), ()) for u in first
    ]  # fmt: skip
    with running_workers(2, env, prefix, tmp_path, "--device", "cpu") as workers:
        done = list(ex.run(first))
        assert len(done) == 6
        nodes = set(ex.affine.values())
        assert len(nodes) == 2, nodes  # both workers took shards
        victim = next(w for w in workers if any(str(w.proc.pid) in n for n in nodes))
        dead = next(n for n in nodes if str(victim.proc.pid) in n)
        os.killpg(victim.proc.pid, signal.SIGKILL)
        victim.proc.wait(timeout=10)
        started = time.monotonic()
        results = list(ex.run(second))
        took = time.monotonic() - started
    assert len(results) == 6
    assert ex.rerouted >= 1 and dead in ex.suspects
    assert took < 60, took  # not the 600 s pickup timeout
    # Nothing is left stranded in the dead worker's own queue.
    client = redis.Redis.from_url(broker)
    try:
        assert client.llen(f"{prefix}{dead}.dq2") == 0
    finally:
        client.close()
