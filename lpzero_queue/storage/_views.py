"""SQL views over historical results, kept as constants that Alembic revisions execute.

The SQL is plain enough to run unchanged on SQLite (3.25+, for window functions) and PostgreSQL.
A released constant is frozen: changing a view means new constants and a new revision, so that
old revisions keep creating exactly what they created when they were written.
"""

from __future__ import annotations

__all__ = ["VIEWS_0002", "VIEWS_0003", "VIEWS_0004"]

# The latest correlation per (proxy, benchmark, split, metric, builder, objective); ties on
# computed_at (SQLite stores whole seconds) go to the newer row id.
PROXY_LEADERBOARD = """
CREATE VIEW v_proxy_leaderboard AS
SELECT
    b.name AS benchmark,
    c.benchmark_id,
    c.split,
    c.metric,
    c.builder,
    c.objective,
    c.proxy_id,
    p.expression,
    p.name,
    p.kind,
    p.origin,
    p.direction,
    c.n,
    c.spearman,
    c.kendall,
    c.within_kendall,
    c.top10_overlap,
    c.computed_at,
    c.id AS correlation_id
FROM (
    SELECT
        id, proxy_id, benchmark_id, split, metric, builder, objective, n, spearman, kendall,
        within_kendall, top10_overlap, computed_at,
        ROW_NUMBER() OVER (
            PARTITION BY proxy_id, benchmark_id, split, metric, builder, objective
            ORDER BY computed_at DESC, id DESC
        ) AS recency
    FROM correlations
) c
JOIN proxies p ON p.id = c.proxy_id
JOIN benchmarks b ON b.id = c.benchmark_id
WHERE c.recency = 1
"""

# One row per run and generation. "pruned" counts candidates rejected without a fitness:
# a named pruning rule, or a constant score; "errors" are failures of the evaluation itself.
RUN_PROGRESS = """
CREATE VIEW v_run_progress AS
SELECT
    g.run_id,
    b.name AS benchmark,
    r.status AS run_status,
    g.generation,
    g.candidates,
    g.evaluated_ok,
    g.pruned,
    g.nonfinite,
    g.errors,
    g.generation_best_fitness,
    (
        SELECT MAX(i2.fitness)
        FROM individuals i2
        WHERE i2.run_id = g.run_id AND i2.generation <= g.generation AND i2.status = 'ok'
    ) AS best_fitness,
    g.mean_seconds
FROM (
    SELECT
        run_id,
        generation,
        COUNT(*) AS candidates,
        SUM(CASE WHEN status = 'ok' THEN 1 ELSE 0 END) AS evaluated_ok,
        SUM(CASE WHEN status IN ('pruned', 'constant') THEN 1 ELSE 0 END) AS pruned,
        SUM(CASE WHEN status = 'nonfinite' THEN 1 ELSE 0 END) AS nonfinite,
        SUM(CASE WHEN status IN ('error', 'timeout') THEN 1 ELSE 0 END) AS errors,
        MAX(fitness) AS generation_best_fitness,
        AVG(seconds) AS mean_seconds
    FROM individuals
    GROUP BY run_id, generation
) g
JOIN search_runs r ON r.id = g.run_id
JOIN benchmarks b ON b.id = r.benchmark_id
"""

# (view name, CREATE statement) created by revision 0002, dropped in reverse order on downgrade.
VIEWS_0002: tuple[tuple[str, str], ...] = (
    ("v_proxy_leaderboard", PROXY_LEADERBOARD),
    ("v_run_progress", RUN_PROGRESS),
)


# Revision 0003: the leaderboard also tells (and partitions by) the linear scope that fed the
# weight/grad inputs, so scores obtained from different Linears are never mixed.
PROXY_LEADERBOARD_0003 = """
CREATE VIEW v_proxy_leaderboard AS
SELECT
    b.name AS benchmark,
    c.benchmark_id,
    c.split,
    c.metric,
    c.builder,
    c.objective,
    c.linear_scope,
    c.proxy_id,
    p.expression,
    p.name,
    p.kind,
    p.origin,
    p.direction,
    c.n,
    c.spearman,
    c.kendall,
    c.within_kendall,
    c.top10_overlap,
    c.computed_at,
    c.id AS correlation_id
FROM (
    SELECT
        id, proxy_id, benchmark_id, split, metric, builder, objective, linear_scope, n, spearman,
        kendall, within_kendall, top10_overlap, computed_at,
        ROW_NUMBER() OVER (
            PARTITION BY proxy_id, benchmark_id, split, metric, builder, objective, linear_scope
            ORDER BY computed_at DESC, id DESC
        ) AS recency
    FROM correlations
) c
JOIN proxies p ON p.id = c.proxy_id
JOIN benchmarks b ON b.id = c.benchmark_id
WHERE c.recency = 1
"""

# (view name, CREATE statement) replaced by revision 0003 (its downgrade restores VIEWS_0002's).
VIEWS_0003: tuple[tuple[str, str], ...] = (("v_proxy_leaderboard", PROXY_LEADERBOARD_0003),)


# Revision 0004: the leaderboard also shows the tie-fair Kendall (overall, within depth and
# within (depth, width) strata): tau-b alone flatters proxies that tie many architectures.
PROXY_LEADERBOARD_0004 = """
CREATE VIEW v_proxy_leaderboard AS
SELECT
    b.name AS benchmark,
    c.benchmark_id,
    c.split,
    c.metric,
    c.builder,
    c.objective,
    c.linear_scope,
    c.proxy_id,
    p.expression,
    p.name,
    p.kind,
    p.origin,
    p.direction,
    c.n,
    c.spearman,
    c.kendall,
    c.kendall_tiefair,
    c.within_kendall,
    c.within_tiefair,
    c.within_fine_tiefair,
    c.top10_overlap,
    c.computed_at,
    c.id AS correlation_id
FROM (
    SELECT
        id, proxy_id, benchmark_id, split, metric, builder, objective, linear_scope, n, spearman,
        kendall, kendall_tiefair, within_kendall, within_tiefair, within_fine_tiefair,
        top10_overlap, computed_at,
        ROW_NUMBER() OVER (
            PARTITION BY proxy_id, benchmark_id, split, metric, builder, objective, linear_scope
            ORDER BY computed_at DESC, id DESC
        ) AS recency
    FROM correlations
) c
JOIN proxies p ON p.id = c.proxy_id
JOIN benchmarks b ON b.id = c.benchmark_id
WHERE c.recency = 1
"""

# (view name, CREATE statement) replaced by revision 0004 (its downgrade restores VIEWS_0003's).
VIEWS_0004: tuple[tuple[str, str], ...] = (("v_proxy_leaderboard", PROXY_LEADERBOARD_0004),)
