"""Which exceptions are proxy *outcomes* (stored results) and which are failures (retried).

One policy for every executor and every level of scoring (an expression's branch, a model's
inputs, a baseline, a whole unit):

* declared, deterministic outcomes are stored as a row's status: a guard that rejects the input
  (:class:`ProxyRejectedError` and the other ``ValueError``\\s the parser, the inputs, the
  operators and the baselines raise on purpose; an ``ArithmeticError``; torch refusing to run a
  model on its input, a ``RuntimeError`` that names no device) is ``error``; the soft time limit
  is ``timeout``; a non-finite score is ``nonfinite``;
* everything else says nothing about the proxy and is never stored as a result: out of memory,
  device (CUDA) errors, and exceptions that mean a bug (``TypeError``, ``LookupError``,
  ``AttributeError``, ``AssertionError``, ``NotImplementedError``...). The unit is retried up to
  its attempts cap and then fails (``execution.base.UnitFailedError``).

Pure: no torch, Celery or storage import (exceptions are recognised by type and name).
"""

from __future__ import annotations

from lpzero_queue.errors import LpzqError

__all__ = [
    "DECLARED_ERRORS",
    "ProxyRejectedError",
    "is_device_error",
    "is_out_of_memory",
    "is_proxy_outcome",
    "is_time_limit",
]


class ProxyRejectedError(ValueError):
    """A guard rejected a proxy's input (a missing input, a model without the part a proxy
    reads): a deterministic ``error`` result, never retried."""


# Raised on purpose by the guards of the parser, the inputs, the operators and the baselines.
DECLARED_ERRORS: tuple[type[Exception], ...] = (ValueError, ArithmeticError, LpzqError)

# Words of a RuntimeError raised by a device or its runtime (retrying elsewhere may succeed).
_DEVICE_WORDS = (
    "cuda",
    "cudnn",
    "cublas",
    "cufft",
    "cusolver",
    "cusparse",
    "nccl",
    "hip error",
    "device-side",
    "out of memory",
    "can't allocate memory",
    "mps backend",
)


def is_out_of_memory(exc: BaseException) -> bool:
    """Host or device memory ran out (``MemoryError``, torch's ``OutOfMemoryError``)."""
    return isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError"


def is_device_error(exc: BaseException) -> bool:
    """A RuntimeError from a device or its runtime library (CUDA, cuDNN, NCCL...)."""
    if not isinstance(exc, RuntimeError):
        return False
    text = f"{type(exc).__name__} {exc}".lower()
    return any(word in text for word in _DEVICE_WORDS)


def is_time_limit(exc: BaseException) -> bool:
    """The worker's soft time limit (Celery's ``SoftTimeLimitExceeded``): a ``timeout``."""
    return type(exc).__name__ == "SoftTimeLimitExceeded"


def is_proxy_outcome(exc: BaseException) -> bool:
    """True when ``exc`` is a declared outcome (an ``error`` or ``timeout`` row to store);
    False for an infrastructure failure or a bug (retried, never stored)."""
    if is_out_of_memory(exc) or is_device_error(exc):
        return False
    if is_time_limit(exc) or isinstance(exc, DECLARED_ERRORS):
        return True
    # torch reports a model that cannot run on its input (a shape mismatch) as a RuntimeError;
    # NotImplementedError and RecursionError are RuntimeErrors too, but mean a bug.
    return isinstance(exc, RuntimeError) and not isinstance(
        exc, NotImplementedError | RecursionError
    )
