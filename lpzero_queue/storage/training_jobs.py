"""The training queue: ``training_jobs`` rows, one per distinct (spec, hyper-parameters, seed).

The table keeps no attempt cap: each request gives a job a cap of its own (its attempts so far
plus the request's budget), which the coordinator sends with every message.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from lpzero_queue.storage._models import Architecture, TrainingJob
from lpzero_queue.storage._upsert import insert_ignore
from lpzero_queue.storage.queue import LeasedQueue, chunks
from lpzero_queue.storage.status import JobStatus

JOB_TERMINAL = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.TIMEOUT, JobStatus.CANCELLED)
DEFAULT_MAX_SECONDS = 3600  # a job's time limit when its hyper-parameters give none


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

    @property
    def max_seconds(self) -> int:
        """The job's time limit (the training loop stops itself there)."""
        return int(self.hyperparameters.get("max_seconds", DEFAULT_MAX_SECONDS))


@dataclass(frozen=True)
class JobResult:
    """A job as recorded."""

    id: int
    status: JobStatus
    metrics: dict[str, Any]
    error: str | None
    attempts: int
    worker: str | None


@dataclass(frozen=True)
class SubmittedJob:
    """A job's row after a request: its id and the attempts it had already used."""

    id: int
    attempts: int


class TrainingJobQueue(LeasedQueue[TrainingJob]):
    """The ``training_jobs`` queue (see :class:`~lpzero_queue.storage.queue.LeasedQueue`)."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(
            engine, TrainingJob, key_column="job_key", label="training job", terminal=JOB_TERMINAL
        )

    def submit(
        self, requests: Sequence[JobRequest], *, retry_failed: bool = False
    ) -> dict[str, SubmittedJob]:
        """Insert one row per distinct request (existing rows are kept); rows by job key.

        Args:
            retry_failed: reopen ``failed``/``timeout`` rows (their checkpoint is reused).
        """
        t = TrainingJob
        rows = {
            r.key: {"job_key": r.key, "spec": r.spec, "hyperparameters": r.hyperparameters,
                    "seed": r.seed, "status": JobStatus.PENDING, "attempts": 0, "step": 0,
                    "metrics": {}}
            for r in requests
        }  # fmt: skip
        found: dict[str, SubmittedJob] = {}
        with self.engine.begin() as conn:
            for keys in chunks(list(rows)):
                insert_ignore(conn, t, [rows[k] for k in keys], index_elements=["job_key"])
                if retry_failed:
                    conn.execute(
                        update(t)
                        .where(
                            t.job_key.in_(keys),
                            t.status.in_((JobStatus.FAILED, JobStatus.TIMEOUT)),
                        )
                        .values(status=JobStatus.PENDING, error=None)
                    )
                query = select(t.id, t.job_key, t.attempts).where(t.job_key.in_(keys))
                for job_id, key, attempts in conn.execute(query):
                    found[key] = SubmittedJob(job_id, attempts)
        return found

    def results(self, ids: Sequence[int]) -> list[JobResult]:
        """The recorded rows of ``ids`` (one query per 500), in order."""
        t = TrainingJob
        found: dict[int, JobResult] = {}
        with self.engine.connect() as conn:
            for chunk in chunks(list(ids)):
                query = select(t.id, t.status, t.metrics, t.error, t.attempts, t.worker)
                for row in conn.execute(query.where(t.id.in_(chunk))):
                    found[row.id] = JobResult(
                        row.id, JobStatus(row.status), dict(row.metrics or {}), row.error,
                        row.attempts, row.worker,
                    )  # fmt: skip
        return [found[i] for i in ids]

    def request(self, job_id: int) -> JobRequest:
        """What a job trains."""
        t = TrainingJob
        with self.engine.connect() as conn:
            row = conn.execute(
                select(t.spec, t.hyperparameters, t.seed).where(t.id == job_id)
            ).one()
        return JobRequest(dict(row.spec), dict(row.hyperparameters), int(row.seed))

    def requests(self, ids: Sequence[int]) -> dict[int, JobRequest]:
        """What each of ``ids`` trains (one query per 500)."""
        t = TrainingJob
        out: dict[int, JobRequest] = {}
        with self.engine.connect() as conn:
            for chunk in chunks(list(ids)):
                query = select(t.id, t.spec, t.hyperparameters, t.seed).where(t.id.in_(chunk))
                for row in conn.execute(query):
                    out[row.id] = JobRequest(
                        dict(row.spec), dict(row.hyperparameters), int(row.seed)
                    )
        return out


def link_jobs(session: Session, benchmark_id: int, jobs: Mapping[str, Sequence[int]]) -> None:
    """Point training jobs at the architecture rows they produced.

    Args:
        jobs: architecture key -> the ids of the jobs that trained it.
    """
    rows = session.execute(
        select(Architecture.id, Architecture.key).where(Architecture.benchmark_id == benchmark_id)
    ).all()
    by_key = {key: arch_id for arch_id, key in rows}
    for key, job_ids in jobs.items():
        session.execute(
            update(TrainingJob)
            .where(TrainingJob.id.in_(job_ids))
            .values(benchmark_id=benchmark_id, architecture_id=by_key[key])
        )
