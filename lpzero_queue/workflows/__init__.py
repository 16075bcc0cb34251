"""Workflows: what combines benchmarks and proxies with storage and execution.

The layers below know nothing of this package: ``benchmarks/``, ``proxies/`` and the GP of
``search/`` are pure; ``storage/`` holds all SQL behind repositories; ``execution/`` runs work
units. A workflow reads and writes through the repositories and hands scoring to an executor; the
CLI calls workflows. See ``docs/architecture.md``.

Exports resolve lazily (PEP 562) so importing this package does not import torch or Celery.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lpzero_queue._lazy import lazy_getattr

_EXPORTS = {
    # catalog: benchmarks in the database
    "BenchmarkOverview": "catalog",
    "LoadResult": "catalog",
    "ValueRange": "catalog",
    "benchmark_overview": "catalog",
    "benchmark_space": "catalog",
    "ensure_benchmark": "catalog",
    "get_benchmark": "catalog",
    "is_stored": "catalog",
    "load_shipped_benchmark": "catalog",
    "max_seq_len": "catalog",
    "space_benchmarks": "catalog",
    "store_benchmark": "catalog",
    # proxy_report: score proxies on a split, store evaluations and correlations
    "run_report": "proxy_report",
    # transfer: chosen proxies on every benchmark of a space
    "Column": "transfer",
    "TransferProxy": "transfer",
    "plan_columns": "transfer",
    "score_column": "transfer",
    "transfer_specs": "transfer",
    # search_report: plots and summary of a search run
    "BASELINE_NAMES": "search_report",
    "fitness_curves": "search_report",
    "write_report": "search_report",
    # search_run: create, drive, resume and summarise a search run
    "RunContext": "search_run",
    "RunResult": "search_run",
    "RunSummary": "search_run",
    "create_run": "search_run",
    "execute_run": "search_run",
    "load_context": "search_run",
    "run_summary": "search_run",
    # evaluations: score what is not stored yet, through an executor
    "Job": "evaluations",
    "ScoreTable": "evaluations",
    "ensure_batch": "evaluations",
    "ensure_proxies": "evaluations",
    "score_missing": "evaluations",
    # bench_create: plan and link the training jobs of lpzq bench create
    "CreatePlan": "bench_create",
    "plan_benchmark": "bench_create",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS, globals())


if TYPE_CHECKING:
    from lpzero_queue.workflows.bench_create import CreatePlan, plan_benchmark
    from lpzero_queue.workflows.catalog import (
        BenchmarkOverview,
        LoadResult,
        ValueRange,
        benchmark_overview,
        benchmark_space,
        ensure_benchmark,
        get_benchmark,
        is_stored,
        load_shipped_benchmark,
        max_seq_len,
        space_benchmarks,
        store_benchmark,
    )
    from lpzero_queue.workflows.evaluations import (
        Job,
        ScoreTable,
        ensure_batch,
        ensure_proxies,
        score_missing,
    )
    from lpzero_queue.workflows.proxy_report import run_report
    from lpzero_queue.workflows.search_report import BASELINE_NAMES, fitness_curves, write_report
    from lpzero_queue.workflows.search_run import (
        RunContext,
        RunResult,
        RunSummary,
        create_run,
        execute_run,
        load_context,
        run_summary,
    )
    from lpzero_queue.workflows.transfer import (
        Column,
        TransferProxy,
        plan_columns,
        score_column,
        transfer_specs,
    )
