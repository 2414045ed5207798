"""`dakd-edge bench` exits 2 when no row ran (every one skipped or failed): `bench --backend tensorrt`
on a machine without TensorRT went green in CI with no measurement."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

import dakd_edge.cli.bench  # noqa: F401  (reads run_bench's defaults at import: before the patches)
from dakd_edge import bench as lib

NO_TRT = "TensorRT is not installed"


def _fake_rows(monkeypatch: pytest.MonkeyPatch, *rows: lib.Row) -> list[dict]:
    """``run_bench`` returning ``rows``; returns the plans it was called with."""
    plans: list[dict] = []

    def run_bench(**kw) -> dict:
        plans.append(kw)
        return {"format": lib.FORMAT, "environment": {}, "settings": {}, "method": {},
                "results": [asdict(r) for r in rows]}  # fmt: skip

    monkeypatch.setattr(lib, "run_bench", run_bench)
    return plans


def _row(status: str = "ok", reason: str = "", backend: str = "tensorrt") -> lib.Row:
    times = {} if status != "ok" else {"p50_ms": 1.0, "p99_ms": 2.0, "mpix_per_s": 3.0}
    return lib.Row(backend, "fp32", 256, 1, status=status, reason=reason, model="m.onnx", **times)


def test_no_row_ran_exits_2_after_the_table_and_the_json(
    run_cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _fake_rows(monkeypatch, _row("skipped", NO_TRT))
    out_json = tmp_path / "b.json"
    code, out, err = run_cli(["bench", "--backend", "tensorrt", "--device", "cpu", "--json", str(out_json)])
    assert code == 2
    assert err == f"dakd-edge: error: no benchmark row ran (1 skipped): {NO_TRT}\n"
    assert "skipped [1]" in out and f"[1] {NO_TRT}" in out and f"results written to {out_json}" in out
    assert [r["status"] for r in json.loads(out_json.read_text())["results"]] == ["skipped"]


def test_no_row_ran_names_every_kind_and_the_first_reason(run_cli, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_rows(
        monkeypatch,
        _row("skipped", NO_TRT),
        _row("failed", "RuntimeError: boom", backend="torch"),
        _row("skipped", NO_TRT, backend="onnxruntime"),
    )
    code, out, err = run_cli(["bench", "--device", "cpu", "--json", "-"])
    assert code == 2 and [r["status"] for r in json.loads(out)["results"]] == ["skipped", "failed", "skipped"]
    assert err.splitlines()[-1] == (
        f"dakd-edge: error: no benchmark row ran (2 skipped, 1 failed): {NO_TRT}; and 1 other reason(s) "
        "listed above"
    )


def test_one_row_that_ran_is_a_measurement(run_cli, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_rows(monkeypatch, _row("skipped", NO_TRT), _row("ok", backend="onnxruntime"))
    code, out, err = run_cli(["bench", "--device", "cpu"])
    assert (code, err) == (0, "") and "skipped [1]" in out


def test_backend_and_precision_lists_take_any_case(run_cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """As every keyword option does: ONNXRUNTIME was "unknown backend"; the library gets its spelling."""
    plans = _fake_rows(monkeypatch, _row("ok"))
    code, _, err = run_cli(
        ["bench", "--backend", "ONNXRuntime,Torch", "--precision", "FP32", "--device", "cpu"]
    )
    assert code == 0, err
    assert (plans[0]["backends"], plans[0]["precisions"]) == (["onnxruntime", "torch"], ["fp32"])
