"""benchmarks/kernels.py: shapes read off the real models, and a CPU smoke run that writes its JSON."""

from __future__ import annotations

import json

import pytest
import torch

import dakd_edge


@pytest.fixture(scope="module")
def bench(load_benchmark):
    return load_benchmark("kernels")


def test_saross_b_shapes_match_mambavision_b(bench):
    model = dakd_edge.create_model("saross-b", num_classes=2, in_chans=1)
    scans, attns = bench.saross_shapes(512, 16, model)
    # Stage 3: 512/16 = 32 -> 3x3 windows of 14 (L = 196), D = 512/2; stage 4: 16 -> 3x3 windows of 7.
    assert scans == {(16 * 9, 256, 196, 8): 5, (16 * 9, 512, 49, 8): 3}
    assert (16, 4, 32, 128 * 128) in attns and all(c == 32 for _, _, c, _ in attns)


def test_cpu_smoke_run_writes_rows(bench, tmp_path):
    out = tmp_path / "k.json"
    bench.main(
        [
            "--model",
            "saross-nano",
            "--tiles",
            "64",
            "--batches",
            "1",
            "--iters",
            "1",
            "--warmup",
            "0",
            "--dtype",
            "fp32",
            "--no-compile",
            "-o",
            str(out),
        ]
    )
    result = json.loads(out.read_text())
    rows = result["rows"]
    impls = {(r["op"], r["impl"]) for r in rows}
    assert ("selective_scan", "ref-chunked") in impls and ("transposed_attention", "ref+compile") in impls
    assert all(r["status"] == "skipped" for r in rows if r["impl"].endswith("+compile"))
    ok = [r for r in rows if r["status"] == "ok"]
    assert ok and all(r["timing"]["p50_ms"] > 0 and r["gbs"] > 0 and r["process_cpu_ms"] > 0 for r in ok)
    triton_rows = [r for r in rows if r["impl"] == "triton"]
    if not torch.cuda.is_available():
        assert all(r["status"] == "skipped" and "not timed" in r["reason"] for r in triton_rows)
    loop = [r for r in ok if r["impl"] == "ref-loop" and r["mode"] == "fwd+bwd"]
    assert loop and loop[0]["bytes"] > 0
