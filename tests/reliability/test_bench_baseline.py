"""`dakd-edge bench --baseline`: a malformed or unrelated baseline is one error line, found before any run.

A regression gate that compared nothing must not say "passed": CI would stay green while measuring
nothing. Runs the real CLI in a subprocess on the bundled ONNX model (torch-free, 64 px tiles).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dakd_edge.weights import bundled_path

REPO = Path(__file__).resolve().parents[2]
ONNX = bundled_path("onnxruntime")
ARGS = ["--model", str(ONNX), "--backend", "onnxruntime", "--tile", "64", "--batch", "1", "--warmup", "0", "--iters", "1",
        "--device", "cpu"]  # fmt: skip


def row(**over: object) -> dict:
    """A baseline row matching what ARGS measures, with ``over`` applied."""
    r = {"model": ONNX.name, "backend": "onnxruntime", "precision": "fp32", "tile": 64, "batch": 1,
         "status": "ok", "p50_ms": 10.0, "mean_ms": 10.0, "mpix_per_s": 0.4}  # fmt: skip
    r.update(over)
    return r


def bench(baseline: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dakd_edge", "bench", *ARGS, *extra, "--baseline", str(baseline)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )


def error_line(r: subprocess.CompletedProcess, baseline: Path) -> str:
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, (r.stdout[-2000:], r.stderr[-3000:])
    assert len(lines) == 1 and lines[0].startswith("dakd-edge: error: "), r.stderr[-3000:]
    assert str(baseline) in lines[0]
    return lines[0]


BAD_SHAPES = {  # baseline document -> what the error line must say
    "results-not-a-list": ({"results": "nope"}, "has no 'results' list"),
    "row-not-an-object": ({"results": [row(), 7]}, "results[1] is not an object"),
    "row-without-backend": (
        {"results": [{k: v for k, v in row().items() if k != "backend"}]},
        "no 'backend'",
    ),
    "row-without-tile": ({"results": [{k: v for k, v in row().items() if k != "tile"}]}, "no 'tile'"),
    "metric-not-a-number": ({"results": [row(p50_ms="fast")]}, "results[0].p50_ms is 'fast'"),
}


@pytest.mark.parametrize("case", sorted(BAD_SHAPES))
def test_malformed_baseline_fails_before_the_benchmark(case: str, tmp_path: Path) -> None:
    doc, expected = BAD_SHAPES[case]
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps(doc))
    r = bench(baseline)
    assert expected in error_line(r, baseline)
    assert "ms p50" not in r.stdout and "dakd-edge bench" not in r.stdout  # nothing was measured


def test_baseline_for_other_rows_fails_before_the_benchmark(tmp_path: Path) -> None:
    baseline = tmp_path / "other.json"
    baseline.write_text(json.dumps({"results": [row(tile=512), row(model="unet.onnx")]}))
    r = bench(baseline)
    line = error_line(r, baseline)
    assert "no row of baseline" in line and "matches" in line and "onnxruntime/fp32/512/1" in line
    assert "regression gate passed" not in r.stdout and "ms p50" not in r.stdout


def test_gate_that_compared_nothing_does_not_pass(tmp_path: Path) -> None:
    """The planned row matches, but this run could not measure it (int8 on ONNX Runtime: skipped)."""
    baseline = tmp_path / "int8.json"
    baseline.write_text(json.dumps({"results": [row(precision="int8")]}))
    r = bench(baseline, "--precision", "int8")
    line = error_line(r, baseline)
    assert "no row of baseline" in line and "this run has none" in line
    assert "skipped" in r.stdout and "regression gate passed" not in r.stdout
