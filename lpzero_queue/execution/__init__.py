"""Execution: the executor interface and its in-process and Celery forms.

Exports are resolved lazily: the worker's parent process imports ``execution.celery_app`` and
``execution.tasks`` and must not import torch (which the scoring code does) on the way.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lpzero_queue.execution.base import Executor
    from lpzero_queue.execution.celery_app import make_celery
    from lpzero_queue.execution.celery_executor import CeleryExecutor
    from lpzero_queue.execution.local import LocalExecutor

__all__ = ["CeleryExecutor", "Executor", "LocalExecutor", "make_celery"]

_HOMES = {
    "CeleryExecutor": "lpzero_queue.execution.celery_executor",
    "Executor": "lpzero_queue.execution.base",
    "LocalExecutor": "lpzero_queue.execution.local",
    "make_celery": "lpzero_queue.execution.celery_app",
}


def __getattr__(name: str) -> object:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
