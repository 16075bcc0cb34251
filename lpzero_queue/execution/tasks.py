"""The worker side of distributed scoring: lease a ``work_units`` row, compute, record once.

The task body is a plain function (:func:`execute_unit`) so it can be tested without Celery.
Exactly-once comes from the database, not the broker: a worker *leases* a row with one
conditional UPDATE (pending, or running with an expired lease, and attempts below the cap),
renews the lease from a heartbeat thread while it computes, and writes the result and ``done`` in
one transaction only while it still holds the lease. ``(worker, attempts)`` is the fencing token:
a worker whose lease was taken over cannot overwrite the new holder's row (the lease itself is
:mod:`lpzero_queue.execution._lease`, shared with the training jobs).

What a unit ends as (see ``execution.base``): ``done`` with its rows when it was scored, also when
its scoring raised a deterministic error (``error`` rows) or passed the soft time limit
(``timeout`` rows); an infrastructure failure (out of memory, CUDA error, a killed child) records
its reason and expires the lease at once so the coordinator re-sends it, and the unit is
``failed`` (reason kept, no rows) once its attempts are used up.

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
from sqlalchemy import Engine, select, update

from lpzero_queue.execution._lease import (
    TRANSIENT_DB_ERRORS,
    Heartbeat,
    db_now,
    finish_held,
    held,
    leasable,
    take_lease,
    with_db_retries,
)
from lpzero_queue.execution.base import (
    attempts_text,
    error_rows,
    resolve_device,
    score_as_result,
    use_scoring_threads,
)
from lpzero_queue.storage import WorkUnitRow, make_engine

if TYPE_CHECKING:
    from celery import Celery

    from lpzero_queue.config import Settings
    from lpzero_queue.proxies.cache import InputCache
    from lpzero_queue.proxies.scoring import ScoreRow

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

_engines: dict[str, Engine] = {}
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
    _engines.clear()  # never reuse connections inherited across fork
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


def _engine(url: str) -> Engine:
    if url not in _engines:
        _engines[url] = make_engine(url)
    return _engines[url]


def lease_unit(
    engine: Engine, unit_id: int, worker: str, lease_s: float, unit_key: str | None = None
) -> int | None:
    """Take the lease of a row atomically; the new attempt number, or None when not leased.

    ``unit_key``, when given, must match too: a message meant for another database finds no row.
    """
    t = WorkUnitRow
    same_key = t.unit_key == unit_key if unit_key else t.id == unit_id
    return take_lease(
        engine,
        t,
        unit_id,
        worker,
        lease_s,
        same_key=same_key,
        below_cap=t.attempts < t.max_attempts,
    )


def _not_leased(engine: Engine, unit_id: int, unit_key: str | None) -> str:
    """Why a row could not be leased; marks it failed when its attempts are exhausted."""
    t = WorkUnitRow
    same_key = t.unit_key == unit_key if unit_key else t.id == unit_id
    with engine.begin() as conn:
        now = db_now(conn)
        row = conn.execute(
            select(t.status, t.attempts, t.max_attempts, t.worker, t.error).where(
                t.id == unit_id, same_key
            )
        ).one_or_none()
        if row is None:
            return "missing"
        if row.status in ("done", "failed"):
            return row.status
        gave_up = conn.execute(
            update(t)
            .where(t.id == unit_id, leasable(t, now), t.attempts >= t.max_attempts)
            .values(
                status="failed",
                lease_expires_at=None,
                error=f"gave up after {attempts_text(row.attempts)} (last worker {row.worker}): "
                f"{row.error or 'its lease expired (killed, out of memory or disconnected)'}",
            )
        )
        return "failed" if gave_up.rowcount == 1 else "busy"


def _finish(
    engine: Engine, unit_id: int, worker: str, attempt: int, *, result: dict[str, Any]
) -> str:
    """Record the unit's rows and ``done`` in one transaction, only while holding the lease."""
    values = {"status": "done", "result": result, "error": None}
    return (
        "done"
        if finish_held(engine, WorkUnitRow, unit_id, worker, attempt, values)
        else "superseded"
    )


def _release(engine: Engine, unit_id: int, worker: str, attempt: int, reason: str) -> str:
    """After an infrastructure failure: ``failed`` when no attempts are left, else expire the
    lease now (the coordinator re-sends the unit) with the reason kept for the record.

    Returns:
        ``failed``, ``released`` or ``superseded`` (the lease was no longer ours).
    """
    t = WorkUnitRow
    fenced = held(t, unit_id, worker, attempt)

    def write() -> str:
        with engine.begin() as conn:
            now = db_now(conn)
            failed = conn.execute(
                update(t)
                .where(fenced, t.attempts >= t.max_attempts)
                .values(
                    status="failed",
                    lease_expires_at=None,
                    heartbeat_at=now,
                    error=f"gave up after {attempts_text(attempt)} "
                    f"(last worker {worker}): {reason}",
                )
            )
            if failed.rowcount == 1:
                return "failed"
            released = conn.execute(
                update(t)
                .where(fenced)
                .values(lease_expires_at=now, heartbeat_at=now, error=reason[:2000])
            )
            return "released" if released.rowcount == 1 else "superseded"

    return with_db_retries(write)


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
        replace(r, status="timeout", error=message)
        if r.status == "error" and (r.error or "").startswith(SoftTimeLimitExceeded.__name__)
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
    from lpzero_queue.proxies.scoring import WorkUnit, device_label

    engine = _engine(database_url)
    attempt = lease_unit(engine, unit_id, worker, lease_s, unit_key)
    if attempt is None:
        outcome = _not_leased(engine, unit_id, unit_key)
        log.info("unit %d not leased: %s", unit_id, outcome)
        return outcome
    with engine.connect() as conn:
        payload: dict[str, Any] = conn.execute(
            select(WorkUnitRow.payload).where(WorkUnitRow.id == unit_id)
        ).scalar_one()
    unit = WorkUnit.from_payload(payload)
    heartbeat = Heartbeat(
        engine,
        WorkUnitRow,
        unit_id,
        worker,
        attempt,
        lease_s,
        label="unit",
        name=f"lpzq-heartbeat-{unit_id}",
        interval_s=heartbeat_s,
    )
    heartbeat.start()
    settings = _state["settings"]
    threads = torch_threads or (settings.scoring_threads if settings is not None else 1)
    result: dict[str, Any] | None = None
    failure: str | None = None
    started = time.perf_counter()
    timeout = f"timeout after {soft_time_limit_s or 'the soft time limit'} s"
    try:
        result = {
            "torch_threads": use_scoring_threads(threads),
            "device": device_label(_state["device"]),
        }
        try:
            _test_hooks()
            rows = _timeouts(score_as_result(unit, worker_cache(), _state["device"]), timeout)
        except SoftTimeLimitExceeded:
            result["error"] = timeout
            rows = error_rows(unit, timeout, "timeout")
        result.update(
            rows=[asdict(r) for r in rows],
            seconds=time.perf_counter() - started,
            worker=worker,
        )
    except Exception as exc:  # infrastructure: retried up to the cap, never a stored result
        failure = " ".join(f"{type(exc).__name__}: {exc}".split())
        log.warning("unit %d attempt %d: %s", unit_id, attempt, failure, exc_info=True)
    finally:
        heartbeat.stop()
    if failure is not None:
        outcome = _release(engine, unit_id, worker, attempt, failure)
    else:
        assert result is not None
        outcome = _finish(engine, unit_id, worker, attempt, result=result)
    log.info("unit %d attempt %d: %s", unit_id, attempt, outcome)
    return outcome


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
