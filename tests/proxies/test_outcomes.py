"""The failure policy: which exceptions are stored outcomes and which are retried failures."""

from __future__ import annotations

import pytest

from lpzero_queue.errors import LpzqError
from lpzero_queue.proxies._engine import ProxyInputError
from lpzero_queue.proxies.outcomes import ProxyRejectedError, is_proxy_outcome
from lpzero_queue.proxies.parser import ExpressionSyntaxError

OutOfMemoryError = type("OutOfMemoryError", (RuntimeError,), {})  # torch.cuda's, by name
SoftTimeLimitExceeded = type("SoftTimeLimitExceeded", (Exception,), {})  # Celery's, by name


@pytest.mark.parametrize(
    "exc",
    [
        ProxyRejectedError("model has no LayerNorm"),
        ProxyInputError("input 'grad' is missing"),
        ExpressionSyntaxError(0, "unexpected end", ()),
        ValueError("operator 'x' refuses this shape"),
        ZeroDivisionError("division by zero"),
        LpzqError("a declared failure"),
        RuntimeError("mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)"),
        SoftTimeLimitExceeded(),
    ],
)
def test_declared_outcomes_are_results(exc: BaseException) -> None:
    assert is_proxy_outcome(exc)


@pytest.mark.parametrize(
    "exc",
    [
        TypeError("unsupported operand type(s)"),  # a bug
        KeyError("act"),
        IndexError("list index out of range"),
        AttributeError("'NoneType' object has no attribute 'grad'"),
        AssertionError(),
        NotImplementedError(),
        RecursionError(),
        MemoryError("cannot allocate 12 GiB"),
        OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError("CUDA error: an illegal memory access was encountered"),
        RuntimeError("cuDNN error: CUDNN_STATUS_INTERNAL_ERROR"),
        RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8 GB"),
        OSError("No space left on device"),
    ],
)
def test_bugs_and_infrastructure_failures_are_not_results(exc: BaseException) -> None:
    assert not is_proxy_outcome(exc)
