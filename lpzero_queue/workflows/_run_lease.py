"""Holding a search run: its lease taken, renewed by a heartbeat thread, given up at the end.

The coordinator may spend long stretches inside one generation (scoring in-process or waiting for
workers), so the lease is renewed by a thread of its own, every third of the lease, on its own
database connection: it never lapses while the coordinator is alive. The coordinator's writes are
fenced by the repository (:class:`lpzero_queue.storage.RunLease`); the thread only notices a lost
lease early, so that the coordinator stops at the next generation instead of computing one more.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from lpzero_queue.storage import RunLease, RunLeaseLostError, RunRepository

log = logging.getLogger(__name__)


class RunHeartbeat(threading.Thread):
    """Renews a held run lease every ``lease_s / 3`` seconds until stopped or lost."""

    def __init__(self, runs: RunRepository, lease: RunLease) -> None:
        super().__init__(name=f"lpzq-run-{lease.run_id}-heartbeat", daemon=True)
        self.runs, self.lease = runs, lease
        self.interval_s = lease.lease_s / 3
        self.stopped = threading.Event()
        self.lost = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval_s):
            try:
                if not self.runs.renew_lease(self.lease):
                    log.warning("search run %d: lease lost", self.lease.run_id)
                    self.lost.set()
                    return
            except Exception:  # a busy or briefly unreachable database: retry on the next beat
                log.warning("search run %d: heartbeat failed", self.lease.run_id, exc_info=True)

    def check(self) -> None:
        """Raise :class:`RunLeaseLostError` once a renewal found the lease taken over."""
        if self.lost.is_set():
            raise RunLeaseLostError(
                f"search run {self.lease.run_id}: this coordinator ({self.lease.owner}) lost the "
                "run's lease to another coordinator; stopped without writing"
            )

    def stop(self) -> None:
        """Stop renewing and wait (up to 10 s) for the thread to end."""
        self.stopped.set()
        self.join(timeout=10)


@contextmanager
def holding_run(runs: RunRepository, lease: RunLease) -> Iterator[RunHeartbeat]:
    """Take the run's lease (compare-and-set), renew it while the block runs, then give it up.

    Raises:
        RunLeaseHeldError: another coordinator's lease on the run is live.
    """
    runs.acquire_lease(lease)
    beat = RunHeartbeat(runs, lease)
    beat.start()
    try:
        yield beat
    finally:
        beat.stop()
        try:
            runs.release_lease(lease)  # a no-op when the run finished or was taken over
        except Exception:  # the lease lapses by itself; the run shows as stale then
            log.warning("search run %d: could not release the lease", lease.run_id, exc_info=True)
