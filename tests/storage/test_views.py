"""SQL views of revision 0002 on SQLite and PostgreSQL, with hand-inserted rows."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import Engine, inspect, select, text
from sqlalchemy.orm import Session, sessionmaker

from lpzero_queue.storage import (
    Benchmark,
    Correlation,
    Individual,
    Proxy,
    SearchRun,
    current_revision,
    downgrade,
    head_revision,
    transaction,
    upgrade,
)

VIEWS = {"v_proxy_leaderboard", "v_run_progress"}
T0 = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)


def _seed(engine: Engine) -> dict[str, int]:
    """A benchmark, two proxies, correlations of several ages, a run with three generations."""
    sessions = sessionmaker(engine, expire_on_commit=False)
    with transaction(sessions) as s:
        bench = Benchmark(name="b", space="flexibert", metric="glue", direction="higher")
        s.add(bench)
        s.flush()
        expr = Proxy(
            expression="mean(abs(act))",
            expression_hash="1" * 64,
            kind="expression",
            origin="searched",
            direction="higher",
        )
        lxh = Proxy(
            expression="layers_x_hidden",
            expression_hash="2" * 64,
            name="layers_x_hidden",
            kind="builtin",
            origin="builtin",
            direction="higher",
        )
        s.add_all([expr, lxh])
        s.flush()

        def corr(proxy: Proxy, kendall: float, at: dt.datetime, **kw: str) -> None:
            fields = {"split": "test:first50", "builder": "faithful", "objective": "ones", **kw}
            s.add(
                Correlation(
                    proxy_id=proxy.id,
                    benchmark_id=bench.id,
                    metric="glue",
                    n=450,
                    spearman=kendall + 0.1,
                    kendall=kendall,
                    within_kendall=0.5,
                    top10_overlap=0.3,
                    computed_at=at,
                    **fields,
                )
            )
            s.flush()

        corr(expr, 0.50, T0)
        corr(expr, 0.70, T0 + dt.timedelta(hours=1))  # newer: replaces 0.50
        corr(expr, 0.60, T0 - dt.timedelta(hours=1))  # older, inserted last: ignored
        corr(expr, 0.40, T0, builder="lpzero")  # another builder: its own row
        corr(lxh, 0.65, T0)
        corr(lxh, 0.66, T0)  # same timestamp: the newer id wins
        run = SearchRun(
            benchmark_id=bench.id,
            config={"population": 2},
            seed=0,
            status="running",
            code_version="t",
        )
        s.add(run)
        s.flush()
        rows = [  # (generation, status, fitness, seconds)
            (0, "ok", 0.2, 1.0),
            (0, "ok", 0.4, 3.0),
            (0, "pruned", None, None),
            (1, "ok", 0.3, 2.0),
            (1, "constant", None, 1.0),
            (1, "error", None, 1.0),
            (1, "nonfinite", None, 1.0),
            (2, "timeout", None, 4.0),
            (2, "ok", 0.9, 2.0),
        ]
        for slot, (gen, status, fit, sec) in enumerate(rows):
            s.add(
                Individual(
                    run_id=run.id,
                    generation=gen,
                    slot=slot,
                    proxy_id=expr.id,
                    genotype="g",
                    parents=[],
                    seed=slot,
                    fitness=fit,
                    status=status,
                    pruning_rule="r" if status == "pruned" else None,
                    seconds=sec,
                )
            )
        return {"run": run.id, "expr": expr.id, "lxh": lxh.id}


def _rows(engine: Engine, sql: str) -> list[tuple]:  # type: ignore[type-arg]
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql))]


def test_leaderboard_keeps_the_latest_correlation_per_key(migrated_engine: Engine) -> None:
    ids = _seed(migrated_engine)
    rows = _rows(
        migrated_engine,
        "SELECT benchmark, split, builder, objective, proxy_id, expression, name, kind, direction,"
        " n, kendall, within_kendall FROM v_proxy_leaderboard ORDER BY builder, kendall DESC",
    )
    assert rows == [
        (
            "b",
            "test:first50",
            "faithful",
            "ones",
            ids["expr"],
            "mean(abs(act))",
            None,
            "expression",
            "higher",
            450,
            0.70,
            0.5,
        ),
        (
            "b",
            "test:first50",
            "faithful",
            "ones",
            ids["lxh"],
            "layers_x_hidden",
            "layers_x_hidden",
            "builtin",
            "higher",
            450,
            0.66,
            0.5,
        ),
        (
            "b",
            "test:first50",
            "lpzero",
            "ones",
            ids["expr"],
            "mean(abs(act))",
            None,
            "expression",
            "higher",
            450,
            0.40,
            0.5,
        ),
    ]


def test_run_progress_counts_each_generation(migrated_engine: Engine) -> None:
    ids = _seed(migrated_engine)
    rows = _rows(
        migrated_engine,
        "SELECT run_id, benchmark, run_status, generation, candidates, evaluated_ok, pruned,"
        " nonfinite, errors, generation_best_fitness, best_fitness, mean_seconds"
        " FROM v_run_progress ORDER BY generation",
    )
    run = ids["run"]
    assert [r[:9] for r in rows] == [
        (run, "b", "running", 0, 3, 2, 1, 0, 0),
        (run, "b", "running", 1, 4, 1, 1, 1, 1),
        (run, "b", "running", 2, 2, 1, 0, 0, 1),
    ]
    # Generation 1's own best (0.3) is below the best so far (0.4).
    assert [r[9:] for r in rows] == [
        pytest.approx((0.4, 0.4, 2.0)),
        pytest.approx((0.3, 0.4, 1.25)),
        pytest.approx((0.9, 0.9, 3.0)),
    ]


def test_views_and_rows_survive_downgrade_to_0001_and_upgrade(engine: Engine) -> None:
    upgrade(engine)
    _seed(engine)
    assert len(_rows(engine, "SELECT * FROM v_proxy_leaderboard")) == 3
    downgrade(engine, "0001")  # through 0003 (drops linear_scope) and 0002 (drops the views)
    insp = inspect(engine)
    assert VIEWS.isdisjoint(insp.get_view_names())
    assert "linear_scope" not in {c["name"] for c in insp.get_columns("correlations")}
    assert len(_rows(engine, "SELECT * FROM correlations")) == 6  # the data stayed
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    assert set(inspect(engine).get_view_names()) >= VIEWS
    assert len(_rows(engine, "SELECT * FROM v_run_progress")) == 3
    scopes = _rows(engine, "SELECT DISTINCT linear_scope FROM v_proxy_leaderboard")
    assert [tuple(r) for r in scopes] == [("mixer",)]  # rows of before 0003 came from mixers


def test_views_are_readable_through_a_session(migrated_engine: Engine) -> None:
    _seed(migrated_engine)
    with Session(migrated_engine) as s:
        best = s.execute(text("SELECT MAX(best_fitness) FROM v_run_progress")).scalar_one()
    assert best == pytest.approx(0.9)


def test_leaderboard_keeps_one_row_per_linear_scope(migrated_engine: Engine) -> None:
    ids = _seed(migrated_engine)
    sessions = sessionmaker(migrated_engine, expire_on_commit=False)
    with transaction(sessions) as s:
        bench_id = s.scalar(select(Benchmark.id))
        s.add(
            Correlation(
                proxy_id=ids["expr"],
                benchmark_id=bench_id,
                split="test:first50",
                metric="glue",
                builder="faithful",
                objective="ones",
                linear_scope="all",
                n=450,
                kendall=0.2,
                computed_at=T0 + dt.timedelta(hours=5),  # newest, but another scope
            )
        )
    rows = _rows(
        migrated_engine,
        "SELECT linear_scope, kendall FROM v_proxy_leaderboard "
        f"WHERE proxy_id = {ids['expr']} AND builder = 'faithful' ORDER BY linear_scope",
    )
    assert rows == [("all", 0.2), ("mixer", 0.70)]
