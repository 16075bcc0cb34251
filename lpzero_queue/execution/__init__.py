"""Execution: the executor interface and its in-process and Celery forms.

Exports are resolved lazily: the worker's parent process imports ``execution.celery_app`` and
``execution.tasks`` and must not import torch (which the scoring code does) on the way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lpzero_queue._lazy import lazy_getattr

if TYPE_CHECKING:
    from lpzero_queue.execution.base import Executor, UnitFailedError
    from lpzero_queue.execution.celery_app import make_celery
    from lpzero_queue.execution.celery_executor import CeleryExecutor
    from lpzero_queue.execution.local import LocalExecutor

__all__ = ["CeleryExecutor", "Executor", "LocalExecutor", "UnitFailedError", "make_celery"]

__getattr__ = lazy_getattr(
    __name__,
    {
        "CeleryExecutor": "celery_executor",
        "Executor": "base",
        "LocalExecutor": "local",
        "UnitFailedError": "base",
        "make_celery": "celery_app",
    },
    globals(),
)
