"""Benchmarks: ground truth (shipped and imported), architecture builders and input batches.

Pure: nothing here reads the database (storing benchmarks is :mod:`lpzero_queue.workflows.catalog`).

Exports resolve lazily (PEP 562) so that importing this package does not import torch: the CLI
stays fast for commands that never build a model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lpzero_queue._lazy import lazy_getattr

_EXPORTS = {
    # records: ground-truth files and user imports
    "SHIPPED": "records",
    "SPACES": "records",
    "ArchitectureRecord": "records",
    "BenchmarkDataError": "records",
    "BenchmarkSpec": "records",
    "RecordError": "records",
    "config_hash": "records",
    "load_shipped": "records",
    "parse_import_file": "imports",
    "structural_basics": "records",
    "validate_config": "records",
    # builders
    "BUILDERS": "builders",
    "build_model": "builders",
    "resolve_builder": "builders",
    "structural_summary": "builders",
    "Tap": "taps",
    "taps": "taps",
    # batches
    "TOKENIZERS": "batches",
    "InputBatch": "batches",
    "lm_labels": "batches",
    "load_tokenizer": "batches",
    "make_batch": "batches",
    "mlm_mask": "batches",
    "text_split": "batches",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS, globals())


if TYPE_CHECKING:
    from lpzero_queue.benchmarks.batches import (
        TOKENIZERS,
        InputBatch,
        lm_labels,
        load_tokenizer,
        make_batch,
        mlm_mask,
        text_split,
    )
    from lpzero_queue.benchmarks.builders import (
        BUILDERS,
        build_model,
        resolve_builder,
        structural_summary,
    )
    from lpzero_queue.benchmarks.imports import parse_import_file
    from lpzero_queue.benchmarks.records import (
        SHIPPED,
        SPACES,
        ArchitectureRecord,
        BenchmarkDataError,
        BenchmarkSpec,
        RecordError,
        config_hash,
        load_shipped,
        structural_basics,
        validate_config,
    )
    from lpzero_queue.benchmarks.taps import Tap, taps
