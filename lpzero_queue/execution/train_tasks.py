"""Training jobs on the ``train`` queue, worker side: lease, heartbeat, checkpoint, record once.

A job is one ``training_jobs`` row keyed by the sha256 of ``(spec, hyperparameters, seed)``
(``INSERT ... ON CONFLICT DO NOTHING``: the same request is one row). It is a leased queue like
the proxy units' (:class:`lpzero_queue.storage.TrainingJobQueue`), with the database as the
record:

* a worker *leases* the row with one conditional UPDATE (pending, or running with an expired
  lease, and ``attempts`` below the cap the coordinator sent with the message);
* a heartbeat thread renews the lease and writes the step of the last checkpoint; when the
  lease is lost, training stops at the next step;
* the checkpoint (``<data_dir>/checkpoints/<job_key>.pt``) is written every
  ``checkpoint_every`` steps; a job redelivered after its worker died resumes from it;
* the outcome (``completed`` with metrics, or ``timeout`` at the time limit) is written in one
  transaction only while the lease is still held (``worker`` and ``attempts`` fence it);
* any other exception (out of memory, a device error, a bug) is an infrastructure failure, as
  for the proxy units: the lease is released at once with the reason, the coordinator re-sends
  the job (it resumes from its checkpoint), and once its attempts are used up it is ``failed``.

:class:`~lpzero_queue.execution.train_runner.TrainRunner` is the coordinator side.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from lpzero_queue.execution.tasks import DB_RETRY_TASK_OPTIONS
from lpzero_queue.storage import JobStatus
from lpzero_queue.storage.queue import Heartbeat, LeaseOutcome, queue_engine, with_db_retries
from lpzero_queue.storage.training_jobs import (
    JOB_TERMINAL,
    JobRequest,
    JobResult,
    TrainingJobQueue,
)

if TYPE_CHECKING:
    from celery import Celery

    from lpzero_queue.config import Settings
    from lpzero_queue.storage.queue import Engine

__all__ = [
    "DEFAULT_TRAIN_LEASE_S",
    "MAX_ATTEMPTS",
    "TASK_TRAIN_JOB",
    "TERMINAL",
    "JobRequest",
    "JobResult",
    "checkpoint_path",
    "execute_job",
    "lease_job",
    "register_train_tasks",
]

log = logging.getLogger(__name__)

TASK_TRAIN_JOB: Final = "lpzq.train_job"  # routed to the train queue by its prefix
DEFAULT_TRAIN_LEASE_S: Final = 90.0
# Leases per request when none is given (the coordinator sends ``celery_max_attempts``).
MAX_ATTEMPTS: Final = 3
TERMINAL: Final = JOB_TERMINAL
# Test hook (not an LPZQ_ setting): sleep this long after every training step, so crash tests
# can kill a worker in the middle of a job.
TEST_STEP_SLEEP_ENV: Final = "LPZERO_QUEUE_TEST_TRAIN_STEP_SLEEP"


def checkpoint_path(data_dir: Path, job_key: str) -> Path:
    """Where a job's checkpoint lives on a machine with this data directory."""
    return data_dir / "checkpoints" / f"{job_key}.pt"


# -- worker side -------------------------------------------------------------------------------


def lease_job(
    engine: Engine, job_id: int, worker: str, lease_s: float, job_key: str, max_attempts: int
) -> int | None:
    """Take a job's lease with one conditional UPDATE; the new attempt number, or None."""
    return TrainingJobQueue(engine).lease(
        job_id, worker, lease_s, key=job_key, max_attempts=max_attempts
    )


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
        ``completed`` or ``timeout`` (this call recorded it), ``released`` (an infrastructure
        failure; the job will be re-sent), ``failed`` (the same with no attempts left),
        ``superseded`` (the lease was taken over), or without training: ``busy`` (someone
        holds a live lease), ``missing``, ``failed`` (no attempts left) or the row's terminal
        status.
    """
    queue = TrainingJobQueue(queue_engine(database_url))
    attempt = queue.lease(job_id, worker, lease_s, key=job_key, max_attempts=max_attempts)
    if attempt is None:
        outcome = queue.not_leased(job_id, key=job_key, max_attempts=max_attempts)
        log.info("training job %d not leased: %s", job_id, outcome)
        return outcome
    request, ckpt = queue.request(job_id), checkpoint_path(data_dir, job_key)
    heartbeat = queue.heartbeat(job_id, worker, attempt, lease_s)
    heartbeat.start()
    values: dict[str, Any] = {}
    failure: str | None = None
    try:
        values = _train(request, ckpt, heartbeat, device, worker, attempt)
    except Exception as exc:  # infrastructure (out of memory included) or a bug: retried
        failure = " ".join(f"{type(exc).__name__}: {exc}".split())
        log.warning("training job %d attempt %d: %s", job_id, attempt, failure, exc_info=True)
    except KeyboardInterrupt:
        # Ctrl-C in the in-process runner: hand the job back at once (no waiting for the lease
        # to expire); the next run resumes it from its checkpoint.
        heartbeat.stop()
        queue.finish(job_id, worker, attempt, status=JobStatus.PENDING, error="interrupted")
        raise
    finally:
        heartbeat.stop()
    if failure is not None:
        outcome = queue.release(job_id, worker, attempt, failure, max_attempts=max_attempts)
    elif queue.finish(job_id, worker, attempt, **values):
        outcome = str(values["status"])
    else:
        outcome = LeaseOutcome.SUPERSEDED
    if outcome == JobStatus.COMPLETED:
        ckpt.unlink(missing_ok=True)  # the result is recorded; the checkpoint is not needed
    log.info("training job %d attempt %d: %s", job_id, attempt, outcome)
    return outcome


def _train(
    request: JobRequest, ckpt: Path, heartbeat: Heartbeat, device: str, worker: str, attempt: int
) -> dict[str, Any]:
    """Train one job under a held lease: the columns of its outcome (completed or timeout).

    Raises:
        Exception: anything but the time limit (an infrastructure failure or a bug).
    """
    from celery.exceptions import SoftTimeLimitExceeded

    from lpzero_queue.training.loop import Hyperparameters, TrainingTimeoutError, train
    from lpzero_queue.versions import code_version, library_versions

    sleep_s = float(os.environ.get(TEST_STEP_SLEEP_ENV) or 0)

    def progress(step: int, _loss: float) -> None:
        heartbeat.values = {"step": step, "checkpoint_path": str(ckpt)}
        with_db_retries(heartbeat.beat)

    def should_stop() -> bool:
        if sleep_s:
            time.sleep(sleep_s)
        return heartbeat.lost.is_set()

    started = time.perf_counter()
    try:
        metrics = train(
            request.spec,
            Hyperparameters.from_dict(request.hyperparameters),
            request.seed,
            device=device,
            checkpoint=ckpt,
            progress=progress,
            should_stop=should_stop,
        )
    except (TrainingTimeoutError, SoftTimeLimitExceeded) as exc:  # a declared outcome
        step = getattr(exc, "step", heartbeat.values.get("step") or 0)
        reason = str(exc) or f"timeout after {time.perf_counter() - started:.0f} s"
        return {"status": JobStatus.TIMEOUT, "error": reason, "step": step}
    metrics.update(
        worker=worker,
        attempt=attempt,
        code_version=code_version(),
        library_versions=library_versions(),
    )
    return {
        "status": JobStatus.COMPLETED,
        "metrics": metrics,
        "error": None,
        "step": metrics["steps"],
        "checkpoint_path": None,
    }


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
