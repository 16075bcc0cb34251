"""The executor interface and the scoring rule every executor applies.

Both executors score a unit the same way (:func:`score_as_result`): with the same number of torch
threads (:func:`use_scoring_threads`), and with the same split between a *result* and a
*failure* (``proxies.outcomes`` holds the policy):

* a declared, deterministic outcome is a result, stored like any other and never retried: a
  non-finite score, a constant proxy, a time limit, or a guard that rejects the input (an
  expression that does not parse, an unknown baseline, a model without the part a proxy reads):
  ``error`` rows;
* anything else (out of memory, a device error, a killed or vanished process, a lost database
  or broker, and exceptions that mean a bug, such as ``TypeError`` or ``LookupError``) says
  nothing about the proxies: nothing is stored for the unit, it is retried, and when its
  attempts are exhausted the executor stops with :class:`UnitFailedError`. Running the command
  again (``lpzq search resume RUN`` for a search) retries it.

Nothing here imports torch at module level (the worker's parent process imports this module).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Protocol

from lpzero_queue.errors import LpzqError
from lpzero_queue.proxies.outcomes import DECLARED_ERRORS
from lpzero_queue.storage import EvaluationStatus
from lpzero_queue.storage.queue import attempts_text as attempts_text  # kept for importers

if TYPE_CHECKING:
    from lpzero_queue.proxies.cache import InputCache
    from lpzero_queue.proxies.scoring import ScoreRow, WorkUnit

# Exceptions escaping a whole unit's scoring that are results: the guards of the parser, the
# inputs and the baselines (``proxies.outcomes.DECLARED_ERRORS``). Out of memory, device errors
# and bugs (TypeError, LookupError...) are not among these.
DETERMINISTIC_ERRORS: tuple[type[BaseException], ...] = DECLARED_ERRORS


class Executor(Protocol):
    """Runs units of work; results may arrive in any order, each with its unit."""

    # How results were obtained, stored with each evaluation: executor and torch threads
    # (:func:`executor_label`), since float reductions depend on the thread count.
    name: str

    def run(self, units: Sequence[WorkUnit]) -> Iterator[tuple[WorkUnit, list[ScoreRow]]]:
        """Run ``units`` and yield each with its rows as soon as it is done.

        Raises:
            UnitFailedError: a unit failed for infrastructure reasons and has no attempts left.
        """
        ...


class UnitFailedError(LpzqError):
    """A unit failed for infrastructure reasons; nothing was stored for it."""


def describe(unit: WorkUnit) -> str:
    """A short description of a unit for one-line messages."""
    proxies = len(unit.expressions) + len(unit.baselines)
    return (
        f"{len(unit.archs)} {unit.setup.space} architectures x {proxies} proxies, seed {unit.seed}"
    )


def executor_label(name: str, threads: int) -> str:
    """How results were obtained, as stored in ``evaluations.worker``: executor and threads."""
    return f"{name}:threads={threads}"


def error_rows(
    unit: WorkUnit, message: str, status: EvaluationStatus = EvaluationStatus.ERROR
) -> list[ScoreRow]:
    """One row per (architecture, proxy) of a unit whose scoring raised: ``status``, no score."""
    from lpzero_queue.proxies.scoring import ScoreRow

    proxies = [*unit.expressions, *unit.baselines]
    return [ScoreRow(a.id, p, None, status, message) for a in unit.archs for p in proxies]


def score_as_result(unit: WorkUnit, cache: InputCache, device: str = "cpu") -> list[ScoreRow]:
    """Score ``unit``; a deterministic exception becomes ``error`` rows, anything else raises."""
    from lpzero_queue.proxies.scoring import score_unit

    try:
        return score_unit(unit, cache, device)
    except DETERMINISTIC_ERRORS as exc:
        return error_rows(unit, f"{type(exc).__name__}: {exc}")
    finally:
        release_free_heap()


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        return None


def release_free_heap() -> bool:
    """Give the heap's free pages back to the system (glibc ``malloc_trim``); False elsewhere.

    Scoring allocates and frees float64 temporaries of many sizes, some hundreds of MB; glibc
    serves them from its heap and keeps the freed pages, so a scoring process grew by about half
    a GB per GPT-2 generation without holding more live tensors (measured: 0.70 -> 0.94 GB over 8
    batches of 40 expressions on one architecture, flat 0.49 GB with mmap'd blocks). Trimming
    after each unit keeps the resident size to what is alive.
    """
    trim = _malloc_trim()
    return bool(trim is not None and trim(0) >= 0)


def resolve_device(device: str) -> str:
    """``cpu`` or ``cuda`` for a ``device`` setting (``auto``: cuda when one is visible)."""
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def use_scoring_threads(threads: int) -> int:
    """Set this process's intra-op torch threads for scoring; returns the count in force.

    Args:
        threads: the ``scoring_threads`` of the settings (``torch_threads``, or 1 when 0).
    """
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()
