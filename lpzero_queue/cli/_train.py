"""Training options shared by the commands that queue training jobs (bench create, subnet)."""

from __future__ import annotations

from typing import Any


def hyperparameters(**given: Any) -> dict[str, Any]:
    """Validated hyper-parameters as plain JSON (LpzqError naming a bad one)."""
    from lpzero_queue.training.loop import Hyperparameters

    return Hyperparameters.from_dict({k: v for k, v in given.items() if v is not None}).to_dict()
