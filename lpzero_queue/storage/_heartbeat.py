"""The thread that keeps a held lease alive while its worker computes."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from lpzero_queue.storage._leasing import TRANSIENT_DB_ERRORS

if TYPE_CHECKING:
    from lpzero_queue.storage.queue import LeasedQueue

log = logging.getLogger(__name__)


class Heartbeat(threading.Thread):
    """Renews a lease every ``interval_s`` seconds (default a third of it) while computing.

    Attributes:
        values: further columns written with each renewal (replace the dict, do not mutate it).
        lost: set once a renewal found the lease no longer held.
    """

    def __init__(
        self,
        queue: LeasedQueue[Any],
        row_id: int,
        worker: str,
        attempt: int,
        lease_s: float,
        *,
        interval_s: float | None = None,
    ):
        """Prepare (not start) the heartbeat of one held lease.

        Args:
            interval_s: seconds between renewals; default (or when not below ``lease_s``) a
                third of ``lease_s``.
        """
        super().__init__(name=f"lpzq-heartbeat-{queue.label}-{row_id}", daemon=True)
        self.queue, self.row_id = queue, row_id
        self.worker, self.attempt, self.lease_s = worker, attempt, lease_s
        self.interval_s = interval_s if interval_s and interval_s < lease_s else lease_s / 3
        self.values: dict[str, Any] = {}
        self.stopped = threading.Event()
        self.lost = threading.Event()

    def beat(self) -> bool:
        """One renewal; False (and :attr:`lost` set) when the lease is no longer held."""
        if self.queue.beat(self.row_id, self.worker, self.attempt, self.lease_s, **self.values):
            return True
        log.warning("%s %d: lease lost (attempt %d)", self.queue.label, self.row_id, self.attempt)
        self.lost.set()
        return False

    def run(self) -> None:
        while not self.stopped.wait(self.interval_s) and not self.lost.is_set():
            try:
                if not self.beat():
                    return
            except TRANSIENT_DB_ERRORS:
                log.warning(
                    "%s %d: heartbeat failed; will retry",
                    self.queue.label,
                    self.row_id,
                    exc_info=True,
                )

    def stop(self) -> None:
        """Stop renewing and wait (up to 10 s) for the thread to end."""
        self.stopped.set()
        self.join(timeout=10)
