"""The one prepared check for a machine with a CUDA device (under 8 minutes on one H200).

    python scripts/gpu_check.py                      # everything
    python scripts/gpu_check.py --skip-searches      # without the two end-to-end searches

1. **cuda tests**: ``pytest -m cuda`` on the files holding cuda-marked tests. The test that needs
   PostgreSQL (a CUDA Celery worker) is deselected with a visible line when PostgreSQL is not
   reachable on 127.0.0.1:5432; skips are listed with their reasons.
2. **CPU vs CUDA agreement** on the first ``--archs`` architectures of FlexiBERT and GPT-2
   (default batch, builder, objective and linear scope; seed 0): per input, the largest
   difference relative to the largest CPU magnitude; per shipped proxy (``lpzero-*``) and per
   operator branch ``op(input)`` (every unary operator on every input, reduced like a proxy),
   the largest relative score difference; anything above 1e-4 is named with the Kendall tau
   between its CPU and CUDA scores over the architectures (ranks are what a search uses).
   Baselines are computed on the CPU on every worker (``score_unit``), so they agree by
   construction; the check confirms their rows say ``cpu``.
3. **timings**: per architecture, seconds to extract the inputs and milliseconds per
   (expression x architecture) to evaluate 40 random expressions, on each device (CUDA:
   synchronised, the architectures packed into one engine call).
4. **both default searches on CUDA** end to end (``LPZQ_DEVICE=cuda lpzq search start --bench
   flexibert`` and ``--bench gpt2-wt103`` on a fresh embedded SQLite database), with wall times.

Without a visible CUDA device, parts 1, 2 and 4 print one skip line each, part 3 prints the CPU
timings, and the exit status is 0.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))
CUDA_TEST_FILES = ("tests/proxies/test_inputs_cuda.py", "tests/execution/test_celery.py")
PG_TEST = "tests/execution/test_celery.py::test_cuda_worker_scores_units"
SPACES = (("flexibert", "flexibert"), ("gpt2", "gpt2-wt103"))
TOLERANCE = 1e-4


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def run_cuda_tests(timeout_s: int) -> int:
    """Run the cuda-marked tests; their exit status (5, none selected, counts as success)."""
    cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "-rs", "-q", "-p", "no:cacheprovider"]
    if not _reachable("127.0.0.1", 5432):
        print(f"SKIPPED {PG_TEST}: PostgreSQL is not reachable on 127.0.0.1:5432")
        cmd += ["--deselect", PG_TEST]
    print(f"== cuda tests: {' '.join(cmd[1:])} {' '.join(CUDA_TEST_FILES)}", flush=True)
    try:
        out = subprocess.run([*cmd, *CUDA_TEST_FILES], cwd=REPO, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        print(f"cuda tests: timed out after {timeout_s} s")
        return 1
    return 0 if out.returncode in (0, 5) else out.returncode


def _sync(device: str) -> None:
    import torch

    if device != "cpu":
        torch.cuda.synchronize()


def _inputs(space: str, records: list[Any], device: str) -> tuple[list[Any], list[float]]:
    from lpzero_queue.proxies.inputs import compute_inputs
    from lpzero_queue.proxies.scoring import ScoringSetup, input_batch

    setup = ScoringSetup.resolve(space)
    batch = input_batch(space, 0, setup.batch_size, setup.seq_len)
    out, seconds = [], []
    for record in records:
        _sync(device)
        started = time.perf_counter()
        got = compute_inputs(
            space,
            record.config,
            builder=setup.builder,
            seed=0,
            batch=batch,
            objective=setup.objective,
            device=device,
            linear_scope=setup.linear_scope,
        )
        _sync(device)
        seconds.append(time.perf_counter() - started)
        out.append(dict(got.tensors))
    return out, seconds


def _rel(a: float | None, b: float | None) -> float:
    if a is None or b is None:
        return 0.0 if a is b else float("inf")
    return abs(a - b) / max(abs(a), 1e-30)


def agreement(space: str, cpu: list[Any], cuda: list[Any]) -> int:
    """Print CPU vs CUDA agreement of inputs and scores; the number of items above tolerance."""
    from lpzero_queue.proxies.correlation import rank_correlations
    from lpzero_queue.proxies.expression import evaluate_archs, parse_expression
    from lpzero_queue.proxies.operators import INPUT_NAMES, UNARY_OPS
    from lpzero_queue.proxies.spec import NAMED_EXPRESSIONS

    print(f"\n== {space}: CPU vs CUDA agreement on {len(cpu)} architectures")
    for name in INPUT_NAMES:
        worst = 0.0
        for c, g in zip(cpu, cuda, strict=True):
            for a, b in zip(c[name], g[name], strict=True):
                scale = float(a.abs().max()) or 1.0
                worst = max(worst, float((b.cpu() - a).abs().max()) / scale)
        print(f"input {name:<8} max |cuda - cpu| / max |cpu| = {worst:.2e}")
    texts = {f"{n} {t}": t for n, (t, _) in NAMED_EXPRESSIONS.items()}
    for op in sorted(UNARY_OPS):
        for name in INPUT_NAMES:
            texts[f"{op}({name})"] = f"sum({op}({name}), {op}({name}))"
    exprs = [parse_expression(t) for t in texts.values()]
    on_cpu = evaluate_archs(exprs, cpu)
    on_cuda = evaluate_archs(exprs, cuda)
    above = 0
    for j, label in enumerate(texts):
        a = [r[j].score for r in on_cpu]
        b = [r[j].score for r in on_cuda]
        worst = max(_rel(x, y) for x, y in zip(a, b, strict=True))
        if label.startswith("lpzero") or worst > TOLERANCE:
            line = f"{label:<34} max rel diff {worst:.2e}"
            pairs = [(x, y) for x, y in zip(a, b, strict=True) if x is not None and y is not None]
            if worst > TOLERANCE and len(pairs) >= 3:
                rep = rank_correlations(
                    [x for x, _ in pairs],
                    [y for _, y in pairs],
                    higher_is_better_truth=True,
                    higher_is_better_proxy=True,
                )
                line += f"  ABOVE {TOLERANCE:g}; Kendall tau CPU vs CUDA {rep.kendall:.3f}"
            print(line)
            above += worst > TOLERANCE
    print(f"{above} of {len(texts)} proxies / operator branches differ by more than {TOLERANCE:g}")
    return above


def timings(space: str, per_device: dict[str, tuple[list[Any], list[float]]]) -> None:
    """Print extraction seconds and evaluation ms per (expression x architecture)."""
    from bench_cache import random_expressions

    from lpzero_queue.proxies.expression import evaluate_archs, parse_expression

    exprs = [parse_expression(t) for t in random_expressions(40)]
    print(f"\n== {space}: timings (first architecture is a warm-up, not counted)")
    for device, (inputs, seconds) in per_device.items():
        n = len(inputs) - 1
        _sync(device)
        started = time.perf_counter()
        if device == "cpu":
            for one in inputs[1:]:
                evaluate_archs(exprs, [one])
        else:
            evaluate_archs(exprs, inputs[1:])
        _sync(device)
        each = (time.perf_counter() - started) / max(1, n * len(exprs))
        mean_s = sum(seconds[1:]) / max(1, n)
        print(
            f"{device:<5} inputs {mean_s:.3f} s per architecture, evaluation "
            f"{1e3 * each:.3f} ms per expression x architecture ({n} architectures, 40 exprs)"
        )


def search(bench: str, timeout_s: int) -> None:
    """Run one default search on CUDA in a fresh data directory; print its wall time."""
    with tempfile.TemporaryDirectory(prefix="lpzq-gpu-check-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LPZQ_")}
        env.update(LPZQ_DEVICE="cuda", LPZQ_DATA_DIR=f"{tmp}/data", LPZQ_CACHE_DIR=f"{tmp}/c")
        cmd = [sys.executable, "-m", "lpzero_queue", "search", "start", "--bench", bench]
        print(
            f"\n== search on cuda: LPZQ_DEVICE=cuda lpzq search start --bench {bench}", flush=True
        )
        started = time.perf_counter()
        try:
            out = subprocess.run(
                cmd, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
            )
            text, status = out.stdout + out.stderr, f"exit {out.returncode}"
        except subprocess.TimeoutExpired as exc:
            raw = (exc.stdout or b"") + (exc.stderr or b"")
            text = raw.decode() if isinstance(raw, bytes) else raw
            status = f"stopped at the {timeout_s} s limit"
        wall = time.perf_counter() - started
        lines = [ln for ln in text.replace("\r", "\n").splitlines() if ln.strip()]
        print("\n".join(lines[-12:]))
        print(f"{bench}: wall {wall:.1f} s end to end ({status})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--archs", type=int, default=6, help="Architectures per space.")
    parser.add_argument("--spaces", default="flexibert,gpt2", help="Comma-separated spaces.")
    parser.add_argument("--skip-tests", action="store_true")
    parser.add_argument("--skip-searches", action="store_true")
    parser.add_argument("--test-timeout", type=int, default=120)
    parser.add_argument("--search-timeout", type=int, default=150, help="Seconds per search.")
    args = parser.parse_args()

    import torch

    from lpzero_queue.benchmarks.records import load_shipped

    cuda = torch.cuda.is_available()
    if cuda:
        print(f"cuda: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    else:
        print(
            f"cuda: no CUDA device visible (torch {torch.__version__}, CUDA "
            f"{torch.version.cuda or 'none'}): skipping the cuda tests, the CPU vs CUDA "
            "agreement and the CUDA searches; CPU timings only"
        )
    status = 0 if args.skip_tests or not cuda else run_cuda_tests(args.test_timeout)
    torch.set_num_threads(1)  # the scoring processes' default (LPZQ_TORCH_THREADS=0 means 1)
    above = 0
    spaces = [(s, b) for s, b in SPACES if s in args.spaces.split(",")]
    for space, bench in spaces:
        records = load_shipped(bench).records[: args.archs + 1]
        per_device = {"cpu": _inputs(space, records, "cpu")}
        if cuda:
            per_device["cuda"] = _inputs(space, records, "cuda")
            above += agreement(space, per_device["cpu"][0], per_device["cuda"][0])
        timings(space, per_device)
    if cuda and not args.skip_searches:
        for _, bench in spaces:
            search(bench, args.search_timeout)
    verdict = "ok" if status == 0 else f"cuda tests failed ({status})"
    print(f"\ngpu_check: {verdict}; {above} proxies/branches above {TOLERANCE:g} CPU vs CUDA")
    return status


if __name__ == "__main__":
    sys.exit(main())
