"""Training jobs, coordinator side: submit rows, run them in-process or on Celery, wait.

:class:`TrainRunner` inserts one ``training_jobs`` row per distinct request and waits until each
is terminal: in-process on the embedded default (no broker), or by sending ``lpzq.train_job`` to
Celery workers of the ``train`` queue and polling the rows (the leased queue's snapshot, as the
proxy coordinator does), re-sending a job whose lease expired or was released (its worker died
or failed) until the attempt cap, then marking it failed, and re-sending a pending job nobody
picked up (a lost message). The worker side is :mod:`lpzero_queue.execution.train_tasks`.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lpzero_queue.execution.train_tasks import (
    DEFAULT_TRAIN_LEASE_S,
    TASK_TRAIN_JOB,
    TERMINAL,
    JobRequest,
    JobResult,
    execute_job,
)
from lpzero_queue.storage import JobStatus
from lpzero_queue.storage.queue import LeaseOutcome, LeaseState, adopt_engine
from lpzero_queue.storage.training_jobs import TrainingJobQueue

if TYPE_CHECKING:
    from lpzero_queue.config import Settings
    from lpzero_queue.storage.queue import Engine

__all__ = ["TrainRunner"]


@dataclass
class _Sent:
    """When a job was last sent, and its attempts then."""

    at: float
    attempts: int


class TrainRunner:
    """Submits training jobs and waits until each is finished.

    Args:
        settings: Without ``broker_url`` jobs run in this process (device from the ``device``
            setting); with it they go to Celery workers of the ``train`` queue. Each request
            gives a job ``celery_max_attempts`` leases (infrastructure failures, out of memory
            included, are retried up to there).
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
        self.queue = TrainingJobQueue(engine)
        self.lease_s, self.poll_s, self.pickup_timeout_s = lease_s, poll_s, pickup_timeout_s
        self.key_prefix = key_prefix
        self.max_attempts = settings.celery_max_attempts
        self.caps: dict[int, int] = {}  # job id -> attempt cap of this request

    def submit(self, requests: Sequence[JobRequest], *, retry_failed: bool = False) -> list[int]:
        """Insert one row per distinct request (existing rows are kept); ids in request order.

        Args:
            requests: The jobs.
            retry_failed: Reopen ``failed``/``timeout`` rows (their checkpoint is reused).
        """
        rows = self.queue.submit(requests, retry_failed=retry_failed)
        for row in rows.values():
            # Each request gets its own leases; attempts keep counting because
            # (worker, attempts) fences a stale lease holder.
            self.caps[row.id] = row.attempts + self.max_attempts
        return [rows[r.key].id for r in requests]

    def run(self, requests: Sequence[JobRequest], *, retry_failed: bool = False) -> list[JobResult]:
        """Submit and wait; results in request order."""
        ids = self.submit(requests, retry_failed=retry_failed)
        self.wait(ids)
        return self.results(ids)

    def results(self, ids: Sequence[int]) -> list[JobResult]:
        """The recorded rows of ``ids`` (one query per 500), in order."""
        return self.queue.results(ids)

    def wait(self, ids: Sequence[int]) -> None:
        """Run (in-process) or dispatch (Celery) every unfinished job until all are terminal."""
        if self.settings.broker_url:
            self._wait_celery(ids)
        else:
            self._run_local(ids)

    def _cap(self, job_id: int) -> int:
        return self.caps.get(job_id, self.max_attempts)

    def _report(self, snapshot: Mapping[int, LeaseState], steps: Mapping[int, Any]) -> None:
        done = sum(s.status in TERMINAL for s in snapshot.values())
        running = [s for s in snapshot.values() if s.status == JobStatus.RUNNING]
        at = ", ".join(f"{s.step}/{steps.get(s.id)}" for s in running[:4])
        self.say(
            f"train: {done}/{len(snapshot)} jobs finished, {len(running)} running"
            + (f" (checkpointed steps {at})" if at else "")
        )

    def _say_done(self, job_id: int) -> None:
        done = self.results([job_id])[0]
        ppl = done.metrics.get("valid_ppl")
        self.say(
            f"train: job {job_id} {done.status}"
            + (f" (valid_ppl {ppl:.2f}, {done.metrics['seconds']:.0f} s)" if ppl else "")
            + (f": {done.error}" if done.error else "")
        )

    def _run_local(self, ids: Sequence[int]) -> None:
        import torch

        device = self.settings.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        worker = f"in-process-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        url = self.engine.url.render_as_string(hide_password=False)
        adopt_engine(url, self.engine)
        requests = self.queue.requests(ids)
        steps = {i: r.hyperparameters.get("steps") for i, r in requests.items()}
        pending = list(ids)
        while pending:
            snapshot = self.queue.snapshot(pending)
            self._report(snapshot, steps)
            waiting = []
            for job_id in pending:
                if snapshot[job_id].status in TERMINAL:
                    continue
                outcome = execute_job(
                    job_id, url, worker=worker, job_key=snapshot[job_id].key,
                    data_dir=self.settings.data_dir, device=device, lease_s=self.lease_s,
                    max_attempts=self._cap(job_id),
                )  # fmt: skip
                if outcome in (
                    LeaseOutcome.BUSY,
                    LeaseOutcome.RELEASED,
                ):  # someone holds it, or it is retried
                    waiting.append(job_id)
                else:
                    self._say_done(job_id)
            pending = waiting
            if pending:
                time.sleep(self.poll_s)
        self._report(self.queue.snapshot(ids), steps)

    def _wait_celery(self, ids: Sequence[int]) -> None:
        from lpzero_queue.execution.celery_app import check_broker, make_celery

        app = make_celery(self.settings, self._options())
        check_broker(app)
        requests = self.queue.requests(ids)
        steps = {i: r.hyperparameters.get("steps") for i, r in requests.items()}
        sent: dict[int, _Sent] = {}
        pending = set(ids)
        last_report = 0.0
        while pending:
            snapshot = self.queue.snapshot(sorted(pending))
            now = time.monotonic()
            if now - last_report > 30:
                self._report(self.queue.snapshot(ids), steps)
                last_report = now
            pending -= {i for i, s in snapshot.items() if s.status in TERMINAL}
            exhausted, send = self._plan([snapshot[i] for i in sorted(pending)], sent, now)
            for row in send:
                max_seconds = requests[row.id].max_seconds
                app.send_task(
                    TASK_TRAIN_JOB,
                    args=[row.id, self.settings.effective_database_url, row.key,
                          self._cap(row.id), self.lease_s],
                    # The loop stops itself at max_seconds (checkpoint kept); these limits
                    # only catch a job stuck outside it.
                    soft_time_limit=max_seconds + 600,
                    time_limit=max_seconds + 900,
                )  # fmt: skip
                sent[row.id] = _Sent(now, row.attempts)
            self.queue.give_up(exhausted, {i: self._cap(i) for i in exhausted})
            if pending:
                time.sleep(self.poll_s)
        self._report(self.queue.snapshot(ids), steps)

    def _plan(
        self, rows: Sequence[LeaseState], sent: Mapping[int, _Sent], now: float
    ) -> tuple[list[int], list[LeaseState]]:
        """Jobs to fail (attempts used up, nobody holds them) and jobs to (re-)send now."""
        exhausted: list[int] = []
        send: list[LeaseState] = []
        for row in rows:
            last = sent.get(row.id)
            since = None if last is None else now - last.at
            resend = since is None
            if row.status == JobStatus.RUNNING and row.expired:
                if row.attempts >= self._cap(row.id):
                    exhausted.append(row.id)
                    continue
                # An attempt ended since the last send (its worker died or released the lease):
                # send at once; otherwise the last message may be lost.
                resend = resend or row.attempts > (last.attempts if last else 0)
                resend = resend or (since is not None and since > self.lease_s)
            elif row.status == JobStatus.PENDING and since is not None:
                resend = since > self.pickup_timeout_s
            if resend:
                send.append(row)
        return exhausted, send

    def _options(self) -> Any:
        from lpzero_queue.execution.celery_app import CeleryOptions

        if self.key_prefix is None:
            return None
        return CeleryOptions(key_prefix=self.key_prefix)
