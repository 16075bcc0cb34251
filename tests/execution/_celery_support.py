"""Real worker subprocesses, tiny units and broker isolation for the Celery tests.

Every test run uses its own Redis key prefix on a dedicated database number, so it never sees or
flushes anyone else's keys; workers are always stopped (whole process group) in ``finally``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import Engine

from lpzero_queue.execution.celery_executor import CeleryExecutor
from lpzero_queue.proxies.scoring import ArchRef, ScoreRow, ScoringSetup, WorkUnit
from lpzero_queue.storage import make_engine, upgrade
from tests.conftest import REDIS_URL, REPO_ROOT, drop_postgres_database, new_postgres_database

# A dedicated Redis database number for these tests (the rest of the suite uses /0).
BROKER_URL = REDIS_URL.rsplit("/", 1)[0] + "/5"
EXPRESSIONS = ("sum(mean(grad), l1_norm(act))", "product(frobenius_norm(weight), mean(grad))")
BASELINES = ("params",)


def new_key_prefix() -> str:
    """A Redis key prefix unique to one test."""
    return f"lpzqtest-{uuid.uuid4().hex[:10]}:"


def delete_prefixed_keys(prefix: str, url: str = BROKER_URL) -> None:
    """Delete only this test's keys."""
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=500))
        if keys:
            client.delete(*keys)
    except redis.ConnectionError:
        pass
    finally:
        client.close()


@contextlib.contextmanager
def migrated_postgres() -> Iterator[tuple[str, Engine]]:
    """A fresh PostgreSQL database at the head revision: its URL and engine; always dropped."""
    url = new_postgres_database()
    engine = make_engine(url)
    try:
        upgrade(engine)
        yield url, engine
    finally:
        engine.dispose()
        drop_postgres_database(url)


def tiny_units(n_units: int, archs_per_unit: int = 1, *, seed: int = 0) -> list[WorkUnit]:
    """FlexiBERT units on the smallest batch (2 x 16); architecture ids need no database rows."""
    from lpzero_queue.benchmarks.records import load_shipped

    records = load_shipped("flexibert").records
    setup = ScoringSetup.resolve("flexibert", batch_size=2, seq_len=16)
    units = []
    for u in range(n_units):
        chosen = records[u * archs_per_unit : (u + 1) * archs_per_unit]
        archs = tuple(
            ArchRef(u * archs_per_unit + i + 1, r.key, dict(r.config)) for i, r in enumerate(chosen)
        )
        units.append(WorkUnit(setup, seed, archs, EXPRESSIONS, BASELINES))
    return units


def comparable(rows: list[ScoreRow]) -> list[dict[str, Any]]:
    """Rows without their timings, in a stable order."""
    out = [{k: v for k, v in asdict(r).items() if k != "seconds"} for r in rows]
    return sorted(out, key=lambda r: (r["arch_id"], r["proxy"]))


def worker_env(database_url: str, **extra: str) -> dict[str, str]:
    """The environment of a worker subprocess: its database, the test broker, one torch thread."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LPZQ_")}
    env.update(
        LPZQ_DATABASE_URL=database_url,
        LPZQ_BROKER_URL=BROKER_URL,
        LPZQ_TORCH_THREADS="1",
        LPZQ_INPUT_CACHE_GB="0.5",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


class Worker:
    """``python -m lpzero_queue worker`` in its own process group, logging to a file."""

    def __init__(self, env: dict[str, str], prefix: str, log_path: Path, *args: str) -> None:
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lpzero_queue", "worker", "--key-prefix", prefix, *args],
            env=env,
            cwd=REPO_ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if " ready." in self.log():
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited {self.proc.returncode}:\n{self.log()}")
            time.sleep(0.2)
        raise AssertionError(f"worker not ready after {timeout} s:\n{self.log()}")

    def children(self) -> list[int]:
        out = subprocess.run(
            ["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True, check=False
        )
        return [int(p) for p in out.stdout.split()]

    def stop(self) -> None:
        """SIGTERM the whole group, then SIGKILL whatever is left."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        self._log.close()


@contextlib.contextmanager
def running_workers(
    n: int, env: dict[str, str], prefix: str, log_dir: Path, *args: str
) -> Iterator[list[Worker]]:
    """Start ``n`` workers (concurrency 1 each), wait until ready, always stop them."""
    workers: list[Worker] = []
    try:
        for i in range(n):
            workers.append(
                Worker(env, prefix, log_dir / f"worker{i}.log", "--concurrency", "1", *args)
            )
        for w in workers:
            w.wait_ready()
        yield workers
    finally:
        for w in workers:
            w.stop()


def redis_running(port: int = 6379) -> bool:
    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1)
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False
    finally:
        client.close()


def start_redis(port: int = 6379, timeout: float = 20) -> None:
    """Start this machine's Redis again (no persistence) and wait for it."""
    subprocess.run(
        [
            "redis-server",
            "--daemonize",
            "yes",
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        check=False,
        capture_output=True,
    )
    deadline = time.monotonic() + timeout
    while not redis_running(port):
        if time.monotonic() > deadline:
            raise AssertionError("redis did not come back")
        time.sleep(0.1)


def free_port() -> int:
    """A TCP port nothing listens on now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A private ``redis-server`` on a free port (no persistence) that a test may kill and restart.

    The shared Redis of the machine is never touched: other test runs use it.
    """

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self, timeout: float = 20) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while not redis_running(self.port):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"redis-server on port {self.port} did not start")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: queued and unacknowledged messages are lost with the data."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


class Background(threading.Thread):
    """Drains ``executor.run(units)`` in a thread so the test can break things meanwhile."""

    def __init__(self, executor: CeleryExecutor, units: list[WorkUnit]) -> None:
        super().__init__(daemon=True)
        self.executor, self.units = executor, units
        self.results: list[tuple[WorkUnit, list[ScoreRow]]] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.results.extend(self.executor.run(self.units))
        except BaseException as exc:
            self.error = exc
