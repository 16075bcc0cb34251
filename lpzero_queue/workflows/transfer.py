"""Proxy transfer: chosen proxies scored on every benchmark of a space, held out where fitted.

A proxy found by a search run was fitted on its run's search split. On that benchmark every proxy
of the matrix is scored on the complement (the test split), so no column ranks architectures a
proxy was fitted on; on the other benchmarks, on all their architectures. Each column is one
:func:`~lpzero_queue.workflows.proxy_report.run_report`: stored evaluations are reused, and every
figure is stored as a correlation row whose split label and details say how it was obtained.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from lpzero_queue.benchmarks.splits import SplitSpec
from lpzero_queue.execution.base import Executor
from lpzero_queue.proxies.comparison import Report
from lpzero_queue.proxies.scoring import ScoringSetup
from lpzero_queue.proxies.spec import TRIVIAL_BASELINES, ProxySpec, baseline_spec
from lpzero_queue.storage import Sessions
from lpzero_queue.workflows.proxy_report import run_report

__all__ = ["Column", "TransferProxy", "plan_columns", "score_column", "transfer_specs"]


@dataclass(frozen=True)
class TransferProxy:
    """A proxy of the matrix and, for the best of a search run, where it was fitted."""

    spec: ProxySpec
    label: str
    run_id: int | None = None
    fitted_on: str | None = None  # the run's benchmark
    search_split: SplitSpec | None = None  # the architectures the run fitted on


@dataclass(frozen=True)
class Column:
    """One benchmark of the matrix, on all its architectures or held out from search splits."""

    benchmark: str
    split: str  # "all", or "test": the complement of search_split
    search_split: SplitSpec
    held_out_runs: tuple[int, ...] = ()

    @property
    def label(self) -> str:
        """The column's heading."""
        if self.split == "all":
            return self.benchmark
        return f"{self.benchmark} (held out: test:{self.search_split.label})"


def plan_columns(benchmarks: Sequence[str], proxies: Sequence[TransferProxy]) -> list[Column]:
    """One column per benchmark, or one per distinct search split fitted on it."""
    columns = []
    for bench in benchmarks:
        fitted: dict[SplitSpec, list[int]] = {}
        for p in proxies:
            if p.fitted_on == bench and p.search_split is not None and p.run_id is not None:
                fitted.setdefault(p.search_split, []).append(p.run_id)
        if not fitted:
            columns.append(Column(bench, "all", SplitSpec()))
        columns.extend(Column(bench, "test", s, tuple(runs)) for s, runs in fitted.items())
    return columns


def transfer_specs(proxies: Sequence[TransferProxy]) -> list[ProxySpec]:
    """The matrix's rows: the chosen proxies, then the trivial baselines not among them."""
    specs: list[ProxySpec] = []
    for spec in [p.spec for p in proxies] + [baseline_spec(n) for n in TRIVIAL_BASELINES]:
        if spec.text not in {s.text for s in specs}:
            specs.append(spec)
    return specs


def score_column(
    sessions: Sessions,
    column: Column,
    proxies: Sequence[TransferProxy],
    *,
    setup: ScoringSetup,
    seeds: Sequence[int],
    executor: Executor,
    max_archs: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Report:
    """Score every row of the matrix on one column; store the correlations (see module doc)."""
    details = {
        "obtained_by": "lpzq proxy transfer",
        "held_out_runs": list(column.held_out_runs),
        "run_of_proxy": {p.spec.text: p.run_id for p in proxies if p.run_id is not None},
    }
    return run_report(
        sessions,
        column.benchmark,
        transfer_specs(proxies),
        split=column.split,
        split_spec=column.search_split,
        seeds=seeds,
        setup=setup,
        executor=executor,
        progress=progress,
        details=details,
        max_archs=max_archs,
    )
