"""The Celery application: queues, delivery guarantees, time limits and worker recycling.

Every choice here follows ``docs/operations.md``: late acknowledgement with redelivery when a
child dies, prefetch 1, a Redis visibility timeout above the hard time limit (set in all three
places), JSON only, no result backend (results go to the database, which is also the barrier).
Building the application does no I/O and imports neither torch nor the scoring code: the worker's
parent process must never initialise CUDA.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from celery import Celery
from kombu import Exchange, Queue

from lpzero_queue.config import Settings, mask_url
from lpzero_queue.errors import LpzqError

QUEUE_PROXY = "proxy"
QUEUE_TRAIN = "train"
QUEUES = (QUEUE_PROXY, QUEUE_TRAIN)
TASK_SCORE_UNIT = "lpzq.score_unit"
# Task names starting with these prefixes go to the train queue (their tasks come later).
TRAIN_TASK_PREFIX = "lpzq.train"


@dataclass(frozen=True)
class CeleryOptions:
    """Knobs of the Celery application; :meth:`from_settings` takes them from the settings."""

    # A scoring unit that runs past this gets SoftTimeLimitExceeded and is recorded as a timeout.
    soft_time_limit_s: int = 1800
    # The child is killed at this limit; the lease then expires and the coordinator re-dispatches.
    hard_time_limit_s: int = 2100
    # Redis redelivers unacknowledged messages after this; it must exceed the hard limit, or a
    # long task runs twice. 0 derives it: the hard limit plus 900 s.
    visibility_timeout: int = 0
    # Recycle a child after this many tasks (releases leaked host and device memory). Each
    # recycle drops the warm input cache, so it is not small.
    max_tasks_per_child: int = 200
    # Extra resident memory per child above the input-cache budget before it is recycled.
    memory_headroom_gb: float = 4.0
    # Prefix of every Redis key (queues, unacked messages, bindings): isolates deployments, or
    # test runs, sharing one Redis. Coordinator and workers must use the same prefix.
    key_prefix: str = ""
    # Give up connecting to the broker after this many tries (at start-up and after a loss).
    broker_max_retries: int = 20

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> CeleryOptions:
        """The options named by the ``celery_*`` settings; ``overrides`` win (CLI flags)."""
        values: dict[str, Any] = {
            "soft_time_limit_s": settings.celery_soft_time_limit_s,
            "hard_time_limit_s": settings.celery_hard_time_limit_s,
            "visibility_timeout": settings.celery_visibility_timeout_s,
            "key_prefix": settings.celery_key_prefix,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @property
    def visibility_timeout_s(self) -> int:
        """Redis visibility timeout: the explicit value, or the hard limit plus 900 s."""
        return self.visibility_timeout or self.hard_time_limit_s + 900

    def validate(self) -> None:
        """Reject limits that break delivery guarantees (LpzqError naming the settings)."""
        soft, hard = self.soft_time_limit_s, self.hard_time_limit_s
        if soft >= hard:
            raise LpzqError(
                f"celery_soft_time_limit_s ({soft}) must be below celery_hard_time_limit_s ({hard})"
            )
        if self.visibility_timeout_s <= hard:
            raise LpzqError(
                f"celery_visibility_timeout_s ({self.visibility_timeout_s}) must exceed "
                f"celery_hard_time_limit_s ({hard}), or long units run twice"
            )


def route_task(name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **kw: Any) -> Any:
    """Celery router: scoring tasks to ``proxy``, training tasks to ``train``."""
    if name.startswith(TRAIN_TASK_PREFIX):
        return {"queue": QUEUE_TRAIN}
    if name.startswith("lpzq."):
        return {"queue": QUEUE_PROXY}
    return None


def make_celery(settings: Settings, options: CeleryOptions | None = None) -> Celery:
    """Build the lpzq Celery application for ``settings.broker_url``.

    Args:
        settings: the effective settings; ``broker_url`` must be set. ``input_cache_gb`` sizes
            the per-child memory limit.
        options: time limits, recycling and key prefix; from the ``celery_*`` settings when
            omitted.

    Returns:
        The application with the ``lpzq.score_unit`` task registered. No connection is opened.

    Raises:
        LpzqError: inconsistent time limits (one line naming the settings).
    """
    from lpzero_queue.execution.tasks import register_tasks
    from lpzero_queue.execution.train_tasks import register_train_tasks

    opts = options or CeleryOptions.from_settings(settings)
    if not settings.broker_url:
        raise ValueError("make_celery needs settings.broker_url")
    opts.validate()
    app = Celery("lpzero_queue", broker=settings.broker_url, set_as_current=False)
    transport: dict[str, Any] = {"visibility_timeout": opts.visibility_timeout_s}
    if opts.key_prefix:
        transport["global_keyprefix"] = opts.key_prefix
    memory_kb = int((settings.input_cache_gb + opts.memory_headroom_gb) * 2**20)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        event_serializer="json",
        # No result backend: the database holds results and is the barrier.
        result_backend=None,
        task_ignore_result=True,
        task_store_errors_even_if_ignored=False,
        task_queues=(
            Queue(QUEUE_PROXY, Exchange(QUEUE_PROXY), routing_key=QUEUE_PROXY),
            Queue(QUEUE_TRAIN, Exchange(QUEUE_TRAIN), routing_key=QUEUE_TRAIN),
        ),
        task_default_queue=QUEUE_PROXY,
        task_routes=(route_task,),
        # Every worker also consumes <nodename>.dq2: the coordinator routes a shard back there.
        worker_direct=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=opts.soft_time_limit_s,
        task_time_limit=opts.hard_time_limit_s,
        # Set in all three places: setting only one of them is a known trap.
        broker_transport_options=dict(transport),
        result_backend_transport_options=dict(transport),
        visibility_timeout=opts.visibility_timeout_s,
        worker_max_tasks_per_child=opts.max_tasks_per_child,
        worker_max_memory_per_child=memory_kb,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=opts.broker_max_retries,
        broker_connection_timeout=5,
        worker_send_task_events=False,
        task_send_sent_event=False,
    )
    register_tasks(app)
    register_train_tasks(app)
    return app


def check_broker(app: Celery, *, retries: int = 1) -> None:
    """Open one connection to the app's broker.

    Raises:
        LpzqError: one line naming the masked broker URL and the reason.
    """
    url = mask_url(str(app.conf.broker_url or ""))
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(
                max_retries=retries, interval_start=0.2, interval_step=1.0, timeout=5
            )
    except Exception as exc:  # kombu wraps redis-py errors; any failure here means unreachable
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise LpzqError(f"cannot reach broker {url}: {reason}") from None
