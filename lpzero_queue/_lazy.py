"""Lazy package exports (PEP 562): importing a package does not import torch or Celery."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_getattr(
    package: str, exports: dict[str, str], namespace: dict[str, Any]
) -> Callable[[str], Any]:
    """A module ``__getattr__`` resolving ``exports`` (name -> submodule) on first use.

    Args:
        package: the package's ``__name__``.
        exports: exported name -> submodule name relative to the package.
        namespace: the package's ``globals()``; resolved names are cached there.
    """

    def resolve(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        namespace[name] = value
        return value

    return resolve
