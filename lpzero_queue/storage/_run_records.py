"""The records of search runs: typed rows the runs repository returns and takes, and run leases.

Plain frozen dataclasses with no database access: the search coordinator and the CLI hold these,
never ORM rows.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import socket
from dataclasses import dataclass
from typing import Any

from lpzero_queue.errors import LpzqError
from lpzero_queue.storage.status import IndividualStatus, JobStatus, RunStatus

STALE = "stale"  # the status shown for a running run whose lease lapsed (never stored)


class RunLeaseHeldError(LpzqError):
    """Another coordinator holds the run's lease (it has not lapsed)."""


class RunLeaseLostError(LpzqError):
    """This coordinator no longer holds the run's lease: another one took the run over."""


def new_lease_owner() -> str:
    """A lease token naming this host and process, unique per coordinator: ``host:pid:random``."""
    return f"{socket.gethostname()[:80]}:{os.getpid()}:{secrets.token_hex(4)}"


@dataclass(frozen=True)
class RunLease:
    """A coordinator's claim on a run: the run, the coordinator's token, the lease length."""

    run_id: int
    owner: str
    lease_s: float


@dataclass(frozen=True)
class RunRecord:
    """A search run as stored, read at ``read_at`` (the clock that decides :attr:`stale`)."""

    id: int
    benchmark_id: int
    benchmark: str
    config: dict[str, Any]  # the resolved SearchConfig as stored
    seed: int
    status: RunStatus
    best_proxy_id: int | None
    best_expression: str | None
    best_fitness: float | None
    selection: dict[str, Any] | None  # how the result was chosen; None before revision 0004
    error: str | None
    created_at: dt.datetime | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    heartbeat_at: dt.datetime | None
    lease_owner: str | None
    lease_expires_at: dt.datetime | None
    read_at: dt.datetime

    @property
    def lease_live(self) -> bool:
        """Whether a coordinator holds the run now."""
        return (
            self.lease_owner is not None
            and self.lease_expires_at is not None
            and self.lease_expires_at > self.read_at
        )

    @property
    def stale(self) -> bool:
        """A running run that no coordinator drives (its lease lapsed, or it never had one)."""
        return self.status == RunStatus.RUNNING and not self.lease_live

    @property
    def shown_status(self) -> str:
        """The status for display: ``stale`` for a stale run, else the stored one."""
        return STALE if self.stale else self.status.value


@dataclass(frozen=True)
class IndividualRecord:
    """A member of a run's population: where it sits, what it is and how it scored."""

    generation: int
    slot: int
    proxy_id: int
    genotype: str  # as sampled, before canonicalisation
    parents: tuple[tuple[int, int], ...]  # (generation, slot) of each parent
    seed: int
    fitness: float | None  # None unless status is ok
    probe_fitness: float | None
    status: IndividualStatus
    pruning_rule: str | None
    seconds: float | None


@dataclass(frozen=True)
class RunArchitecture:
    """An architecture of a run's benchmark with its ground truth in the benchmark's metric."""

    id: int
    key: str
    position: int  # 0-based order in the benchmark's source file
    config: dict[str, Any]
    n_layers: int
    truth: float | None  # None when the architecture has no figure in that metric


@dataclass(frozen=True)
class JobProgress:
    """Where one training job stands: its last checkpointed step."""

    job_key: str
    status: JobStatus
    step: int

    @property
    def finished(self) -> bool:
        """Whether the job reached an end (completed, failed, timed out or cancelled)."""
        return self.status not in (JobStatus.PENDING, JobStatus.RUNNING)
