"""benchmarks/gpu.py runs (tiny sizes, CPU) so that the GPU benchmark cannot rot."""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_gpu_benchmark_smoke():
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--smoke"],
        capture_output=True,
        text=True,
        timeout=1800,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    header = next(line.split() for line in lines if line.startswith("contender"))
    assert header[:3] == ["contender", "what", "batch"]
    rows = [line.split() for line in lines if line.split()[:1] == ["keras_vit-jax"]]
    assert [row[1] for row in rows] == ["inference", "train"], result.stdout
    for row in rows:
        numbers = [float(row[i]) for i in (-4, -1)]  # images/s and compile s ("step" splits)
        assert all(math.isfinite(n) and n > 0 for n in numbers), row
    # Every contender either has rows or says why it was skipped.
    for name in (
        "keras_vit-torch",
        "keras_hub-jax",
        "timm-eager",
        "timm-compile",
        "keras_vit-jax-xla",
        "keras_hub-jax-fit",
        "keras_vit-jax-fit",
    ):
        assert any(line.startswith(name) for line in lines), name
