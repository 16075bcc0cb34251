"""Evaluation cost of a search's real candidate stream, with and without the branch memo.

Command (repo root, venv active; a finished or partial search run in the database)::

    python scripts/bench_engine.py --run 1 [--archs 4] [--generations 0]

Replays the candidates of run ``--run`` generation by generation (the live ones: statically
pruned candidates are never evaluated) on the first ``--archs`` architectures of the run's
benchmark (default batch, builder, objective and linear scope of the run, init seed of the run),
the way a scoring process does: one ``evaluate_many`` per architecture and generation. Each
generation is timed twice in the same process, interleaved so that load on a shared machine hits
both alike:

- ``memo``: the engine with a branch memo per architecture kept across generations (what the
  scoring processes do since issue 12);
- ``plain``: the same engine without a memo (the same operations as the stacked evaluation
  before issue 12).

Prints per-generation and total milliseconds per (expression x architecture), wall and CPU, the
fraction of branches served from the memo, and checks that both give identical results.
"""

from __future__ import annotations

import argparse
import time

import torch


def _stream(run_id: int) -> tuple[str, object, list[list[str]]]:
    from sqlalchemy import select
    from sqlalchemy.orm import sessionmaker

    from lpzero_queue.config import load_settings
    from lpzero_queue.storage import Individual, Proxy, make_engine, transaction
    from lpzero_queue.workflows.search_run import load_context

    settings = load_settings()
    sessions = sessionmaker(make_engine(settings.effective_database_url))
    ctx = load_context(sessions, run_id)
    with transaction(sessions) as s:
        rows = s.execute(
            select(Individual.generation, Proxy.expression, Individual.seconds)
            .join(Proxy, Proxy.id == Individual.proxy_id)
            .where(Individual.run_id == run_id)
            .order_by(Individual.generation, Individual.slot)
        ).all()
    gens: dict[int, dict[str, None]] = {}
    for gen, text, seconds in rows:
        if seconds:  # statically pruned candidates are written with 0 seconds
            gens.setdefault(gen, {})[text] = None
    return ctx.bench_name, ctx, [list(g) for _, g in sorted(gens.items())]


def main() -> None:
    """Replay and print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=int, required=True)
    parser.add_argument("--archs", type=int, default=4)
    parser.add_argument("--generations", type=int, default=0, help="0: all")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from lpzero_queue.proxies.expression import (
        Branch,
        canonical_chain,
        evaluate_many,
        parse_expression,
    )
    from lpzero_queue.proxies.inputs import compute_inputs
    from lpzero_queue.proxies.scoring import input_batch

    bench, ctx, gens = _stream(args.run)
    if args.generations:
        gens = gens[: args.generations]
    setup, seed = ctx.setup, ctx.config.seed  # type: ignore[attr-defined]
    batch = input_batch(setup.space, seed, setup.batch_size, setup.seq_len)
    archs = ctx.archs[: args.archs]  # type: ignore[attr-defined]
    print(f"run {args.run} on {bench}: {len(gens)} generations, {len(archs)} architectures")
    inputs = []
    for arch in archs:
        t0 = time.perf_counter()
        got = compute_inputs(
            setup.space,
            arch.config,
            builder=setup.builder,
            seed=seed,
            batch=batch,
            objective=setup.objective,
            linear_scope=setup.linear_scope,
        )
        inputs.append(got.tensors)
        print(f"  inputs of {arch.key}: {time.perf_counter() - t0:.2f} s")
    memos: list[dict[object, object]] = [{} for _ in archs]
    totals = {"memo": [0.0, 0.0], "plain": [0.0, 0.0]}
    n_pairs = served = asked = 0
    print(f"{'gen':>4} {'exprs':>6} {'memo ms':>8} {'plain ms':>9} {'memo hits':>9}")
    for g, texts in enumerate(gens):
        exprs = [parse_expression(t) for t in texts]
        branches = {
            Branch(b.input, canonical_chain(b.unary)) for e in exprs for b in (e.left, e.right)
        }
        per = {"memo": [0.0, 0.0], "plain": [0.0, 0.0]}
        for tensors, memo in zip(inputs, memos, strict=True):
            before = len(memo)
            results = {}
            for mode in ("memo", "plain") if g % 2 == 0 else ("plain", "memo"):
                w, c = time.perf_counter(), time.process_time()
                results[mode] = evaluate_many(exprs, tensors, memo=memo if mode == "memo" else None)
                per[mode][0] += time.perf_counter() - w
                per[mode][1] += time.process_time() - c
            assert results["memo"] == results["plain"], "memo changed a result"
            asked += len(branches)
            served += len(branches) - (len(memo) - before)
        pairs = len(exprs) * len(archs)
        n_pairs += pairs
        for mode in per:
            totals[mode][0] += per[mode][0]
            totals[mode][1] += per[mode][1]
        print(
            f"{g:>4} {len(exprs):>6} {1e3 * per['memo'][0] / pairs:>8.2f} "
            f"{1e3 * per['plain'][0] / pairs:>9.2f} {served / max(1, asked):>9.0%}"
        )
    mw, mc = (1e3 * v / n_pairs for v in totals["memo"])
    pw, pc = (1e3 * v / n_pairs for v in totals["plain"])
    print(
        f"per expression x architecture: memo {mw:.2f} ms wall / {mc:.2f} ms CPU, plain "
        f"{pw:.2f} ms wall / {pc:.2f} ms CPU; ratio {pw / mw:.2f}x wall, {pc / mc:.2f}x CPU; "
        f"branches served from the memo: {served / max(1, asked):.0%} (results identical)"
    )


if __name__ == "__main__":
    main()
