"""Throughput of Celery workers (one versus two processes, one torch thread each) and the per-task
overhead of distributed execution, on the real Redis and PostgreSQL.

    python scripts/bench_workers.py --units 8 --archs-per-unit 2

Each configuration gets a fresh PostgreSQL database (so nothing is reused from the database) and
its own Redis key prefix; workers are warmed up (torch import, tokeniser) before timing, and
always stopped. The overhead is the end-to-end time of a trivial unit (one architecture, the
``params`` baseline only) minus the compute time the worker measured for it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import sessionmaker

from lpzero_queue.benchmarks.records import load_shipped
from lpzero_queue.config import load_settings
from lpzero_queue.execution.celery_app import CeleryOptions
from lpzero_queue.execution.celery_executor import CeleryExecutor
from lpzero_queue.proxies.scoring import ArchRef, ScoringSetup, WorkUnit
from lpzero_queue.storage import make_engine, upgrade

REPO = Path(__file__).resolve().parent.parent
EXPRESSIONS = ("sum(mean(grad), l1_norm(act))", "product(frobenius_norm(weight), mean(grad))")


def make_units(n: int, per_unit: int, seed: int, batch: tuple[int, int]) -> list[WorkUnit]:
    records = load_shipped("flexibert").records
    setup = ScoringSetup.resolve("flexibert", batch_size=batch[0], seq_len=batch[1])
    units = []
    for u in range(n):
        chosen = records[u * per_unit : (u + 1) * per_unit]
        archs = tuple(
            ArchRef(u * per_unit + i + 1, r.key, dict(r.config)) for i, r in enumerate(chosen)
        )
        units.append(WorkUnit(setup, seed, archs, EXPRESSIONS, ("params",)))
    return units


@contextlib.contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    name = f"lpzq_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextlib.contextmanager
def workers(n: int, db_url: str, broker: str, prefix: str, log_dir: Path) -> Iterator[None]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LPZQ_")}
    env.update(LPZQ_DATABASE_URL=db_url, LPZQ_BROKER_URL=broker, LPZQ_TORCH_THREADS="1")
    procs, logs = [], []
    try:
        for i in range(n):
            log = (log_dir / f"w{n}-{i}.log").open("wb")
            logs.append(log)
            args = ["worker", "--concurrency", "1", "--device", "cpu", "--key-prefix", prefix]
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "lpzero_queue", *args],
                    env=env,
                    cwd=REPO,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        deadline = time.monotonic() + 60
        for i in range(n):
            while " ready." not in (log_dir / f"w{n}-{i}.log").read_text(errors="replace"):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"worker {i} did not start")
                time.sleep(0.2)
        yield
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=15)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
        for log in logs:
            log.close()


def measure(n_workers: int, args: argparse.Namespace, log_dir: Path) -> dict[str, float]:
    prefix = f"lpzqbench-{uuid.uuid4().hex[:8]}:"
    with fresh_database(args.admin_url) as url:
        engine = make_engine(url)
        upgrade(engine)
        settings = load_settings({"LPZQ_DATABASE_URL": url, "LPZQ_BROKER_URL": args.broker})
        executor = CeleryExecutor(
            settings,
            sessionmaker(engine),
            options=CeleryOptions(key_prefix=prefix),
            poll_s=0.05,
            affinity=False,
        )
        batch = (args.batch_size, args.seq_len)
        try:
            with workers(n_workers, url, args.broker, prefix, log_dir):
                # Warm every child: torch, tokeniser and builders (distinct seed, not timed).
                list(executor.run(make_units(2 * n_workers, 1, seed=1000, batch=batch)))
                units = make_units(args.units, args.archs_per_unit, seed=0, batch=batch)
                started = time.perf_counter()
                list(executor.run(units))
                wall = time.perf_counter() - started
                # Per-task overhead: trivial units one at a time, end to end versus compute.
                e2e, compute = [], []
                for rep in range(args.trivial):
                    setup = ScoringSetup.resolve("flexibert", batch_size=2, seq_len=16)
                    arch = make_units(1, 1, seed=0, batch=(2, 16))[0].archs[0]
                    trivial = WorkUnit(setup, 2000 + rep, (arch,), (), ("params",))
                    t0 = time.perf_counter()
                    list(executor.run([trivial]))
                    e2e.append(time.perf_counter() - t0)
                with engine.connect() as conn:
                    for (result,) in conn.execute(
                        text("SELECT result FROM work_units WHERE payload::text NOT LIKE :e"),
                        {"e": "%grad%"},
                    ):
                        compute.append(result["seconds"])
        finally:
            engine.dispose()
            client = redis.Redis.from_url(args.broker)
            keys = list(client.scan_iter(match=f"{prefix}*"))
            if keys:
                client.delete(*keys)
    n_archs = args.units * args.archs_per_unit
    return {
        "workers": n_workers,
        "wall": wall,
        "units_s": args.units / wall,
        "archs_s": n_archs / wall,
        "e2e_ms": 1000 * sum(e2e) / len(e2e),
        "compute_ms": 1000 * sum(compute) / max(1, len(compute)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=8)
    parser.add_argument("--archs-per-unit", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--seq-len", type=int, default=16)
    parser.add_argument("--trivial", type=int, default=5, help="trivial units for the overhead")
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/5")
    parser.add_argument("--admin-url", default="postgresql+psycopg2://root@127.0.0.1:5432/test")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = [measure(n, args, Path(tmp)) for n in (1, 2)]
    base = results[0]["archs_s"]
    print(
        f"{args.units} units x {args.archs_per_unit} FlexiBERT archs, "
        f"{len(EXPRESSIONS)} expressions + params, batch {args.batch_size}x{args.seq_len}, "
        f"one torch thread per worker, {os.cpu_count()} CPUs"
    )
    print(
        f"{'workers':>7}  {'wall s':>7}  {'units/s':>7}  {'archs/s':>7}  {'speedup':>7}  "
        f"{'trivial e2e ms':>14}  {'compute ms':>10}  {'overhead ms':>11}"
    )
    for r in results:
        print(
            f"{r['workers']:>7}  {r['wall']:>7.2f}  {r['units_s']:>7.2f}  {r['archs_s']:>7.2f}  "
            f"{r['archs_s'] / base:>7.2f}  {r['e2e_ms']:>14.1f}  {r['compute_ms']:>10.1f}  "
            f"{r['e2e_ms'] - r['compute_ms']:>11.1f}"
        )


if __name__ == "__main__":
    main()
