"""scripts/gpu_check.py runs on a machine without a GPU: one skip line, CPU timings, exit 0."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: the script checks it")
def test_gpu_check_without_a_gpu_prints_the_skip_and_cpu_timings() -> None:
    cmd = [sys.executable, "scripts/gpu_check.py", "--spaces", "flexibert", "--archs", "1"]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("cuda: no CUDA device visible") and "skipping" in lines[0]
    assert any(ln.startswith("cpu   inputs") and "ms per expression" in ln for ln in lines)
    assert lines[-1].startswith("gpu_check: ok")
