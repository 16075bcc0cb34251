"""Training jobs, coordinator side: submit rows, run them in-process or on Celery, wait.

:class:`TrainRunner` inserts one ``training_jobs`` row per distinct request and waits until each
is terminal: in-process on the embedded default (no broker), or by sending ``lpzq.train_job`` to
Celery workers of the ``train`` queue and polling the rows, re-sending a job whose lease expired
(its worker died) until the attempt cap, then marking it failed, and re-sending a pending job
nobody picked up (a lost message). The worker side is :mod:`lpzero_queue.execution.train_tasks`.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, or_, select, update

from lpzero_queue.execution.tasks import db_now
from lpzero_queue.execution.train_tasks import (
    DEFAULT_TRAIN_LEASE_S,
    MAX_ATTEMPTS,
    TASK_TRAIN_JOB,
    TERMINAL,
    JobRequest,
    JobResult,
    _engines,
    execute_job,
)
from lpzero_queue.storage import TrainingJob, insert_ignore

if TYPE_CHECKING:
    from lpzero_queue.config import Settings

__all__ = ["TrainRunner"]


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
                insert_ignore(conn, t, chunk, index_elements=["job_key"])
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
