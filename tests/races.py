"""Deterministic write races on the real PostgreSQL.

Transaction A runs a write and keeps its transaction open; B runs the competing call in a thread
until PostgreSQL shows it waiting on A's lock; then A commits. Code that checks and then inserts
fails B with an IntegrityError; insert-or-ignore lets B read A's row.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker


def blocked(engine: Engine) -> bool:
    """True once another backend of this database waits on a lock."""
    with engine.connect() as conn:
        waiting = conn.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'"
            )
        )
    return bool(waiting)


def race(engine: Engine, hold: Callable[[Session], Any], call: Callable[[], Any]) -> list[Any]:
    """A runs ``hold`` and keeps its transaction open until B, running ``call`` in a thread,
    waits on A's lock; then A commits. Returns both results (B's error is raised)."""
    results: list[Any] = []
    with sessionmaker(engine)() as a:
        results.append(hold(a))
        second = _Thread(call)
        second.start()
        deadline = time.monotonic() + 30
        while not blocked(engine) and second.is_alive():
            assert time.monotonic() < deadline, "B never waited on A's insert"
            time.sleep(0.02)
        a.commit()
    second.join(30)
    if second.error is not None:
        raise second.error
    results.append(second.result)
    return results


def in_session(engine: Engine, write: Callable[[Session], Any]) -> Callable[[], Any]:
    def call() -> Any:
        with sessionmaker(engine).begin() as s:
            return write(s)

    return call


class _Thread(threading.Thread):
    def __init__(self, fn: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.fn, self.result, self.error = fn, None, None

    def run(self) -> None:
        try:
            self.result = self.fn()
        except BaseException as exc:  # re-raised in the test thread
            self.error = exc
