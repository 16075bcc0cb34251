"""Correlation reports: evaluations and correlations are stored, and reused on a second run."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from lpzero_queue.benchmarks.splits import SplitSpec
from lpzero_queue.execution.local import LocalExecutor
from lpzero_queue.proxies.scoring import ScoreRow, ScoringSetup, WorkUnit
from lpzero_queue.proxies.spec import baseline_spec, resolve_proxy
from lpzero_queue.storage import Correlation, Evaluation, InputBatch, transaction
from lpzero_queue.workflows.catalog import load_shipped_benchmark
from lpzero_queue.workflows.proxy_report import run_report


class CountingExecutor:
    """The in-process executor, counting the units it is asked to run."""

    name = "counting"

    def __init__(self) -> None:
        self.inner = LocalExecutor(cache_bytes=2**30)
        self.units: list[WorkUnit] = []

    def run(self, units: Sequence[WorkUnit]) -> Iterator[tuple[WorkUnit, list[ScoreRow]]]:
        self.units.extend(units)
        yield from self.inner.run(units)


@pytest.fixture
def sessions(migrated_engine: Engine) -> sessionmaker[Session]:
    factory = sessionmaker(migrated_engine, expire_on_commit=False)
    load_shipped_benchmark(factory, "gpt2-wt103")
    return factory


def test_report_stores_and_reuses_evaluations(sessions: sessionmaker[Session]) -> None:
    specs = [resolve_proxy("lpzero-gpt2"), baseline_spec("params"), baseline_spec("n_layers")]
    setup = ScoringSetup.resolve("gpt2", batch_size=2, seq_len=16)
    kwargs = dict(split="search", split_spec=SplitSpec("sample", 6, 3), seeds=[0, 1], setup=setup)
    first = CountingExecutor()
    report = run_report(sessions, "gpt2-wt103", specs, executor=first, **kwargs)
    assert report.n_archs == 6 and len(report.batch_hashes) == 2
    assert first.units, "the first run must compute"
    by_label = {r.proxy.label: r for r in report.rows}
    assert by_label["params"].n == 6 and by_label["params"].failed == 0
    assert by_label["params"].kendall is not None and len(by_label["params"].per_seed_kendall) == 2
    assert by_label["lpzero-gpt2"].n + by_label["lpzero-gpt2"].failed == 6
    with transaction(sessions) as s:
        assert s.scalar(select(func.count()).select_from(Evaluation)) == 3 * 6 * 2
        assert s.scalar(select(func.count()).select_from(InputBatch)) == 2
        stored = s.scalars(select(Correlation)).all()
        assert len(stored) == 3
        assert {c.split for c in stored} == {"search:sample6-seed3"}
        assert all(c.builder == "gpt2" and c.objective == "lm" for c in stored)
        assert all(c.seeds == [0, 1] and len(c.batch_hashes) == 2 for c in stored)
        ok = s.scalars(select(Evaluation).where(Evaluation.status == "ok")).all()
        assert ok and all(e.score is not None for e in ok)

    second = CountingExecutor()
    again = run_report(sessions, "gpt2-wt103", specs, executor=second, **kwargs)
    assert second.units == [], "stored evaluations are reused, not recomputed"
    assert [r.kendall for r in again.rows] == [r.kendall for r in report.rows]
    with transaction(sessions) as s:
        assert s.scalar(select(func.count()).select_from(Evaluation)) == 3 * 6 * 2
        assert s.scalar(select(func.count()).select_from(Correlation)) == 6


def test_trivial_baseline_matches_a_direct_correlation(sessions: sessionmaker[Session]) -> None:
    from scipy.stats import kendalltau

    from lpzero_queue.benchmarks.records import load_shipped

    setup = ScoringSetup.resolve("gpt2", batch_size=2, seq_len=16)
    report = run_report(
        sessions,
        "gpt2-wt103",
        [baseline_spec("nonembedding_params")],
        split="all",
        split_spec=SplitSpec(),
        seeds=[0],
        setup=setup,
        executor=CountingExecutor(),
    )
    records = load_shipped("gpt2-wt103").records
    # More non-embedding parameters -> lower perplexity: tau(params, -ppl).
    expected = kendalltau(
        [r.extra["params"]["nonembedding"] for r in records],
        [-r.ground_truth["valid_ppl"] for r in records],
    ).statistic
    assert report.rows[0].n == 200
    assert report.rows[0].kendall == pytest.approx(expected, abs=1e-12)
