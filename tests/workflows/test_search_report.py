"""lpzq report: plots and summary of a fake RPS run and its no-RPS ablation, on both backends."""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from lpzero_queue.errors import NotFoundError
from lpzero_queue.storage import (
    Architecture,
    Benchmark,
    Correlation,
    Evaluation,
    GroundTruth,
    Individual,
    IndividualOutcome,
    InputBatch,
    Proxy,
    SearchRun,
    make_engine,
    transaction,
    upgrade,
)
from lpzero_queue.workflows.search_report import fitness_curves, write_report
from tests.conftest import run_lpzq

BEST = "sum(mean(grad), l1_norm(act))"
SPLIT = "test:sample10-seed0"
N_ARCHS = 30
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CONFIG = {
    "population": 4,
    "children": 8,
    "per_generation": 4,
    "rps": True,
    "fitness": "spearman",
    "sample": 10,
    "split": "sample",
    "seed": 0,
    "builder": "faithful",
    "objective": "ones",
    "batch_size": 2,
    "seq_len": 16,
}


def _proxy(s: Session, expression: str, name: str | None, kind: str = "builtin") -> Proxy:
    row = Proxy(
        expression=expression,
        expression_hash=hashlib.sha256(expression.encode()).hexdigest(),
        name=name,
        kind=kind,
        origin="builtin" if name else "searched",
        direction="higher",
    )
    s.add(row)
    s.flush()
    return row


def add_fake_runs(sessions: sessionmaker[Session]) -> tuple[int, int]:
    """A FlexiBERT-like benchmark, an RPS run with held-out figures and its no-RPS ablation.

    Returns:
        (rps run id, no-RPS run id).
    """
    rng = np.random.default_rng(0)
    t0 = dt.datetime(2026, 11, 28, 10, 0, tzinfo=dt.UTC)
    with transaction(sessions) as s:
        bench = Benchmark(name="fakebert", space="flexibert", metric="glue", direction="higher")
        s.add(bench)
        s.flush()
        archs = []
        for pos in range(N_ARCHS):
            depth = 2 if pos % 2 else 4
            arch = Architecture(
                benchmark_id=bench.id,
                key=str(pos),
                position=pos,
                config={"pos": pos},
                config_hash=f"{pos:064d}",
                n_layers=depth,
                hidden_size=128,
                params_total=1000 * (pos + 1),
                params_nonembedding=500 * (pos + 1),
            )
            s.add(arch)
            archs.append(arch)
        s.flush()
        truth = {a.id: 70.0 + a.n_layers + float(rng.normal()) for a in archs}
        s.add_all(GroundTruth(architecture_id=a, metric="glue", value=v) for a, v in truth.items())
        best = _proxy(s, BEST, None, kind="expression")
        other = _proxy(s, "mean(abs(act))", None, kind="expression")
        baselines = {n: _proxy(s, n, n) for n in ("params", "n_layers", "layers_x_hidden")}
        baselines["lpzero-flexibert"] = _proxy(
            s, "published(expr)", "lpzero-flexibert", "expression"
        )
        batch = InputBatch(
            benchmark_id=bench.id,
            seed=0,
            batch_size=2,
            seq_len=16,
            tokenizer="bert",
            content_hash="ab" * 32,
        )
        s.add(batch)
        s.flush()
        for a in archs:
            s.add(
                Evaluation(
                    proxy_id=best.id,
                    architecture_id=a.id,
                    batch_id=batch.id,
                    seed=0,
                    builder="faithful",
                    objective="ones",
                    status="ok",
                    score=math.exp(truth[a.id] / 10) + float(rng.normal()),
                )
            )
        run_ids = []
        for rps, best_fit in ((True, 0.8), (False, 0.7)):
            run = SearchRun(
                benchmark_id=bench.id,
                config={**CONFIG, "rps": rps},
                seed=0,
                status="completed",
                code_version="test",
                best_proxy_id=best.id,
                best_fitness=best_fit,
                started_at=t0,
                finished_at=t0 + dt.timedelta(seconds=125),
            )
            s.add(run)
            s.flush()
            run_ids.append(run.id)
            for gen in range(3):
                for slot in range(4):
                    status, rule = "ok", None
                    if rps and slot == 3:
                        status, rule = "pruned", ("no_gradient" if gen else "constant_probe")
                    elif slot == 2 and gen == 1:
                        status = "error"
                    fit = (
                        None
                        if status != "ok"
                        else round(best_fit - 0.1 * (2 - gen) - 0.05 * slot, 3)
                    )
                    s.add(
                        Individual(
                            run_id=run.id,
                            generation=gen,
                            slot=slot,
                            proxy_id=(best if fit == best_fit else other).id,
                            genotype="g",
                            parents=[],
                            seed=gen * 10 + slot,
                            fitness=fit,
                            status=status,
                            pruning_rule=rule,
                            seconds=0.5,
                        )
                    )
        for label, pid, tau, within in [
            ("best", best.id, 0.81, 0.62),
            *((n, p.id, 0.5 + 0.05 * i, 0.3) for i, (n, p) in enumerate(baselines.items())),
        ]:
            s.add(
                Correlation(
                    proxy_id=pid,
                    benchmark_id=bench.id,
                    split=SPLIT,
                    metric="glue",
                    builder="faithful",
                    objective="ones",
                    seeds=[0],
                    batch_hashes=[batch.content_hash],
                    n=20,
                    spearman=tau + 0.1,
                    kendall=tau,
                    kendall_tiefair=tau - 0.01,
                    within_kendall=within,
                    within_tiefair=within - 0.02,
                    within_fine_tiefair=within / 2,
                    top10_overlap=0.5,
                    details={"run_id": run_ids[0], "label": label},
                )
            )
    return run_ids[0], run_ids[1]


@pytest.fixture
def sessions(migrated_engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(migrated_engine, expire_on_commit=False)


def _assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, path
    assert len(data) > 5000, (path, len(data))


def test_report_writes_plots_and_summary(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    rps_run, ablation = add_fake_runs(sessions)
    paths = write_report(sessions, rps_run, tmp_path / "out")
    names = [p.name for p in paths]
    assert names == ["fitness.png", "scatter_test.png", "baselines_test.png", "summary.md"]
    for p in paths[:-1]:
        _assert_png(p)
    summary = paths[-1].read_text()
    assert BEST in summary
    assert f"Run {ablation} (rps=False" in summary
    assert (
        f"| best (run {rps_run}) | 20 | 0.910 | 0.810 | 0.800 | 0.600 | 0.310 | 0.500 |" in summary
    )
    assert "| layers_x_hidden | 20 |" in summary and "| lpzero-flexibert | 20 |" in summary
    assert "| constant_probe | 1 |" in summary and "| no_gradient | 2 |" in summary
    assert "20 of 20 test architectures have an ok score" in summary
    assert "wall time: 125.0 s" in summary


def test_report_states_missing_pieces(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    rps_run, ablation = add_fake_runs(sessions)
    with transaction(sessions) as s:
        # Break the counterpart: a different population is not the same configuration.
        run = s.get(SearchRun, rps_run)
        assert run is not None
        run.config = {**run.config, "population": 5}
    paths = write_report(sessions, ablation, tmp_path)
    assert [p.name for p in paths] == ["fitness.png", "summary.md"]
    summary = paths[-1].read_text()
    assert "No test-split correlations are stored" in summary
    assert "No counterpart run" in summary
    assert "No pruning rule fired (RPS is off)." in summary


def test_unknown_run_names_the_existing_ids(sessions: sessionmaker[Session]) -> None:
    with pytest.raises(NotFoundError, match="unknown run 7; no search runs yet"):
        write_report(sessions, 7, "unused")
    add_fake_runs(sessions)
    with pytest.raises(NotFoundError, match=r"unknown run 99; existing run ids: 1-2 \(2 runs\)"):
        write_report(sessions, 99, "unused")


def test_fitness_curves_use_the_top_population() -> None:
    rows = [
        IndividualOutcome(0, "ok", 0.1, None, None),
        IndividualOutcome(0, "ok", 0.5, None, None),
        IndividualOutcome(0, "pruned", None, "r", None),
        IndividualOutcome(1, "ok", 0.3, None, None),
        IndividualOutcome(2, "error", None, None, None),
    ]
    gens, best, median = fitness_curves(rows, population=2)
    assert gens == [0, 1, 2]
    assert best == [0.5, 0.5, 0.5]
    assert median == pytest.approx([0.3, 0.4, 0.4])


def test_cli_report_and_unknown_run(cli_env: dict[str, str], tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.sqlite3'}"
    engine = make_engine(url)
    upgrade(engine)
    rps_run, _ = add_fake_runs(sessionmaker(engine, expire_on_commit=False))
    engine.dispose()
    env = {**cli_env, "LPZQ_DATABASE_URL": url}
    out = run_lpzq("report", "99", "--out", str(tmp_path / "r"), env=env)
    assert out.returncode == 1
    assert out.stderr.strip() == "lpzq: error: unknown run 99; existing run ids: 1-2 (2 runs)"
    out = run_lpzq("report", str(rps_run), "--out", str(tmp_path / "r"), env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [
        str(tmp_path / "r" / n)
        for n in ("fitness.png", "scatter_test.png", "baselines_test.png", "summary.md")
    ]
