"""What the coordinator knows of the broker: reachable or not, restarted or not, dead queues.

The database is the record of work, the broker only carries messages; so a broker outage costs
messages, never results. :class:`BrokerWatch` lets the coordinator ride out an outage up to a
stated limit (``celery_broker_wait_s``), say what it is waiting for (once, then every
``say_every_s``), and notice when the broker comes back *empty* (a restarted Redis without
persistence; its ``run_id`` changes), so that the units whose messages vanished are sent again at
once instead of after ``pickup_timeout_s``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from lpzero_queue.config import mask_url
from lpzero_queue.errors import LpzqError

log = logging.getLogger(__name__)

SAY_EVERY_S = 30.0  # while the broker is down, repeat the waiting line this often


class BrokerWatch:
    """Probes the broker between polls and tracks outages and restarts.

    Args:
        app: the Celery application (its broker URL and key prefix).
        wait_s: give up (LpzqError) when the broker stays unreachable this long.
        say: where the waiting lines go (the CLI prints them on stderr).
        clock: monotonic seconds (tests pass their own).
    """

    def __init__(
        self,
        app: Any,
        wait_s: float,
        say: Callable[[str], None],
        *,
        say_every_s: float = SAY_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app, self.wait_s, self.say, self.say_every_s, self.clock = (
            app,
            wait_s,
            say,
            say_every_s,
            clock,
        )
        self.url = mask_url(str(app.conf.broker_url or ""))
        self.down_since: float | None = None
        self.said_at: float | None = None
        self.epoch: str | None = None  # the broker's identity (Redis run_id) when last seen
        self.outages = 0
        self._client: Any = None

    def _redis(self) -> Any:
        if self._client is None:
            import redis

            url = str(self.app.conf.broker_url or "")
            self._client = redis.Redis.from_url(
                url, socket_connect_timeout=2, socket_timeout=2, health_check_interval=0
            )
        return self._client

    def probe(self) -> str | None:
        """The broker's identity (Redis ``run_id``), or None when it cannot be reached.

        A broker other than Redis has no identity here: only reachability is probed.
        """
        url = str(self.app.conf.broker_url or "")
        if not url.startswith(("redis://", "rediss://", "unix://")):
            from lpzero_queue.execution.celery_app import check_broker

            try:
                check_broker(self.app)
            except LpzqError as exc:
                self._reason = str(exc)
                return None
            return "broker"
        try:
            info = self._redis().info("server")
        except Exception as exc:  # redis-py connection and timeout errors: unreachable
            self._reason = " ".join(str(exc).split()) or type(exc).__name__
            return None
        return str(info.get("run_id", "redis"))

    def check(self) -> bool:
        """Probe once; True when the broker came back since the last check *without* the
        messages it held (it was restarted, or was unreachable: what was sent meanwhile failed).

        Raises:
            LpzqError: unreachable for longer than ``wait_s`` (one line naming the masked URL).
        """
        now = self.clock()
        epoch = self.probe()
        if epoch is None:
            self._down(now)
            return False
        lost = self.down_since is not None or (self.epoch is not None and epoch != self.epoch)
        if self.down_since is not None:
            self.say(f"broker {self.url} is back after {now - self.down_since:.0f} s")
        self.down_since = self.said_at = None
        self.epoch = epoch
        return lost

    def wait(self) -> None:
        """Block until the broker answers (saying so), or raise after ``wait_s``."""
        while self.probe() is None:
            self._down(self.clock())
            time.sleep(1.0)
        self.check()

    @property
    def down(self) -> bool:
        """True while the last probe found the broker unreachable."""
        return self.down_since is not None

    def _down(self, now: float) -> None:
        if self.down_since is None:
            self.down_since = now
            self.outages += 1
        waited = now - self.down_since
        if waited > self.wait_s:
            raise LpzqError(
                f"cannot reach broker {self.url} for {waited:.0f} s (celery_broker_wait_s is "
                f"{self.wait_s:.0f}): {self._reason}; the work done is stored, resume it with "
                "the same command (lpzq search resume RUN for a search)"
            )
        if self.said_at is None or now - self.said_at >= self.say_every_s:
            self.said_at = now
            self.say(
                f"waiting for broker {self.url} ({self._reason}): {waited:.0f} s of "
                f"{self.wait_s:.0f} s (celery_broker_wait_s); the work done so far is kept"
            )

    _reason = "unreachable"

    def purge(self, nodes: Iterable[str]) -> int:
        """Empty the own queues of ``nodes`` (workers found dead); the messages purged.

        Safe even for a worker that is alive after all: every coordinator re-sends a unit
        routed to a worker's own queue and not taken up within its affinity grace.
        """
        from celery.utils.nodenames import worker_direct

        purged = 0
        try:
            with self.app.connection_for_write() as conn:
                channel = conn.default_channel
                for node in nodes:
                    purged += worker_direct(node).bind(channel).purge() or 0
        except Exception as exc:  # best effort: a left-over message is a harmless duplicate
            log.warning("cannot purge the queues of dead workers: %s", exc)
        return purged
