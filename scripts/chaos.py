"""Chaos matrix: a small FlexiBERT search on Celery workers, disturbed in every way issue 14 names.

    python scripts/chaos.py --population 12 --children 24 --per-generation 6 --sample 20 \\
        --probe-size 5 --seed 5

Runs against the real PostgreSQL (``TEST_POSTGRES_URL``, default the local server) and a
``redis-server`` it starts itself on a free port, with two workers (one process, one torch thread
each). Every scenario gets a fresh database cloned from a template that holds the loaded
benchmark (nothing is reused between scenarios) and its own Redis key prefix. Scenarios:

* ``reference``: undisturbed; the others are compared with it.
* ``worker-kill``: a worker (parent and children) is killed with SIGKILL ``--kills`` times while
  it holds a unit, and a fresh worker started in its place (as a supervisor would).
* ``coordinator-kill``: the coordinator is killed with SIGKILL after the first generation is
  stored; ``lpzq search resume RUN`` finishes the run.
* ``broker-gp`` / ``broker-heldout``: Redis is killed (its queued messages are lost) during the GP
  generations / the held-out scoring, and restarted ``--outage`` seconds later.
* ``two-coordinators``: two ``lpzq search start`` with the same arguments at the same moment on one
  database; both must finish (two runs).

Per scenario it prints: finished, lost (evaluations or individuals of the reference missing),
duplicated (units a worker recorded done more than once), failed units, identical (individuals,
best proxy and every evaluation equal to the reference's), wall time against the reference, and
tracebacks printed by any command or worker.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.conftest import PG_ADMIN_URL  # noqa: E402
from tests.execution._celery_support import RedisServer, Worker, worker_env  # noqa: E402

SCENARIOS = (
    "reference",
    "worker-kill",
    "coordinator-kill",
    "broker-gp",
    "broker-heldout",
    "two-coordinators",
)


@dataclass
class Outcome:
    name: str
    finished: bool = False
    wall_s: float = 0.0
    lost: int = 0
    duplicated: int = 0
    failed_units: int = 0
    identical: bool | None = None
    tracebacks: int = 0
    notes: list[str] = field(default_factory=list)


# -- databases --------------------------------------------------------------------------------


def _admin() -> Engine:
    return create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")


def _url(name: str) -> str:
    return make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def _create(name: str, template: str | None = None) -> str:
    admin = _admin()
    with admin.connect() as conn:
        clause = f' TEMPLATE "{template}"' if template else ""
        conn.execute(text(f'CREATE DATABASE "{name}"{clause}'))
    admin.dispose()
    return _url(name)


def _drop(name: str) -> None:
    admin = _admin()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _query(url: str, sql: str, **params: Any) -> list[Any]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(sql), params).all())
    finally:
        engine.dispose()


def _fingerprint(url: str, run_id: int) -> tuple[list[Any], list[Any], list[Any]]:
    """Individuals, the best proxy and every evaluation of a run's database, comparable."""
    individuals = _query(
        url,
        "SELECT i.generation, i.slot, p.expression, i.fitness, i.status, i.pruning_rule "
        "FROM individuals i JOIN proxies p ON p.id = i.proxy_id WHERE i.run_id = :run "
        "ORDER BY 1, 2",
        run=run_id,
    )
    best = _query(
        url,
        "SELECT p.expression, r.best_fitness, r.status FROM search_runs r "
        "JOIN proxies p ON p.id = r.best_proxy_id WHERE r.id = :run",
        run=run_id,
    )
    evaluations = _query(
        url,
        "SELECT p.expression, a.key, e.seed, e.score, e.status FROM evaluations e "
        "JOIN proxies p ON p.id = e.proxy_id JOIN architectures a ON a.id = e.architecture_id "
        "ORDER BY 1, 2, 3",
    )
    return individuals, best, evaluations


# -- processes --------------------------------------------------------------------------------


class Cluster:
    """Workers and coordinators of one scenario: one database, one key prefix, one log folder."""

    def __init__(self, args: argparse.Namespace, redis: RedisServer, url: str, logs: Path):
        self.args, self.redis, self.url, self.logs = args, redis, url, logs
        self.prefix = f"chaos-{uuid.uuid4().hex[:8]}:"
        self.env = worker_env(
            url,
            LPZQ_BROKER_URL=redis.url(1),
            LPZQ_CELERY_LEASE_S=str(args.lease),
            LPZQ_CELERY_KEY_PREFIX=self.prefix,
            LPZQ_CACHE_DIR=str(logs / "cache"),
            LPZQ_DATA_DIR=str(logs / "data"),
        )
        self.workers: list[Worker] = []
        self.started = 0
        self.coordinators: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start_worker(self) -> Worker:
        self.started += 1
        worker = Worker(
            self.env, self.prefix, self.logs / f"worker{self.started}.log", "--concurrency", "1"
        )
        self.workers.append(worker)
        return worker

    def coordinator(self, *command: str) -> subprocess.Popen[bytes]:
        out = self.logs / f"coordinator{len(self.coordinators) + 1}.err"
        proc = subprocess.Popen(
            [sys.executable, "-m", "lpzero_queue", *command],
            env=self.env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=out.open("wb"),
            start_new_session=True,
        )
        self.coordinators.append((proc, out))
        return proc

    def search(self) -> subprocess.Popen[bytes]:
        a = self.args
        return self.coordinator(
            "search", "start", "--bench", "flexibert", "--population", str(a.population),
            "--children", str(a.children), "--per-generation", str(a.per_generation),
            "--sample", str(a.sample), "--probe-size", str(a.probe_size), "--seed", str(a.seed),
        )  # fmt: skip

    def stop(self) -> None:
        for proc, _ in self.coordinators:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        for worker in self.workers:
            worker.stop()

    def worker_logs(self) -> str:
        return "".join(w.log() for w in self.workers)

    def tracebacks(self) -> int:
        coordinators = sum(
            p.read_text(errors="replace").count("Traceback") for _, p in self.coordinators
        )
        return coordinators

    def duplicated(self) -> int:
        counts: dict[int, int] = {}
        for match in re.finditer(r"unit (\d+) attempt \d+: done", self.worker_logs()):
            counts[int(match.group(1))] = counts.get(int(match.group(1)), 0) + 1
        return sum(n - 1 for n in counts.values())

    def failed_units(self) -> int:
        return _query(self.url, "SELECT count(*) FROM work_units WHERE status = 'failed'")[0][0]

    def runs(self) -> list[tuple[int, str, Any]]:
        return _query(self.url, "SELECT id, status, best_proxy_id FROM search_runs ORDER BY id")

    def individuals(self) -> int:
        return _query(self.url, "SELECT count(*) FROM individuals")[0][0]

    def running_on(self, node_pid: int) -> bool:
        rows = _query(
            self.url,
            "SELECT count(*) FROM work_units WHERE status = 'running' AND worker LIKE :node",
            node=f"proxy-{node_pid:d}@%",
        )
        return bool(rows[0][0])


def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.2)


def _finish(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    try:
        return proc.wait(timeout=timeout) == 0
    except subprocess.TimeoutExpired:
        return False


# -- scenarios --------------------------------------------------------------------------------


def _undisturbed(c: Cluster) -> bool:
    return _finish(c.search(), c.args.timeout)


def _worker_kill(c: Cluster) -> bool:
    proc = c.search()
    for _ in range(c.args.kills):
        victim = None

        def holds_a_unit() -> bool:
            nonlocal victim
            victim = next(
                (w for w in c.workers if w.proc.poll() is None and c.running_on(w.proc.pid)), None
            )
            return victim is not None or proc.poll() is not None

        _wait_for(holds_a_unit, c.args.timeout, "no worker ever held a unit")
        if victim is None:
            break
        os.killpg(victim.proc.pid, signal.SIGKILL)
        victim.proc.wait(timeout=10)
        c.start_worker()  # the supervisor's replacement
        time.sleep(c.args.kill_gap)
    return _finish(proc, c.args.timeout)


def _coordinator_kill(c: Cluster) -> bool:
    proc = c.search()
    population = c.args.population
    _wait_for(lambda: c.individuals() > population + 2, c.args.timeout, "no generation 1")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    run_id = c.runs()[0][0]
    return _finish(c.coordinator("search", "resume", str(run_id)), c.args.timeout)


def _broker(phase: str) -> Callable[[Cluster], bool]:
    def scenario(c: Cluster) -> bool:
        proc = c.search()
        if phase == "gp":
            condition = lambda: c.individuals() > c.args.population + 2  # noqa: E731
        else:  # held-out scoring: the best is stored, the run not yet completed
            condition = lambda: bool(c.runs()) and c.runs()[0][2] is not None  # noqa: E731
        _wait_for(condition, c.args.timeout, f"never reached the {phase} phase")
        time.sleep(1.0)
        c.redis.kill()
        time.sleep(c.args.outage)
        c.redis.start()
        return _finish(proc, c.args.timeout)

    return scenario


def _two_coordinators(c: Cluster) -> bool:
    first, second = c.search(), c.search()
    return _finish(first, c.args.timeout) & _finish(second, c.args.timeout)


RUNNERS: dict[str, Callable[[Cluster], bool]] = {
    "reference": _undisturbed,
    "worker-kill": _worker_kill,
    "coordinator-kill": _coordinator_kill,
    "broker-gp": _broker("gp"),
    "broker-heldout": _broker("heldout"),
    "two-coordinators": _two_coordinators,
}


def run_scenario(
    name: str, args: argparse.Namespace, redis: RedisServer, template: str, root: Path
) -> tuple[Outcome, str, list[int]]:
    db = f"lpzq_chaos_{uuid.uuid4().hex[:10]}"
    url = _create(db, template)
    logs = root / name
    logs.mkdir(parents=True)
    cluster = Cluster(args, redis, url, logs)
    outcome = Outcome(name)
    try:
        for _ in range(args.workers):
            cluster.start_worker()
        for worker in cluster.workers:
            worker.wait_ready()
        started = time.monotonic()
        ok = RUNNERS[name](cluster)
        outcome.wall_s = time.monotonic() - started
        runs = cluster.runs()
        outcome.finished = ok and bool(runs) and all(status == "completed" for _, status, _ in runs)
        outcome.duplicated = cluster.duplicated()
        outcome.failed_units = cluster.failed_units()
        outcome.tracebacks = cluster.tracebacks()
        if not outcome.finished:
            errs = [
                p.read_text(errors="replace").strip().splitlines()[-1:]
                for _, p in cluster.coordinators
            ]
            outcome.notes.append(f"runs {runs}; last lines {errs}")
        return outcome, url, [r[0] for r in runs]
    finally:
        cluster.stop()


def compare(outcome: Outcome, url: str, run_ids: list[int], reference: Any) -> None:
    """Fill lost and identical from the scenario's database against the reference's."""
    ref_individuals, ref_best, ref_evals = reference
    identical = True
    lost = 0
    for run_id in run_ids:
        individuals, best, evaluations = _fingerprint(url, run_id)
        lost += len(set(ref_individuals) - set(individuals))
        identical &= individuals == ref_individuals and best == ref_best
    _, _, evaluations = _fingerprint(url, run_ids[0]) if run_ids else ([], [], [])
    lost += len(set(ref_evals) - set(evaluations))
    identical &= evaluations == ref_evals
    outcome.lost, outcome.identical = lost, identical and bool(run_ids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--population", type=int, default=12)
    parser.add_argument("--children", type=int, default=24)
    parser.add_argument("--per-generation", type=int, default=6)
    parser.add_argument("--sample", type=int, default=20)
    parser.add_argument("--probe-size", type=int, default=5)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--kills", type=int, default=3, help="worker kills in worker-kill")
    parser.add_argument("--kill-gap", type=float, default=3.0, help="seconds between kills")
    parser.add_argument("--outage", type=float, default=10.0, help="seconds Redis stays down")
    parser.add_argument("--lease", type=float, default=6.0, help="celery_lease_s of the cluster")
    parser.add_argument("--timeout", type=float, default=900.0, help="per command")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    args = parser.parse_args()
    chosen = [s.strip() for s in args.scenarios.split(",")]
    unknown = set(chosen) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios {sorted(unknown)}; valid: {', '.join(SCENARIOS)}")
    if chosen[0] != "reference":
        chosen.insert(0, "reference")
    template = f"lpzq_chaos_tmpl_{uuid.uuid4().hex[:8]}"
    root = Path(tempfile.mkdtemp(prefix="lpzq-chaos-"))
    print(f"logs in {root}", flush=True)
    outcomes: list[Outcome] = []
    with RedisServer() as redis:
        url = _create(template)
        try:
            env = {**worker_env(url), "LPZQ_DATA_DIR": str(root / "data")}
            subprocess.run(
                [sys.executable, "-m", "lpzero_queue", "bench", "load", "flexibert"],
                env=env, cwd=REPO, check=True, capture_output=True,
            )  # fmt: skip
            reference: Any = None
            ref_wall = 0.0
            for name in chosen:
                outcome, scen_url, run_ids = run_scenario(name, args, redis, template, root)
                try:
                    if name == "reference":
                        reference = _fingerprint(scen_url, run_ids[0]) if run_ids else None
                        ref_wall = outcome.wall_s
                    if reference is not None:
                        compare(outcome, scen_url, run_ids, reference)
                finally:
                    _drop(make_url(scen_url).database or "")
                outcomes.append(outcome)
                _print_row(outcome, ref_wall, args)
        finally:
            _drop(template)
    _print_table(outcomes, ref_wall, args)


def _print_row(o: Outcome, ref_wall: float, args: argparse.Namespace) -> None:
    ratio = o.wall_s / ref_wall if ref_wall else float("nan")
    print(
        f"{o.name}: finished={o.finished} wall={o.wall_s:.0f}s ratio={ratio:.2f} {o.notes}",
        flush=True,
    )


def _print_table(outcomes: list[Outcome], ref_wall: float, args: argparse.Namespace) -> None:
    print()
    head = ("scenario", "finished", "lost", "duplicated", "failed units", "identical",
            "wall s", "x reference", "tracebacks")  # fmt: skip
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for o in outcomes:
        ratio = o.wall_s / ref_wall if ref_wall else float("nan")
        cells = (o.name, "yes" if o.finished else "NO", o.lost, o.duplicated, o.failed_units,
                 {True: "yes", False: "NO", None: "-"}[o.identical], f"{o.wall_s:.0f}",
                 f"{ratio:.2f}", o.tracebacks)  # fmt: skip
        print("| " + " | ".join(str(c) for c in cells) + " |")
    print(f"\n(outage {args.outage:.0f} s; {args.kills} worker kills; lease {args.lease:g} s)")


if __name__ == "__main__":
    main()
