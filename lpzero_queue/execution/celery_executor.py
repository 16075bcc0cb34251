"""Distributed execution: units go to Celery workers; the database is the record and the barrier.

``run(units)`` upserts one ``work_units`` row per unit (the unique ``unit_key`` is the sha256 of
the unit's canonical JSON, so the same work is one row), sends ``lpzq.score_unit`` for every row
not yet done, then polls the database until every row is ``done`` or ``failed``, yielding each unit
as soon as its row is done. No chords and no result backend: a lost message or a dead worker only
delays a row, and the poll loop re-dispatches it:

* a ``running`` row whose lease expired (its worker died, or released it after an
  infrastructure failure) is sent again while attempts remain, and marked ``failed`` when they
  are exhausted: ``run`` then stops with :class:`UnitFailedError` naming the unit and the reason.
  Nothing is stored for a failed unit; the next request for it (running the command again,
  ``lpzq search resume RUN``) reopens it with ``max_attempts`` more attempts (the cap is per
  request; ``attempts`` only grows, so it stays a fencing token);
* a ``pending`` row is sent again to the shared queue when none of the run's rows has moved for
  ``pickup_timeout_s`` (its message was lost), waiting twice as long before each further re-send;
* when the broker was unreachable or restarted (its Redis ``run_id`` changed), every unit without
  a live lease is sent again as soon as the broker is back: its message may be gone. The
  coordinator waits out an outage up to ``celery_broker_wait_s``, saying what it waits for once
  and then every 30 s (:mod:`lpzero_queue.execution._broker`).

Duplicate messages are harmless: a task leases its row before computing and returns at once when
the row is done or leased by someone else.

Shard affinity: once a worker has completed a unit, later units over the same architectures, seed
and input setup are sent to that worker's own queue (Celery's ``worker_direct``) so they find its
input cache warm. Affinity never makes work wait for a dead worker: a unit in a worker's own
queue that is not taken up within ``affinity_grace_s`` while that worker holds no live lease is
sent again to the shared ``proxy`` queue (re-sends always go there); a worker whose lease expired
or that left its queue untouched gets no more affine units (until it completes one again), and
its own queue is purged when ``run`` ends, so no message stays stranded there. The affinity map
lives in the executor: a search that reuses one executor over its generations benefits; a fresh
process starts cold.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from lpzero_queue.config import Settings
from lpzero_queue.errors import LpzqError
from lpzero_queue.execution._broker import BrokerWatch
from lpzero_queue.execution.base import UnitFailedError, describe, executor_label
from lpzero_queue.execution.celery_app import (
    QUEUE_PROXY,
    TASK_SCORE_UNIT,
    CeleryOptions,
    check_broker,
    make_celery,
)
from lpzero_queue.proxies.scoring import ScoreRow, WorkUnit
from lpzero_queue.storage import UnitStatus
from lpzero_queue.storage.queue import LeaseState, Sessions, attempts_text, engine_of
from lpzero_queue.storage.work_units import UNIT_TERMINAL, WorkUnitQueue

log = logging.getLogger(__name__)


def unit_key(unit: WorkUnit) -> str:
    """sha256 of the unit's canonical JSON: the idempotency key of its ``work_units`` row."""
    text = json.dumps(unit.to_payload(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def shard_key(unit: WorkUnit) -> str:
    """What decides a worker's cached inputs: setup, seed and the architectures of the shard."""
    ident = [vars(unit.setup), unit.seed, sorted(a.id for a in unit.archs)]
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()


@dataclass
class _Track:
    units: list[WorkUnit]
    key: str
    sent_at: float | None = None  # monotonic time of the last dispatch
    sent_after: int = -1  # the row's attempts when it was last dispatched
    resends: int = 0
    node: str | None = None  # the worker whose own queue got the last message; None: shared


class CeleryExecutor:
    """Runs units on Celery workers with exactly-once results kept in the database.

    Args:
        settings: needs ``broker_url``; ``effective_database_url`` travels with each task (a
            worker with its own ``LPZQ_DATABASE_URL`` uses that instead, e.g. inside compose),
            and so does ``scoring_threads``: workers score with the coordinator's thread count.
            The ``celery_*`` settings give the defaults of the options below.
        sessions: the coordinator's session factory on the same database.
        options: Celery options (time limits, key prefix); must match the workers'.
        lease_s: lease length (``celery_lease_s``).
        heartbeat_s: seconds between lease renewals (``celery_heartbeat_s``, or a third of
            ``lease_s``).
        poll_s: seconds between polls of the database.
        pickup_timeout_s: a pending row not picked up within this is sent again.
        max_attempts: leases per unit and request (``celery_max_attempts``); a unit that always
            kills its worker stops here.
        broker_down_s: give up (LpzqError) when the broker cannot be reached this long
            (``celery_broker_wait_s``).
        timeout_s: give up when the whole run takes longer; None waits forever.
        affinity: route a shard back to the worker that last completed it.
        affinity_grace_s: a unit in a worker's own queue not taken up within this, while that
            worker holds no live lease, is sent to the shared queue (default: 4 polls, at
            least 2 s).
        say: where lines about the broker go (default: a logged warning).
    """

    def __init__(
        self,
        settings: Settings,
        sessions: Sessions,
        *,
        options: CeleryOptions | None = None,
        lease_s: float | None = None,
        heartbeat_s: float | None = None,
        poll_s: float = 0.5,
        pickup_timeout_s: float = 120.0,
        max_attempts: int | None = None,
        broker_down_s: float | None = None,
        timeout_s: float | None = None,
        affinity: bool = True,
        affinity_grace_s: float | None = None,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.app = make_celery(settings, options)
        self.torch_threads = settings.scoring_threads
        self.name = executor_label("celery", self.torch_threads)
        self.lease_s = settings.celery_lease_s if lease_s is None else lease_s
        self.heartbeat_s = heartbeat_s or (
            settings.effective_heartbeat_s if lease_s is None else self.lease_s / 3
        )
        if self.heartbeat_s >= self.lease_s:
            raise ValueError(f"heartbeat_s {self.heartbeat_s} must be below lease_s {self.lease_s}")
        self.poll_s = poll_s
        self.pickup_timeout_s = pickup_timeout_s
        self.max_attempts = settings.celery_max_attempts if max_attempts is None else max_attempts
        self.broker_down_s = (
            settings.celery_broker_wait_s if broker_down_s is None else broker_down_s
        )
        self.timeout_s = timeout_s
        self.affinity = affinity
        self.affinity_grace_s = (
            max(2.0, 4 * poll_s) if affinity_grace_s is None else affinity_grace_s
        )
        self.affine: dict[str, str] = {}  # shard_key -> nodename of the last worker done with it
        self.suspects: set[str] = set()  # workers found dead: no affine units, queue purged
        self.dispatched = 0  # messages sent by this executor (tests and benchmarks read it)
        self.rerouted = 0  # units taken out of a worker's own queue (tests read it)
        self.broker = BrokerWatch(self.app, self.broker_down_s, say or log.warning)

    @property
    def queue(self) -> WorkUnitQueue:
        """The ``work_units`` queue on the coordinator's database."""
        return WorkUnitQueue(engine_of(self.sessions))

    def check_broker(self) -> None:
        """Open one broker connection; LpzqError naming the masked URL when it fails."""
        check_broker(self.app)

    def run(self, units: Sequence[WorkUnit]) -> Iterator[tuple[WorkUnit, list[ScoreRow]]]:
        """Dispatch ``units`` and yield each with its rows as soon as its row is done.

        Raises:
            UnitFailedError: a unit used up its attempts on infrastructure failures (one line naming
                the unit and the reason); units finished before it were yielded.
            LpzqError: the broker stayed unreachable past ``broker_down_s``, or ``timeout_s``
                passed.
        """
        if not units:
            return
        self.broker.wait()
        tracks = self._upsert(units)
        started = time.monotonic()
        pending = set(tracks)
        last_seen: dict[int, tuple[str, int]] = {}
        progress_at = started
        try:
            while pending:
                snapshot = self._snapshot(sorted(pending))
                now = time.monotonic()
                seen = {i: (s.status, s.attempts) for i, s in snapshot.items()}
                live = any(s.live for s in snapshot.values())
                if live or seen != last_seen:
                    progress_at = now
                last_seen = seen
                finished = [i for i, s in snapshot.items() if s.status in UNIT_TERMINAL]
                failed = []
                for unit_id, rows in self._results(finished, tracks):
                    pending.discard(unit_id)
                    if rows is None:
                        failed.append(unit_id)
                        continue
                    for unit in tracks[unit_id].units:
                        yield unit, rows
                if failed:
                    raise self._failure(failed, tracks)
                if not pending:
                    break
                self._round(snapshot, pending, tracks, now, stalled=now - progress_at)
                if self.timeout_s is not None and now - started > self.timeout_s:
                    raise LpzqError(
                        f"{len(pending)} of {len(tracks)} units not done after "
                        f"{self.timeout_s:.0f} s"
                    )
                if not finished:
                    time.sleep(self.poll_s)
        finally:
            self._purge_suspects()

    def _round(
        self,
        snapshot: dict[int, LeaseState],
        pending: set[int],
        tracks: dict[int, _Track],
        now: float,
        *,
        stalled: float,
    ) -> None:
        """One poll's decisions: give up, (re-)send, and re-send everything after an outage."""
        lost = self.broker.check()
        if self.broker.down:
            return  # nothing can be sent; the waiting line was said
        give_up, send = self._plan(
            snapshot, pending, tracks, now, stalled=stalled > self.pickup_timeout_s
        )
        self.queue.give_up(give_up)
        if lost:
            # Back from an outage or a restart: whatever it held may be gone. Every unit nobody
            # holds a live lease on is sent again (a duplicate is harmless).
            again = [
                i
                for i in sorted(pending)
                if i not in give_up
                and (snapshot[i].status == UnitStatus.PENDING or snapshot[i].expired)
            ]
            if again:
                self.broker.say(f"re-sending {len(again)} units the broker may have lost")
            send = sorted(set(send) | set(again))
        attempts = {i: snapshot[i].attempts for i in send}
        self._dispatch(send, tracks, attempts)

    def _plan(
        self,
        snapshot: dict[int, LeaseState],
        pending: set[int],
        tracks: dict[int, _Track],
        now: float,
        *,
        stalled: bool,
    ) -> tuple[list[int], list[int]]:
        """Rows to fail (attempts exhausted) and rows to (re-)send this round.

        A pending row is re-sent only when none of this run's rows has moved for
        ``pickup_timeout_s`` (``stalled``): while workers make progress, a pending row is most
        likely just waiting in the queue, and re-sending it would only add duplicates.
        """
        give_up, send = [], []
        busy = {row.worker for row in snapshot.values() if row.live}
        for unit_id in sorted(pending):
            row, track = snapshot[unit_id], tracks[unit_id]
            since = None if track.sent_at is None else now - track.sent_at
            if row.status == UnitStatus.RUNNING and row.expired:
                self._suspect(row.worker)
                if row.attempts >= (row.max_attempts or 0):
                    give_up.append(unit_id)
                elif since is None or row.attempts > track.sent_after or since > self.lease_s:
                    # An attempt ended since the last send (its worker died or released the
                    # lease): send at once; otherwise the last message may be lost.
                    send.append(unit_id)
            elif row.status == UnitStatus.PENDING:
                wait = self.pickup_timeout_s * 2 ** min(track.resends, 4)
                if since is None or (stalled and since > wait):
                    send.append(unit_id)
                elif (
                    track.node is not None
                    and track.node not in busy
                    and since > self.affinity_grace_s
                ):
                    # In a worker's own queue, and that worker is not working for us: it may
                    # be dead. The shared queue lets any live worker take the unit.
                    self._suspect(track.node)
                    self.rerouted += 1
                    send.append(unit_id)
        return give_up, send

    def _suspect(self, node: str | None) -> None:
        """No more affine units for ``node`` (until it completes one); its queue is purged."""
        if node and node not in self.suspects:
            self.suspects.add(node)
            self.affine = {k: v for k, v in self.affine.items() if v != node}

    def _purge_suspects(self) -> None:
        """Empty the own queues of the workers found dead during this run."""
        if self.suspects and not self.broker.down:
            purged = self.broker.purge(sorted(self.suspects))
            if purged:
                log.info("purged %d messages from the queues of %s", purged, self.suspects)

    # -- database ------------------------------------------------------------------------------

    def _upsert(self, units: Sequence[WorkUnit]) -> dict[int, _Track]:
        """One row per distinct unit (INSERT ... ON CONFLICT DO NOTHING); failed rows reopen."""
        by_key: dict[str, list[WorkUnit]] = {}
        payloads: dict[str, dict[str, Any]] = {}
        for unit in units:
            key = unit_key(unit)
            by_key.setdefault(key, []).append(unit)
            payloads.setdefault(key, unit.to_payload())
        ids = self.queue.upsert(payloads, self.max_attempts)
        return {unit_id: _Track(units=by_key[key], key=key) for unit_id, key in ids.items()}

    def _snapshot(self, ids: Sequence[int]) -> dict[int, LeaseState]:
        return self.queue.snapshot(ids)

    def _results(
        self, ids: Sequence[int], tracks: dict[int, _Track]
    ) -> Iterator[tuple[int, list[ScoreRow] | None]]:
        """Rows of each finished id; None for a failed unit (no rows: not a result)."""
        for done in self.queue.outcomes(ids):
            unit = tracks[done.id].units[0]
            if done.status == UnitStatus.DONE and done.result is not None:
                if done.worker:
                    self.affine[shard_key(unit)] = done.worker
                    self.suspects.discard(done.worker)
                yield done.id, [ScoreRow(**r) for r in done.result["rows"]]
            else:
                yield done.id, None

    def _failure(self, ids: Sequence[int], tracks: dict[int, _Track]) -> UnitFailedError:
        """The one-line error for failed units: the first one, its reason, how to retry."""
        error = self.queue.error(ids[0])
        unit = tracks[ids[0]].units[0]
        others = f" (and {len(ids) - 1} more units)" if len(ids) > 1 else ""
        reason = " ".join((error or "failed without a reason").split())
        return UnitFailedError(
            f"work unit {ids[0]} ({describe(unit)}) failed{others}: {reason}; nothing was "
            f"stored for it; run the command again (lpzq search resume RUN for a search) to "
            f"retry it with a fresh budget of {attempts_text(self.max_attempts)}"
        )

    # -- broker --------------------------------------------------------------------------------

    def _dispatch(
        self, ids: Sequence[int], tracks: dict[int, _Track], attempts: dict[int, int]
    ) -> bool:
        """Send a task per id; False when the broker refused (they are retried next poll).

        ``attempts`` is each row's attempt count when sent (a later attempt that ends without
        a result is re-sent at once).
        """
        url = self.settings.effective_database_url
        for unit_id in ids:
            track = tracks[unit_id]
            queue: Any = QUEUE_PROXY
            node = self.affine.get(shard_key(track.units[0])) if self.affinity else None
            if node and track.sent_at is None and node not in self.suspects:
                from celery.utils.nodenames import worker_direct

                queue = worker_direct(node)
            else:
                node = None
            try:
                self.app.send_task(
                    TASK_SCORE_UNIT,
                    args=[unit_id, url],
                    kwargs={
                        "lease_s": self.lease_s,
                        "unit_key": track.key,
                        "heartbeat_s": self.heartbeat_s,
                        "torch_threads": self.torch_threads,
                    },
                    queue=queue,
                    retry=True,
                    retry_policy={
                        "max_retries": 2,
                        "interval_start": 0.5,
                        "interval_step": 1.0,
                        "interval_max": 2.0,
                    },
                )
            except Exception as exc:  # kombu OperationalError and friends: broker unreachable
                log.warning("cannot send unit %d: %s; retrying at the next poll", unit_id, exc)
                return False
            if track.sent_at is not None:
                track.resends += 1
            track.sent_at = time.monotonic()
            track.sent_after = attempts.get(unit_id, 0)
            track.node = node
            self.dispatched += 1
        return True
