"""GPU check for a machine with a CUDA device, in under 5 minutes: the cuda-marked tests, then
per-architecture proxy-input extraction and evaluation timings on cuda versus cpu.

    python scripts/gpu_check.py                 # tests (PostgreSQL and Redis on 127.0.0.1), timings
    python scripts/gpu_check.py --skip-tests --archs 5

1. ``pytest -m cuda`` on the files holding cuda-marked tests (a CUDA worker scoring units
   through Redis and PostgreSQL; proxy inputs on cuda vs cpu). Skips are listed with reasons.
2. For the first ``--archs`` architectures of FlexiBERT and of GPT-2 (default batch shapes and
   objectives, seed 0): seconds to build the model and extract its six inputs (forward and
   backward), seconds to evaluate the published LPZero proxies and two others on them, on cpu
   and on cuda (after one warm-up architecture, synchronised), and the largest relative
   difference of the scores between the devices.

Without a visible CUDA device the cuda-marked tests are reported as skipped, the cuda timings
are skipped with a one-line reason, the cpu timings still print, and the exit status is 0.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CUDA_TEST_FILES = ("tests/proxies/test_inputs_cuda.py", "tests/execution/test_celery.py")
SPACES = (("flexibert", "flexibert"), ("gpt2", "gpt2-wt103"))
EXTRA_EXPRESSIONS = (
    "sum(mean(abs(grad)), l1_norm(act))",
    "product(frobenius_norm(weight), mean(grad))",
)


def run_cuda_tests(timeout_s: int) -> int:
    """Run the cuda-marked tests; their exit status (5, none selected, counts as success)."""
    cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "-rs", "-q", "-p", "no:cacheprovider"]
    print(f"== cuda-marked tests: {' '.join(cmd[1:])} {' '.join(CUDA_TEST_FILES)}", flush=True)
    try:
        out = subprocess.run([*cmd, *CUDA_TEST_FILES], cwd=REPO, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        print(f"cuda tests: timed out after {timeout_s} s")
        return 1
    return 0 if out.returncode in (0, 5) else out.returncode


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def time_space(space: str, bench: str, n_archs: int, devices: list[str]) -> None:
    """Print per-architecture input and evaluation seconds on each device."""
    from lpzero_queue.benchmarks.records import load_shipped
    from lpzero_queue.proxies.expression import (
        LPZERO_FLEXIBERT,
        LPZERO_GPT2,
        evaluate_many,
        parse_expression,
    )
    from lpzero_queue.proxies.inputs import compute_inputs
    from lpzero_queue.proxies.scoring import ScoringSetup, input_batch

    setup = ScoringSetup.resolve(space)
    batch = input_batch(space, 0, setup.batch_size, setup.seq_len)
    texts = (LPZERO_FLEXIBERT, LPZERO_GPT2, *EXTRA_EXPRESSIONS)
    exprs = [parse_expression(t) for t in texts]
    records = load_shipped(bench).records[: n_archs + 1]
    print(
        f"\n== {space}: batch {setup.batch_size}x{setup.seq_len}, builder {setup.builder}, "
        f"objective {setup.objective}, {len(texts)} expressions, seed 0"
    )
    print(f"{'arch':<28} {'device':<6} {'inputs s':>9} {'eval s':>8} {'max rel diff':>13}")
    for i, record in enumerate(records):
        scores: dict[str, list[float | None]] = {}
        for device in devices:

            def inputs(device: str = device, config: object = record.config) -> object:
                return compute_inputs(
                    space,
                    config,  # type: ignore[arg-type]
                    builder=setup.builder,
                    seed=0,
                    batch=batch,
                    objective=setup.objective,
                    device=device,
                    linear_scope=setup.linear_scope,
                )

            _sync(device)
            started = time.perf_counter()
            got = inputs()
            _sync(device)
            t_inputs = time.perf_counter() - started
            started = time.perf_counter()
            results = evaluate_many(exprs, got.tensors)  # type: ignore[attr-defined]
            _sync(device)
            t_eval = time.perf_counter() - started
            scores[device] = [r.score for r in results]
            if i == 0:
                continue  # warm-up (CUDA context, kernels, tokenizer caches): not reported
            diff = ""
            if device != "cpu" and "cpu" in scores:
                pairs = [
                    (a, b) for a, b in zip(scores["cpu"], scores[device], strict=True) if a and b
                ]
                worst = max((abs(a - b) / max(abs(a), 1e-12) for a, b in pairs), default=0.0)
                diff = f"{worst:.2e}"
            print(
                f"{str(record.key)[:28]:<28} {device:<6} {t_inputs:>9.3f} {t_eval:>8.3f} {diff:>13}"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--archs", type=int, default=3, help="Architectures per space (timed).")
    parser.add_argument("--skip-tests", action="store_true", help="Only the timings.")
    parser.add_argument("--test-timeout", type=int, default=180, help="Seconds for the tests.")
    args = parser.parse_args()

    import torch

    cuda = torch.cuda.is_available()
    if cuda:
        print(f"cuda: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    else:
        print(
            f"cuda: no CUDA device visible (torch {torch.__version__}, built for CUDA "
            f"{torch.version.cuda or 'none'}): the cuda tests skip and the cuda timings are "
            "skipped; cpu timings only"
        )
    status = 0 if args.skip_tests else run_cuda_tests(args.test_timeout)
    torch.set_num_threads(1)  # the scoring processes' default (LPZQ_TORCH_THREADS=0 means 1)
    devices = ["cpu", "cuda"] if cuda else ["cpu"]
    for space, bench in SPACES:
        time_space(space, bench, args.archs, devices)
    print(f"\ngpu_check: {'ok' if status == 0 else f'cuda tests failed ({status})'}")
    return status


if __name__ == "__main__":
    sys.exit(main())
