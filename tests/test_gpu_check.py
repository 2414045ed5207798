"""benchmarks/gpu.py on a machine without CUDA: exits at once (status 2) with one clear line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_gpu_check_without_cuda(tmp_path: Path) -> None:
    from tests.conftest import _cuda_available

    if _cuda_available():
        pytest.skip("a CUDA device is present: the check would run for minutes")
    r = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu.py"), "-o", str(tmp_path / "g.json")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and "no CUDA device" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "g.json").exists()
