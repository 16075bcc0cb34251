"""Training jobs on the ``train`` queue: submit, lease, heartbeat, checkpoint, record once.

A job is one ``training_jobs`` row keyed by the sha256 of ``(spec, hyperparameters, seed)``
(``INSERT ... ON CONFLICT DO NOTHING``: the same request is one row). It follows the proxy units'
exactly-once pattern (:mod:`lpzero_queue.execution.tasks`), with PostgreSQL as the record:

* a worker *leases* the row with one conditional UPDATE (pending, or running with an expired
  lease, and ``attempts`` below the cap the coordinator sent with the message);
* a heartbeat thread renews the lease and writes the step of the last checkpoint; when the
  lease is lost, training stops at the next step;
* the checkpoint (``<data_dir>/checkpoints/<job_key>.pt``) is written every
  ``checkpoint_every`` steps; a job redelivered after its worker died resumes from it;
* the outcome (``completed`` with metrics, ``timeout``, ``failed`` with the error) is written in
  one transaction only while the lease is still held (``worker`` and ``attempts`` fence it).

:class:`TrainRunner` submits jobs and waits for them: in-process on the embedded default (no
broker), or by sending ``lpzq.train_job`` to Celery workers of the ``train`` queue and polling
the rows, re-sending jobs whose lease expired until the attempt cap, then marking them failed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import Engine, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from lpzero_queue.execution.tasks import TRANSIENT_DB_ERRORS, db_now, with_db_retries
from lpzero_queue.storage import TrainingJob, make_engine

if TYPE_CHECKING:
    from celery import Celery

    from lpzero_queue.config import Settings

log = logging.getLogger(__name__)

TASK_TRAIN_JOB: Final = "lpzq.train_job"  # routed to the train queue by its prefix
DEFAULT_TRAIN_LEASE_S: Final = 90.0
MAX_ATTEMPTS: Final = 3  # leases per request; a job that always kills its worker stops here
TERMINAL: Final = ("completed", "failed", "timeout", "cancelled")
# Test hook (not an LPZQ_ setting): sleep this long after every training step, so crash tests
# can kill a worker in the middle of a job.
TEST_STEP_SLEEP_ENV: Final = "LPZERO_QUEUE_TEST_TRAIN_STEP_SLEEP"

_engines: dict[str, Engine] = {}


@dataclass(frozen=True)
class JobRequest:
    """One training job to run: what, how and with which seed."""

    spec: dict[str, Any]
    hyperparameters: dict[str, Any]
    seed: int

    @property
    def key(self) -> str:
        """sha256 of the canonical JSON of ``(spec, hyperparameters, seed)``."""
        text = json.dumps(
            {"spec": self.spec, "hyperparameters": self.hyperparameters, "seed": self.seed},
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class JobResult:
    """A finished job as recorded."""

    id: int
    status: str
    metrics: dict[str, Any]
    error: str | None
    attempts: int
    worker: str | None


def _engine(url: str) -> Engine:
    if url not in _engines:
        _engines[url] = make_engine(url)
    return _engines[url]


def checkpoint_path(data_dir: Path, job_key: str) -> Path:
    """Where a job's checkpoint lives on a machine with this data directory."""
    return data_dir / "checkpoints" / f"{job_key}.pt"


# -- worker side -------------------------------------------------------------------------------


def lease_job(
    engine: Engine, job_id: int, worker: str, lease_s: float, job_key: str, max_attempts: int
) -> int | None:
    """Take a job's lease with one conditional UPDATE; the new attempt number, or None."""
    t = TrainingJob
    with engine.begin() as conn:
        now = db_now(conn)
        leased = conn.execute(
            update(t)
            .where(
                t.id == job_id,
                t.job_key == job_key,
                or_(t.status == "pending", (t.status == "running") & (t.lease_expires_at < now)),
                t.attempts < max_attempts,
            )
            .values(
                status="running",
                attempts=t.attempts + 1,
                worker=worker,
                lease_expires_at=now + dt.timedelta(seconds=lease_s),
                heartbeat_at=now,
                error=None,
            )
        )
        if leased.rowcount != 1:
            return None
        attempts: int = conn.scalar(select(t.attempts).where(t.id == job_id))  # type: ignore[assignment]
        return attempts


class _Heartbeat(threading.Thread):
    """Renews the lease every ``lease_s / 3`` s and records the last checkpointed step."""

    def __init__(self, engine: Engine, job_id: int, worker: str, attempt: int, lease_s: float):
        super().__init__(name=f"lpzq-train-heartbeat-{job_id}", daemon=True)
        self.engine, self.job_id, self.worker, self.attempt = engine, job_id, worker, attempt
        self.lease_s = lease_s
        self.step: int | None = None
        self.checkpoint: str | None = None
        self.stopped = threading.Event()
        self.lost = threading.Event()

    def beat(self) -> None:
        """One renewal (also called right after each checkpoint)."""
        t = TrainingJob
        values: dict[str, Any] = {}
        if self.step is not None:
            values.update(step=self.step, checkpoint_path=self.checkpoint)
        with self.engine.begin() as conn:
            now = db_now(conn)
            renewed = conn.execute(
                update(t)
                .where(
                    t.id == self.job_id,
                    t.status == "running",
                    t.worker == self.worker,
                    t.attempts == self.attempt,
                )
                .values(
                    lease_expires_at=now + dt.timedelta(seconds=self.lease_s),
                    heartbeat_at=now,
                    **values,
                )
            )
        if renewed.rowcount != 1:
            log.warning("training job %d: lease lost (attempt %d)", self.job_id, self.attempt)
            self.lost.set()

    def run(self) -> None:
        while not self.stopped.wait(self.lease_s / 3) and not self.lost.is_set():
            try:
                self.beat()
            except TRANSIENT_DB_ERRORS:
                log.warning("training job %d: heartbeat failed; will retry", self.job_id)

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=10)


def _finish(engine: Engine, job_id: int, worker: str, attempt: int, values: dict[str, Any]) -> str:
    t = TrainingJob

    def write() -> str:
        with engine.begin() as conn:
            written = conn.execute(
                update(t)
                .where(
                    t.id == job_id,
                    t.status == "running",
                    t.worker == worker,
                    t.attempts == attempt,
                )
                .values(lease_expires_at=None, heartbeat_at=db_now(conn), **values)
            )
        return str(values["status"]) if written.rowcount == 1 else "superseded"

    return with_db_retries(write)


def execute_job(
    job_id: int,
    database_url: str,
    *,
    worker: str,
    job_key: str,
    data_dir: Path,
    device: str = "cpu",
    lease_s: float = DEFAULT_TRAIN_LEASE_S,
    max_attempts: int = MAX_ATTEMPTS,
) -> str:
    """Lease, train (resuming from a checkpoint) and record one job; returns what happened.

    Returns:
        ``completed``, ``timeout`` or ``failed`` (this call recorded it), ``superseded`` (the
        lease was taken over), or without training: ``busy`` (someone holds a live lease),
        ``missing``, ``exhausted`` (no attempts left) or the row's terminal status.
    """
    from celery.exceptions import SoftTimeLimitExceeded

    from lpzero_queue.training.loop import Hyperparameters, TrainingTimeoutError, train

    engine = _engine(database_url)
    attempt = lease_job(engine, job_id, worker, lease_s, job_key, max_attempts)
    if attempt is None:
        with engine.connect() as conn:
            row = conn.execute(
                select(TrainingJob.status, TrainingJob.attempts).where(
                    TrainingJob.id == job_id, TrainingJob.job_key == job_key
                )
            ).one_or_none()
        if row is None:
            return "missing"
        if row.status in TERMINAL:
            return str(row.status)
        return "exhausted" if row.attempts >= max_attempts else "busy"
    with engine.connect() as conn:
        job = conn.execute(
            select(TrainingJob.spec, TrainingJob.hyperparameters, TrainingJob.seed).where(
                TrainingJob.id == job_id
            )
        ).one()
        spec, raw_hp, seed = dict(job.spec), dict(job.hyperparameters), int(job.seed)
    ckpt = checkpoint_path(data_dir, job_key)
    heartbeat = _Heartbeat(engine, job_id, worker, attempt, lease_s)
    heartbeat.start()
    sleep_s = float(os.environ.get(TEST_STEP_SLEEP_ENV) or 0)

    def progress(step: int, _loss: float) -> None:
        heartbeat.step, heartbeat.checkpoint = step, str(ckpt)
        with_db_retries(heartbeat.beat)

    def should_stop() -> bool:
        if sleep_s:
            time.sleep(sleep_s)
        return heartbeat.lost.is_set()

    started = time.perf_counter()
    values: dict[str, Any]
    try:
        metrics = train(
            spec,
            Hyperparameters.from_dict(raw_hp),
            seed,
            device=device,
            checkpoint=ckpt,
            progress=progress,
            should_stop=should_stop,
        )
        metrics.update(worker=worker, attempt=attempt)
        values = {
            "status": "completed",
            "metrics": metrics,
            "error": None,
            "step": metrics["steps"],
            "checkpoint_path": None,
        }
    except (TrainingTimeoutError, SoftTimeLimitExceeded) as exc:
        step = getattr(exc, "step", heartbeat.step or 0)
        reason = str(exc) or f"timeout after {time.perf_counter() - started:.0f} s"
        values = {"status": "timeout", "error": reason, "step": step}
    except Exception as exc:  # a deterministic failure is a result: store it, do not retry
        values = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
    finally:
        heartbeat.stop()
    outcome = _finish(engine, job_id, worker, attempt, values)
    if outcome == "completed":
        ckpt.unlink(missing_ok=True)  # the result is recorded; the checkpoint is not needed
    log.info("training job %d attempt %d: %s", job_id, attempt, outcome)
    return outcome


def _worker_setup() -> tuple[Settings, str]:
    from lpzero_queue.config import load_settings
    from lpzero_queue.execution import tasks

    settings = tasks._state.get("settings") or load_settings()
    return settings, str(tasks._state.get("device") or "cpu")


def register_train_tasks(app: Celery) -> None:
    """Register ``lpzq.train_job`` on ``app`` (routed to the ``train`` queue)."""

    @app.task(
        name=TASK_TRAIN_JOB,
        bind=True,
        autoretry_for=TRANSIENT_DB_ERRORS,
        retry_backoff=2,
        retry_backoff_max=60,
        retry_jitter=True,
        max_retries=8,
        ignore_result=True,
    )
    def train_job_task(
        self: Any,
        job_id: int,
        database_url: str,
        job_key: str,
        max_attempts: int = MAX_ATTEMPTS,
        lease_s: float = DEFAULT_TRAIN_LEASE_S,
    ) -> str:
        """Train job ``job_id``; a worker's own ``LPZQ_DATABASE_URL`` wins over the message's."""
        settings, device = _worker_setup()
        return execute_job(
            job_id,
            settings.database_url or database_url,
            worker=self.request.hostname or f"pid-{os.getpid()}",
            job_key=job_key,
            data_dir=settings.data_dir,
            device=device,
            lease_s=lease_s,
            max_attempts=max_attempts,
        )


# -- coordinator side --------------------------------------------------------------------------


class TrainRunner:
    """Submits training jobs and waits until each is finished.

    Args:
        settings: Without ``broker_url`` jobs run in this process (device from the ``device``
            setting); with it they go to Celery workers of the ``train`` queue.
        engine: The coordinator's engine on the same database.
        say: Where one-line progress reports go.
        lease_s: Lease length; the heartbeat renews it every third of it.
        poll_s: Seconds between polls of the rows (Celery mode).
        pickup_timeout_s: Re-send a pending job nobody picked up within this long.
        key_prefix: Redis key prefix (must match the workers').
    """

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        *,
        say: Callable[[str], None] = print,
        lease_s: float = DEFAULT_TRAIN_LEASE_S,
        poll_s: float = 1.0,
        pickup_timeout_s: float = 300.0,
        key_prefix: str | None = None,
    ) -> None:
        self.settings, self.engine, self.say = settings, engine, say
        self.lease_s, self.poll_s, self.pickup_timeout_s = lease_s, poll_s, pickup_timeout_s
        self.key_prefix = key_prefix
        self.caps: dict[int, int] = {}  # job id -> attempt cap of this request

    def submit(self, requests: Sequence[JobRequest], *, retry_failed: bool = False) -> list[int]:
        """Insert one row per distinct request (existing rows are kept); ids in request order.

        Args:
            requests: The jobs.
            retry_failed: Reopen ``failed``/``timeout`` rows (their checkpoint is reused).
        """
        t = TrainingJob
        insert = postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert
        keys = [r.key for r in requests]
        rows = [
            {"job_key": key, "spec": r.spec, "hyperparameters": r.hyperparameters,
             "seed": r.seed, "status": "pending", "attempts": 0, "step": 0, "metrics": {}}
            for key, r in zip(keys, requests, strict=True)
        ]  # fmt: skip
        ids: dict[str, int] = {}
        with self.engine.begin() as conn:
            for i in range(0, len(rows), 500):
                chunk = rows[i : i + 500]
                conn.execute(
                    insert(t).values(chunk).on_conflict_do_nothing(index_elements=["job_key"])
                )
                chunk_keys = [r["job_key"] for r in chunk]
                if retry_failed:
                    conn.execute(
                        update(t)
                        .where(t.job_key.in_(chunk_keys), t.status.in_(("failed", "timeout")))
                        .values(status="pending", error=None)
                    )
                for job_id, key, attempts in conn.execute(
                    select(t.id, t.job_key, t.attempts).where(t.job_key.in_(chunk_keys))
                ):
                    ids[key] = job_id
                    # Each request gets MAX_ATTEMPTS leases of its own; attempts keep counting
                    # because (worker, attempts) fences a stale lease holder.
                    self.caps[job_id] = attempts + MAX_ATTEMPTS
        return [ids[k] for k in keys]

    def run(self, requests: Sequence[JobRequest], *, retry_failed: bool = False) -> list[JobResult]:
        """Submit and wait; results in request order."""
        ids = self.submit(requests, retry_failed=retry_failed)
        self.wait(ids)
        return self.results(ids)

    def results(self, ids: Sequence[int]) -> list[JobResult]:
        """The recorded rows of ``ids`` (one query per 500), in order."""
        t = TrainingJob
        found: dict[int, JobResult] = {}
        with self.engine.connect() as conn:
            for i in range(0, len(ids), 500):
                for row in conn.execute(
                    select(t.id, t.status, t.metrics, t.error, t.attempts, t.worker).where(
                        t.id.in_(ids[i : i + 500])
                    )
                ):
                    found[row.id] = JobResult(
                        row.id, row.status, dict(row.metrics or {}), row.error, row.attempts,
                        row.worker,
                    )  # fmt: skip
        return [found[i] for i in ids]

    def wait(self, ids: Sequence[int]) -> None:
        """Run (in-process) or dispatch (Celery) every unfinished job until all are terminal."""
        if self.settings.broker_url:
            self._wait_celery(ids)
        else:
            self._run_local(ids)

    def _snapshot(self, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        t = TrainingJob
        out: dict[int, dict[str, Any]] = {}
        with self.engine.connect() as conn:
            now = db_now(conn)
            for i in range(0, len(ids), 500):
                for row in conn.execute(
                    select(t.id, t.job_key, t.status, t.attempts, t.step, t.hyperparameters,
                           t.lease_expires_at < now).where(t.id.in_(ids[i : i + 500]))
                ):  # fmt: skip
                    out[row[0]] = {
                        "key": row[1], "status": row[2], "attempts": row[3], "step": row[4],
                        "steps": row[5].get("steps"), "expired": bool(row[6]),
                        "max_seconds": int(row[5].get("max_seconds", 3600)),
                    }  # fmt: skip
        return out

    def _report(self, snapshot: Mapping[int, Mapping[str, Any]]) -> None:
        done = sum(s["status"] in TERMINAL for s in snapshot.values())
        running = [s for s in snapshot.values() if s["status"] == "running"]
        steps = ", ".join(f"{s['step']}/{s['steps']}" for s in running[:4])
        self.say(
            f"train: {done}/{len(snapshot)} jobs finished, {len(running)} running"
            + (f" (checkpointed steps {steps})" if steps else "")
        )

    def _run_local(self, ids: Sequence[int]) -> None:
        import torch

        device = self.settings.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        worker = f"in-process-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        url = self.engine.url.render_as_string(hide_password=False)
        _engines.setdefault(url, self.engine)
        pending = list(ids)
        while pending:
            snapshot = self._snapshot(pending)
            self._report(snapshot)
            waiting = []
            for job_id in pending:
                if snapshot[job_id]["status"] in TERMINAL:
                    continue
                outcome = execute_job(
                    job_id, url, worker=worker, job_key=snapshot[job_id]["key"],
                    data_dir=self.settings.data_dir, device=device, lease_s=self.lease_s,
                    max_attempts=self.caps.get(job_id, MAX_ATTEMPTS),
                )  # fmt: skip
                if outcome == "busy":  # another process holds a live lease: wait for it
                    waiting.append(job_id)
                elif outcome == "exhausted":
                    self._give_up([job_id])
                else:
                    done = self.results([job_id])[0]
                    ppl = done.metrics.get("valid_ppl")
                    self.say(
                        f"train: job {job_id} {done.status}"
                        + (
                            f" (valid_ppl {ppl:.2f}, {done.metrics['seconds']:.0f} s)"
                            if ppl
                            else ""
                        )
                        + (f": {done.error}" if done.error else "")
                    )
            pending = waiting
            if pending:
                time.sleep(self.poll_s)
        self._report(self._snapshot(ids))

    def _wait_celery(self, ids: Sequence[int]) -> None:
        from lpzero_queue.execution.celery_app import check_broker, make_celery

        app = make_celery(self.settings, self._options())
        check_broker(app)
        url = self.settings.effective_database_url
        sent_at: dict[int, float] = {}
        sent_attempts: dict[int, int] = {}
        pending = set(ids)
        last_report = 0.0
        while pending:
            snapshot = self._snapshot(sorted(pending))
            now = time.monotonic()
            if now - last_report > 30:
                self._report(self._snapshot(ids))
                last_report = now
            exhausted = []
            for job_id in sorted(pending):
                row = snapshot[job_id]
                cap = self.caps.get(job_id, MAX_ATTEMPTS)
                if row["status"] in TERMINAL:
                    pending.discard(job_id)
                    continue
                since = now - sent_at[job_id] if job_id in sent_at else None
                resend = since is None
                if row["status"] == "running" and row["expired"]:
                    if row["attempts"] >= cap:
                        exhausted.append(job_id)
                        continue
                    resend = resend or row["attempts"] > sent_attempts.get(job_id, 0)
                    resend = resend or (since is not None and since > self.lease_s)
                elif row["status"] == "pending" and since is not None:
                    resend = since > self.pickup_timeout_s
                if resend:
                    app.send_task(
                        TASK_TRAIN_JOB,
                        args=[job_id, url, row["key"], cap, self.lease_s],
                        # The loop stops itself at max_seconds (checkpoint kept); these limits
                        # only catch a job stuck outside it.
                        soft_time_limit=row["max_seconds"] + 600,
                        time_limit=row["max_seconds"] + 900,
                    )
                    sent_at[job_id], sent_attempts[job_id] = now, row["attempts"]
            self._give_up(exhausted)
            if pending:
                time.sleep(self.poll_s)
        self._report(self._snapshot(ids))

    def _options(self) -> Any:
        from lpzero_queue.execution.celery_app import CeleryOptions

        if self.key_prefix is None:
            return None
        return CeleryOptions(key_prefix=self.key_prefix)

    def _give_up(self, ids: Sequence[int]) -> None:
        """Fail jobs whose leases all expired (their workers died) with no attempts left."""
        if not ids:
            return
        t = TrainingJob
        with self.engine.begin() as conn:
            now = db_now(conn)
            for job_id in ids:
                conn.execute(
                    update(t)
                    .where(
                        t.id == job_id,
                        or_(
                            t.status == "pending",
                            (t.status == "running") & (t.lease_expires_at < now),
                        ),
                    )
                    .values(
                        status="failed",
                        lease_expires_at=None,
                        error=f"gave up after {self.caps.get(job_id, MAX_ATTEMPTS)} attempts "
                        "(the worker died or was killed each time)",
                    )
                )
