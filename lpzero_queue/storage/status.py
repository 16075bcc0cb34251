"""Status values shared by the schema (CHECK constraints), the migrations and the code.

Each is a ``StrEnum``: a member compares equal to its stored string, so rows read back as plain
strings compare with members directly (``row.status == RunStatus.RUNNING``).
"""

from __future__ import annotations

import enum


class EvaluationStatus(enum.StrEnum):
    """One proxy on one architecture: a result (``ok`` and the declared outcomes) or in flight."""

    PENDING = "pending"
    RUNNING = "running"
    OK = "ok"
    NONFINITE = "nonfinite"  # the score is NaN or infinite
    CONSTANT = "constant"  # the proxy gives every architecture the same score
    ERROR = "error"  # a guard rejected the input (a declared, deterministic outcome)
    PRUNED = "pruned"  # rejected by a pruning rule before it was scored
    TIMEOUT = "timeout"  # over the per-evaluation time limit


class IndividualStatus(enum.StrEnum):
    """One member of a search generation: how its fitness came out."""

    OK = "ok"
    PRUNED = "pruned"
    NONFINITE = "nonfinite"
    CONSTANT = "constant"
    ERROR = "error"
    TIMEOUT = "timeout"


class RunStatus(enum.StrEnum):
    """A search run as stored. ``stale`` is not stored: it is a running run whose lease lapsed."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class JobStatus(enum.StrEnum):
    """A subnet-training job."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"


class UnitStatus(enum.StrEnum):
    """A leased unit of proxy-scoring work."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class UnitKind(enum.StrEnum):
    """What a work unit holds (revision 0006 dropped the unused ``train``)."""

    PROXY = "proxy"


def values(status: type[enum.StrEnum]) -> tuple[str, ...]:
    """The stored strings of ``status``, in declaration order (for CHECK constraints)."""
    return tuple(member.value for member in status)
