"""The worker side of distributed scoring: lease a ``work_units`` row, compute, record once.

The task body is a plain function (:func:`execute_unit`) so it can be tested without Celery.
Exactly-once comes from the database, not the broker: a worker *leases* a row with one
conditional UPDATE (pending, or running with an expired lease, and attempts below the cap),
renews the lease from a heartbeat thread while it computes, and writes the result and ``done`` in
one transaction only while it still holds the lease. ``(worker, attempts)`` is the fencing token:
a worker whose lease was taken over cannot overwrite the new holder's row (the lease itself is
:class:`lpzero_queue.storage.WorkUnitQueue`, the leased queue shared with the training jobs).

What a unit ends as (see ``execution.base``): ``done`` with its rows when it was scored, also when
its scoring raised a declared error (``error`` rows) or passed the soft time limit (``timeout``
rows); an infrastructure failure (out of memory, CUDA error, a killed child) or a bug (a
``TypeError`` in an operator) records its reason and expires the lease at once so the
coordinator re-sends it, and the unit is ``failed`` (reason kept, no rows) once its attempts are
used up.

Nothing here imports torch at module level: the worker's parent process imports this module,
and CUDA must only ever be initialised in the forked children.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from dataclasses import asdict, replace
from typing import TYPE_CHECKING, Any

from celery.exceptions import SoftTimeLimitExceeded

from lpzero_queue.execution.base import (
    error_rows,
    resolve_device,
    score_as_result,
    use_scoring_threads,
)
from lpzero_queue.storage import EvaluationStatus, UnitStatus
from lpzero_queue.storage.queue import (
    TRANSIENT_DB_ERRORS,
    Engine,
    LeaseOutcome,
    forget_engines,
    queue_engine,
)
from lpzero_queue.storage.work_units import WorkUnitQueue

if TYPE_CHECKING:
    from celery import Celery

    from lpzero_queue.config import Settings
    from lpzero_queue.proxies.cache import InputCache
    from lpzero_queue.proxies.scoring import ScoreRow, WorkUnit

log = logging.getLogger(__name__)

# Seconds a lease lasts unless renewed; the heartbeat renews it every third of that.
DEFAULT_LEASE_S = 60.0
# Test hook (not an LPZQ_ setting, which would be rejected): sleep this long inside the lease
# before computing, so crash tests can kill a worker mid-task.
TEST_SLEEP_ENV = "LPZERO_QUEUE_TEST_TASK_SLEEP"
# Test hook: an infrastructure failure inside the lease instead of scoring: "kill" makes the
# child SIGKILL itself (a worker that always dies); any other value raises MemoryError(value).
TEST_FAIL_ENV = "LPZERO_QUEUE_TEST_TASK_FAIL"

# Celery options of the lpzq tasks: retry an unreachable database with backoff, keep no result.
DB_RETRY_TASK_OPTIONS: dict[str, Any] = {
    "autoretry_for": TRANSIENT_DB_ERRORS,
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "retry_jitter": True,
    "max_retries": 8,
    "ignore_result": True,
}

_state: dict[str, Any] = {"settings": None, "cache": None, "device": "cpu"}


def configure_worker_process(settings: Settings, device: str) -> None:
    """Prepare a freshly forked worker child: torch threads, device, warm input cache.

    Called from Celery's ``worker_process_init`` signal, i.e. only in the child, never in the
    parent: this is where torch (and CUDA) are first imported. The child starts with the
    worker's ``scoring_threads``; each task then uses the thread count its coordinator sent.
    """
    import torch

    use_scoring_threads(settings.scoring_threads)
    resolved = resolve_device(device)
    if resolved == "cuda":
        torch.cuda.set_device(0)
    forget_engines()  # never reuse connections inherited across fork (units and jobs alike)
    _state.update(settings=settings, device=resolved, cache=None)
    log.info(
        "worker child %d ready: device %s, torch threads %d",
        os.getpid(),
        resolved,
        torch.get_num_threads(),
    )


def worker_cache() -> InputCache:
    """This process's warm input cache, created on first use."""
    if _state["cache"] is None:
        from lpzero_queue.config import load_settings
        from lpzero_queue.proxies.cache import InputCache

        settings = _state["settings"] or load_settings()
        _state["cache"] = InputCache(
            max_bytes=int(settings.input_cache_gb * 2**30),
            spill_dir=settings.cache_dir / "inputs",
        )
    cache: InputCache = _state["cache"]
    return cache


def lease_unit(
    engine: Engine, unit_id: int, worker: str, lease_s: float, unit_key: str | None = None
) -> int | None:
    """Take the lease of a row atomically; the new attempt number, or None when not leased.

    ``unit_key``, when given, must match too: a message meant for another database finds no row.
    """
    return WorkUnitQueue(engine).lease(unit_id, worker, lease_s, key=unit_key, max_attempts=None)


def _finish(
    engine: Engine, unit_id: int, worker: str, attempt: int, *, result: dict[str, Any]
) -> str:
    """Record the unit's rows and ``done`` in one transaction, only while holding the lease."""
    done = WorkUnitQueue(engine).record_done(unit_id, worker, attempt, result)
    return UnitStatus.DONE if done else LeaseOutcome.SUPERSEDED


def _release(engine: Engine, unit_id: int, worker: str, attempt: int, reason: str) -> str:
    """After an infrastructure failure: ``failed`` when no attempts are left, else expire the
    lease now (the coordinator re-sends the unit) with the reason kept for the record.

    Returns:
        ``failed``, ``released`` or ``superseded`` (the lease was no longer ours).
    """
    return WorkUnitQueue(engine).release(unit_id, worker, attempt, reason, max_attempts=None)


def _test_hooks() -> None:
    """Crash tests' hooks (environment variables a deployment never sets)."""
    sleep_s = float(os.environ.get(TEST_SLEEP_ENV) or 0)
    if sleep_s:
        time.sleep(sleep_s)
    fail = os.environ.get(TEST_FAIL_ENV)
    if fail == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif fail:
        raise MemoryError(fail)


def _timeouts(rows: list[ScoreRow], message: str) -> list[ScoreRow]:
    """Rows whose scoring caught the soft time limit as an error are ``timeout`` rows."""
    return [
        replace(r, status=EvaluationStatus.TIMEOUT, error=message)
        if r.status == EvaluationStatus.ERROR
        and (r.error or "").startswith(SoftTimeLimitExceeded.__name__)
        else r
        for r in rows
    ]


def execute_unit(
    unit_id: int,
    database_url: str,
    *,
    worker: str,
    lease_s: float = DEFAULT_LEASE_S,
    unit_key: str | None = None,
    soft_time_limit_s: float | None = None,
    heartbeat_s: float | None = None,
    torch_threads: int | None = None,
) -> str:
    """Lease, score and record one unit; returns what happened.

    Args:
        heartbeat_s: seconds between lease renewals (default a third of ``lease_s``).
        torch_threads: intra-op torch threads to score with (the coordinator's
            ``scoring_threads``); default this worker's. Recorded in the result.

    Returns:
        ``done`` (this call recorded the rows), ``released`` (an infrastructure failure; the
        unit will be re-sent), ``failed`` (the same with no attempts left), ``superseded`` (the
        lease was taken over while computing), or, without computing: ``busy`` (another
        worker holds a live lease), ``missing``, or the row's terminal status (idempotent
        redelivery).

    Raises:
        OperationalError | InterfaceError: the database was unreachable before leasing; the
            Celery task retries these with backoff.
    """
    from lpzero_queue.proxies.scoring import WorkUnit

    queue = WorkUnitQueue(queue_engine(database_url))
    attempt = queue.lease(unit_id, worker, lease_s, key=unit_key, max_attempts=None)
    if attempt is None:
        outcome = queue.not_leased(unit_id, key=unit_key, max_attempts=None)
        log.info("unit %d not leased: %s", unit_id, outcome)
        return outcome
    unit = WorkUnit.from_payload(queue.payload(unit_id))
    heartbeat = queue.heartbeat(unit_id, worker, attempt, lease_s, interval_s=heartbeat_s)
    heartbeat.start()
    settings = _state["settings"]
    threads = torch_threads or (settings.scoring_threads if settings is not None else 1)
    timeout = f"timeout after {soft_time_limit_s or 'the soft time limit'} s"
    result: dict[str, Any] = {}
    failure: str | None = None
    try:
        result = _score(unit, threads, timeout, worker)
    except Exception as exc:  # infrastructure or a bug: retried up to the cap, never stored
        failure = " ".join(f"{type(exc).__name__}: {exc}".split())
        log.warning("unit %d attempt %d: %s", unit_id, attempt, failure, exc_info=True)
    finally:
        heartbeat.stop()
    if failure is not None:
        outcome = queue.release(unit_id, worker, attempt, failure, max_attempts=None)
    else:
        done = queue.record_done(unit_id, worker, attempt, result)
        outcome = UnitStatus.DONE if done else LeaseOutcome.SUPERSEDED
    log.info("unit %d attempt %d: %s", unit_id, attempt, outcome)
    return outcome


def _score(unit: WorkUnit, threads: int, timeout: str, worker: str) -> dict[str, Any]:
    """Score ``unit`` in this worker child: its rows and how they were obtained.

    A declared outcome is rows (``error``, ``timeout``...); anything else raises.
    """
    from lpzero_queue.proxies.scoring import device_label

    started = time.perf_counter()
    result: dict[str, Any] = {
        "torch_threads": use_scoring_threads(threads),
        "device": device_label(_state["device"]),
    }
    try:
        _test_hooks()
        rows = _timeouts(score_as_result(unit, worker_cache(), _state["device"]), timeout)
    except SoftTimeLimitExceeded:
        result["error"] = timeout
        rows = error_rows(unit, timeout, EvaluationStatus.TIMEOUT)
    result.update(
        rows=[asdict(r) for r in rows], seconds=time.perf_counter() - started, worker=worker
    )
    return result


def register_tasks(app: Celery) -> None:
    """Register the lpzq tasks on ``app`` (called by :func:`make_celery`)."""

    @app.task(
        name="lpzq.score_unit",
        bind=True,
        **DB_RETRY_TASK_OPTIONS,
    )
    def score_unit_task(
        self: Any,
        unit_id: int,
        database_url: str,
        lease_s: float = DEFAULT_LEASE_S,
        unit_key: str | None = None,
        heartbeat_s: float | None = None,
        torch_threads: int | None = None,
    ) -> str:
        """Score work unit ``unit_id`` of the database at ``database_url``.

        A worker with its own ``LPZQ_DATABASE_URL`` uses that (inside compose the coordinator's
        ``127.0.0.1`` URL means nothing); ``unit_key`` then guards against a different database.
        """
        settings = _state["settings"]
        own_url = settings.database_url if settings is not None else None
        return execute_unit(
            unit_id,
            own_url or database_url,
            worker=self.request.hostname or f"pid-{os.getpid()}",
            lease_s=lease_s,
            unit_key=unit_key,
            soft_time_limit_s=self.soft_time_limit or app.conf.task_soft_time_limit,
            heartbeat_s=heartbeat_s,
            torch_threads=torch_threads,
        )
