"""Search runs and their individuals: every statement a search coordinator or ``lpzq search`` runs.

A run is driven by one coordinator at a time. The coordinator holds the run's *lease*
(``lease_owner``, a token naming its host and process, and ``lease_expires_at``), takes it with
one compare-and-set UPDATE, renews it while it works (``heartbeat_at`` is the last renewal) and
writes run state only while it still holds it: each write of a :class:`RunLease` holder renews
the lease in the same transaction and is refused (:class:`RunLeaseLostError`, nothing written) once
another coordinator took the run over. A ``running`` run whose lease lapsed is *stale*: derived
when read, never stored (:attr:`RunRecord.stale`).

Lease times use the database's clock on PostgreSQL (every coordinator agrees on it) and UTC on
SQLite (one machine).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Engine, Result, func, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from lpzero_queue.errors import NotFoundError, StorageError
from lpzero_queue.storage._engine import transaction
from lpzero_queue.storage._models import (
    Architecture,
    Benchmark,
    Evaluation,
    GroundTruth,
    Individual,
    Proxy,
    SearchRun,
    TrainingJob,
)
from lpzero_queue.storage._run_records import (
    IndividualRecord,
    JobProgress,
    RunArchitecture,
    RunLease,
    RunLeaseHeldError,
    RunLeaseLostError,
    RunRecord,
    new_lease_owner,
)
from lpzero_queue.storage.status import IndividualStatus, JobStatus, RunStatus

__all__ = [
    "IndividualRecord",
    "JobProgress",
    "RunArchitecture",
    "RunLease",
    "RunLeaseHeldError",
    "RunLeaseLostError",
    "RunRecord",
    "RunRepository",
    "job_progress",
    "new_lease_owner",
]


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite returns naive datetimes (written in UTC); PostgreSQL aware ones."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.UTC)


def _db_now(s: Session) -> dt.datetime:
    if s.get_bind().dialect.name == "postgresql":
        now: dt.datetime = s.scalar(select(func.now()))  # type: ignore[assignment]
        return now
    return dt.datetime.now(dt.UTC)


def _rowcount(result: Result[Any]) -> int:
    return int(result.rowcount)  # type: ignore[attr-defined]


def job_progress(engine: Engine, keys: Sequence[str]) -> list[JobProgress]:
    """The progress of the training jobs ``keys`` (read on a connection of its own).

    Raises:
        StorageError: the database could not be read (busy, unreachable).
    """
    t = TrainingJob
    query = select(t.job_key, t.status, t.step).where(t.job_key.in_(list(keys)))
    try:
        with engine.connect() as conn:
            rows = conn.execute(query).all()
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot read training progress: {exc}") from exc
    return [JobProgress(key, JobStatus(status), step or 0) for key, status, step in rows]


def _run_record(row: Any, now: dt.datetime) -> RunRecord:
    run: SearchRun = row[0]
    return RunRecord(
        id=run.id,
        benchmark_id=run.benchmark_id,
        benchmark=row[1],
        config=dict(run.config),
        seed=run.seed,
        status=RunStatus(run.status),
        best_proxy_id=run.best_proxy_id,
        best_expression=row[2],
        best_fitness=run.best_fitness,
        selection=run.selection,
        error=run.error,
        created_at=_utc(run.created_at),
        started_at=_utc(run.started_at),
        finished_at=_utc(run.finished_at),
        heartbeat_at=_utc(run.heartbeat_at),
        lease_owner=run.lease_owner,
        lease_expires_at=_utc(run.lease_expires_at),
        read_at=now,
    )


def _individual_record(row: Individual) -> IndividualRecord:
    return IndividualRecord(
        generation=row.generation,
        slot=row.slot,
        proxy_id=row.proxy_id,
        genotype=row.genotype,
        parents=tuple((int(g), int(s)) for g, s in row.parents),
        seed=row.seed,
        fitness=row.fitness,
        probe_fitness=row.probe_fitness,
        status=IndividualStatus(row.status),
        pruning_rule=row.pruning_rule,
        seconds=row.seconds,
    )


def _held(lease: RunLease) -> ColumnElement[bool]:
    """The WHERE clause of a write allowed only to the lease holder (the fencing token)."""
    return (SearchRun.id == lease.run_id) & (SearchRun.lease_owner == lease.owner)


class RunRepository:
    """Search runs, their individuals and leases, on one database (a session factory)."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    # -- reading ------------------------------------------------------------------------------

    def _query(self) -> Any:
        return (
            select(SearchRun, Benchmark.name, Proxy.expression)
            .join(Benchmark, Benchmark.id == SearchRun.benchmark_id)
            .outerjoin(Proxy, Proxy.id == SearchRun.best_proxy_id)
        )

    def get(self, run_id: int) -> RunRecord:
        """The run ``run_id``.

        Raises:
            NotFoundError: no such run (naming the range of stored ones).
        """
        with transaction(self.sessions) as s:
            row = s.execute(self._query().where(SearchRun.id == run_id)).first()
            if row is not None:
                return _run_record(row, _db_now(s))
            ids = s.scalars(select(SearchRun.id).order_by(SearchRun.id)).all()
        known = f"{ids[0]}..{ids[-1]}" if ids else "none"
        raise NotFoundError(f"no search run {run_id} (runs: {known})")

    def list_runs(self) -> list[RunRecord]:
        """Every run, oldest first."""
        with transaction(self.sessions) as s:
            now = _db_now(s)
            rows = s.execute(self._query().order_by(SearchRun.id)).all()
            return [_run_record(row, now) for row in rows]

    def status(self, run_id: int) -> RunStatus:
        """The stored status of a run (``stale`` is derived: see :meth:`get`)."""
        with transaction(self.sessions) as s:
            status = s.scalars(select(SearchRun.status).where(SearchRun.id == run_id)).one()
            return RunStatus(status)

    def individuals(self, run_id: int) -> list[IndividualRecord]:
        """A run's individuals in (generation, slot) order."""
        with transaction(self.sessions) as s:
            rows = s.scalars(
                select(Individual)
                .where(Individual.run_id == run_id)
                .order_by(Individual.generation, Individual.slot)
            ).all()
            return [_individual_record(r) for r in rows]

    def architecture_count(self, benchmark_id: int) -> int:
        """How many architectures the benchmark has."""
        with transaction(self.sessions) as s:
            n = s.scalar(
                select(func.count())
                .select_from(Architecture)
                .where(Architecture.benchmark_id == benchmark_id)
            )
            return int(n or 0)

    def architectures(self, benchmark_id: int, metric: str) -> list[RunArchitecture]:
        """The benchmark's architectures in position order, with ground truth in ``metric``."""
        a, g = Architecture, GroundTruth
        with transaction(self.sessions) as s:
            rows = s.execute(
                select(a.id, a.key, a.position, a.config, a.n_layers, g.value)
                .outerjoin(g, (g.architecture_id == a.id) & (g.metric == metric))
                .where(a.benchmark_id == benchmark_id)
                .order_by(a.position)
            ).all()
        return [
            RunArchitecture(i, key, pos, dict(config), n_layers, value)
            for i, key, pos, config, n_layers, value in rows
        ]

    def evaluation_devices(
        self,
        run_id: int,
        *,
        batch_id: int,
        seed: int,
        builder: str,
        objective: str,
        linear_scope: str,
    ) -> dict[str, int]:
        """Evaluations of the run's candidates per device (``not recorded``: before 0005)."""
        e = Evaluation
        candidates = select(Individual.proxy_id).where(Individual.run_id == run_id).distinct()
        with transaction(self.sessions) as s:
            rows = s.execute(
                select(e.device, func.count())
                .where(
                    e.proxy_id.in_(candidates),
                    e.batch_id == batch_id,
                    e.seed == seed,
                    e.builder == builder,
                    e.objective == objective,
                    e.linear_scope == linear_scope,
                )
                .group_by(e.device)
            ).all()
        ordered = sorted(rows, key=lambda r: str(r[0]))
        return {device or "not recorded": int(n) for device, n in ordered}

    # -- writing without a lease -------------------------------------------------------------

    def create(
        self,
        *,
        benchmark_id: int,
        config: dict[str, Any],
        seed: int,
        code_version: str,
        library_versions: dict[str, Any],
        lease: tuple[str, float] | None = None,
    ) -> int:
        """Record a new pending run; its id.

        Args:
            lease: ``(owner, lease_s)`` to create the run already held by that coordinator.
        """
        with transaction(self.sessions) as s:
            run = SearchRun(
                benchmark_id=benchmark_id,
                config=config,
                seed=seed,
                status=RunStatus.PENDING,
                code_version=code_version,
                library_versions=library_versions,
            )
            if lease is not None:
                now = _db_now(s)
                run.lease_owner = lease[0]
                run.lease_expires_at = now + dt.timedelta(seconds=lease[1])
                run.heartbeat_at = now
            s.add(run)
            s.flush()
            return run.id

    def cancel(self, run_id: int) -> None:
        """Mark a run cancelled (a user's decision: not fenced); its coordinator stops."""
        with transaction(self.sessions) as s:
            s.execute(
                update(SearchRun).where(SearchRun.id == run_id).values(status=RunStatus.CANCELLED)
            )

    # -- the lease -----------------------------------------------------------------------------

    def acquire_lease(self, lease: RunLease) -> None:
        """Take the run's lease with one compare-and-set UPDATE: free, lapsed or already ours.

        Raises:
            RunLeaseHeldError: another coordinator's lease is live (naming it and when it lapses).
            NotFoundError: no such run.
        """
        with transaction(self.sessions) as s:
            now = _db_now(s)
            r = SearchRun
            free = or_(
                r.lease_owner.is_(None),
                r.lease_owner == lease.owner,
                r.lease_expires_at.is_(None),
                r.lease_expires_at <= now,
            )
            taken = s.execute(
                update(r)
                .where(r.id == lease.run_id, free)
                .values(
                    lease_owner=lease.owner,
                    lease_expires_at=now + dt.timedelta(seconds=lease.lease_s),
                    heartbeat_at=now,
                )
            )
            if _rowcount(taken) == 1:
                return
            holder = s.execute(
                select(r.lease_owner, r.lease_expires_at).where(r.id == lease.run_id)
            ).first()
        if holder is None:
            self.get(lease.run_id)  # raises NotFoundError naming the stored runs
            raise AssertionError("unreachable")
        lapses = _utc(holder[1])
        when = f"{lapses:%Y-%m-%d %H:%M:%S} UTC" if lapses is not None else "?"
        raise RunLeaseHeldError(
            f"search run {lease.run_id} is driven by another coordinator ({holder[0]}); its "
            f"lease lapses at {when} unless renewed; resume it once it shows as stale"
        )

    def renew_lease(self, lease: RunLease) -> bool:
        """Extend the lease and record a heartbeat; False when the lease is no longer ours."""
        with transaction(self.sessions) as s:
            return self._renew(s, lease)

    def release_lease(self, lease: RunLease) -> bool:
        """Give the run up (it stays as it is); False when the lease was no longer ours."""
        with transaction(self.sessions) as s:
            released = s.execute(
                update(SearchRun)
                .where(_held(lease))
                .values(lease_owner=None, lease_expires_at=None)
            )
            return _rowcount(released) == 1

    def _renew(self, s: Session, lease: RunLease) -> bool:
        now = _db_now(s)
        renewed = s.execute(
            update(SearchRun)
            .where(_held(lease))
            .values(lease_expires_at=now + dt.timedelta(seconds=lease.lease_s), heartbeat_at=now)
        )
        return _rowcount(renewed) == 1

    def _fence(self, s: Session, lease: RunLease) -> None:
        """Renew the lease inside a write's transaction, or refuse the write."""
        if self._renew(s, lease):
            return
        holder = s.scalar(select(SearchRun.lease_owner).where(SearchRun.id == lease.run_id))
        raise RunLeaseLostError(
            f"search run {lease.run_id}: this coordinator ({lease.owner}) lost the run's lease "
            f"to {holder or 'nobody (the lease lapsed)'}; stopped without writing"
        )

    # -- writing as the lease holder ------------------------------------------------------------

    def mark_running(self, lease: RunLease) -> None:
        """The holder starts (or resumes) the run.

        Raises:
            RunLeaseLostError: the lease is no longer held (nothing is written).
        """
        with transaction(self.sessions) as s:
            self._fence(s, lease)
            s.execute(
                update(SearchRun)
                .where(_held(lease))
                .values(status=RunStatus.RUNNING, started_at=_db_now(s), error=None)
            )

    def add_individuals(self, lease: RunLease, rows: Sequence[IndividualRecord]) -> None:
        """Write scored individuals (and a heartbeat) in one transaction.

        Raises:
            RunLeaseLostError: the lease is no longer held (nothing is written).
        """
        with transaction(self.sessions) as s:
            self._fence(s, lease)
            s.add_all(
                Individual(
                    run_id=lease.run_id,
                    generation=r.generation,
                    slot=r.slot,
                    proxy_id=r.proxy_id,
                    genotype=r.genotype,
                    parents=[list(p) for p in r.parents],
                    seed=r.seed,
                    fitness=r.fitness,
                    probe_fitness=r.probe_fitness,
                    status=r.status.value,
                    pruning_rule=r.pruning_rule,
                    seconds=r.seconds,
                )
                for r in rows
            )

    def record_result(
        self,
        lease: RunLease,
        *,
        best_proxy_id: int,
        best_fitness: float,
        selection: dict[str, Any],
    ) -> None:
        """Record the run's result and how it was chosen (the run stays running).

        Raises:
            RunLeaseLostError: the lease is no longer held (nothing is written).
        """
        with transaction(self.sessions) as s:
            self._fence(s, lease)
            s.execute(
                update(SearchRun)
                .where(_held(lease))
                .values(best_proxy_id=best_proxy_id, best_fitness=best_fitness, selection=selection)
            )

    def finish(self, lease: RunLease, status: RunStatus, error: str | None = None) -> None:
        """End the holder's drive: ``completed`` (finished now) or ``failed`` (with ``error``);
        the lease is released.

        Raises:
            RunLeaseLostError: the lease is no longer held (nothing is written).
        """
        values: dict[str, Any] = {"status": status, "lease_owner": None, "lease_expires_at": None}
        with transaction(self.sessions) as s:
            self._fence(s, lease)
            if status == RunStatus.COMPLETED:
                values["finished_at"] = _db_now(s)
            if error is not None:
                values["error"] = error[:2000]
            s.execute(update(SearchRun).where(_held(lease)).values(**values))
