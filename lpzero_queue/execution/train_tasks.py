"""Training jobs on the ``train`` queue, worker side: lease, heartbeat, checkpoint, record once.

A job is one ``training_jobs`` row keyed by the sha256 of ``(spec, hyperparameters, seed)``
(``INSERT ... ON CONFLICT DO NOTHING``: the same request is one row). It follows the proxy units'
exactly-once pattern (:mod:`lpzero_queue.execution._lease`), with PostgreSQL as the record:

* a worker *leases* the row with one conditional UPDATE (pending, or running with an expired
  lease, and ``attempts`` below the cap the coordinator sent with the message);
* a heartbeat thread renews the lease and writes the step of the last checkpoint; when the
  lease is lost, training stops at the next step;
* the checkpoint (``<data_dir>/checkpoints/<job_key>.pt``) is written every
  ``checkpoint_every`` steps; a job redelivered after its worker died resumes from it;
* the outcome (``completed`` with metrics, ``timeout``, ``failed`` with the error) is written in
  one transaction only while the lease is still held (``worker`` and ``attempts`` fence it).

:class:`~lpzero_queue.execution.train_runner.TrainRunner` is the coordinator side.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import Engine, select

from lpzero_queue.execution._lease import (
    Heartbeat,
    finish_held,
    take_lease,
    with_db_retries,
)
from lpzero_queue.execution.tasks import DB_RETRY_TASK_OPTIONS
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
    return take_lease(
        engine,
        t,
        job_id,
        worker,
        lease_s,
        same_key=t.job_key == job_key,
        below_cap=t.attempts < max_attempts,
    )


def _finish(engine: Engine, job_id: int, worker: str, attempt: int, values: dict[str, Any]) -> str:
    """Record the outcome in ``values`` only while holding the lease; its status or superseded."""
    written = finish_held(engine, TrainingJob, job_id, worker, attempt, values)
    return str(values["status"]) if written else "superseded"


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
    # Renews the lease every lease_s / 3 s and records the last checkpointed step.
    heartbeat = Heartbeat(
        engine,
        TrainingJob,
        job_id,
        worker,
        attempt,
        lease_s,
        label="training job",
        name=f"lpzq-train-heartbeat-{job_id}",
    )
    heartbeat.start()
    sleep_s = float(os.environ.get(TEST_STEP_SLEEP_ENV) or 0)

    def progress(step: int, _loss: float) -> None:
        heartbeat.values = {"step": step, "checkpoint_path": str(ckpt)}
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
        from lpzero_queue.versions import code_version, library_versions

        metrics.update(
            worker=worker,
            attempt=attempt,
            code_version=code_version(),
            library_versions=library_versions(),
        )
        values = {
            "status": "completed",
            "metrics": metrics,
            "error": None,
            "step": metrics["steps"],
            "checkpoint_path": None,
        }
    except (TrainingTimeoutError, SoftTimeLimitExceeded) as exc:
        step = getattr(exc, "step", heartbeat.values.get("step") or 0)
        reason = str(exc) or f"timeout after {time.perf_counter() - started:.0f} s"
        values = {"status": "timeout", "error": reason, "step": step}
    except Exception as exc:  # a deterministic failure is a result: store it, do not retry
        values = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
    except KeyboardInterrupt:
        # Ctrl-C in the in-process runner: hand the job back at once (no waiting for the lease
        # to expire); the next run resumes it from its checkpoint.
        heartbeat.stop()
        _finish(engine, job_id, worker, attempt, {"status": "pending", "error": "interrupted"})
        raise
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
        **DB_RETRY_TASK_OPTIONS,
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
