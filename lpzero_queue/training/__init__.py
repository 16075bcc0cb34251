"""Training: the train queue's work (benchmark architectures, LLaMA pretraining, sub-networks).

Exports resolve lazily (PEP 562): importing this package does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lpzero_queue._lazy import lazy_getattr

_EXPORTS = {
    "Hyperparameters": "loop",
    "TrainingTimeoutError": "loop",
    "train": "loop",
    "SpaceScale": "spaces",
    "sample_architectures": "spaces",
    "build_llama": "llama",
    "load_llama": "llama",
    "apply_subnet": "llama",
    "count_params": "llama",
    "LlamaTapped": "llama_proxy",
    "ElasticSpace": "subnet",
    "Subnet": "subnet",
    "elastic_space": "subnet",
    "score_subnets": "subnet",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS, globals())

if TYPE_CHECKING:
    from lpzero_queue.training.llama import apply_subnet, build_llama, count_params, load_llama
    from lpzero_queue.training.llama_proxy import LlamaTapped
    from lpzero_queue.training.loop import Hyperparameters, TrainingTimeoutError, train
    from lpzero_queue.training.spaces import SpaceScale, sample_architectures
    from lpzero_queue.training.subnet import ElasticSpace, Subnet, elastic_space, score_subnets
